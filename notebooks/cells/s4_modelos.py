"""Section 4: both architectures, their layers, sizes and why skips matter."""

CELLS = [
    (
        "md",
        r"""
## 4. Modelos

Ambas redes comparten codificador y decodificador (`ae_lab/models/blocks.py`): el codificador
reduce la resolución a la mitad en cada nivel con convoluciones de paso 2 (normalización por lotes
y LeakyReLU), un *squeeze* 1x1 y una capa lineal llevan el mapa más profundo al vector latente
`z`, y el decodificador lo deshace con sobremuestreo y convoluciones hasta una salida sigmoide en
[0, 1]. La U-Net agrega *skips*: en cada nivel concatena el mapa del codificador de la misma
resolución y lo fusiona con una convolución 1x1. Se instancian desde la configuración compuesta,
igual que en `train.py`:
""",
    ),
    (
        "code",
        r"""
NETS = {
    name: hydra.utils.instantiate(compose_config(f"model={name}").model.net)
    for name in ("ae", "unet")
}
x = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
rows = []
for name, net in NETS.items():
    net.eval()
    with torch.no_grad():
        features, z, recon = net.encoder(x), net.encode(x), net(x)
    for part, module in net.named_children():
        rows.append(
            (name, part, type(module).__name__, sum(p.numel() for p in module.parameters()))
        )
    levels = " → ".join(f"{tuple(f.shape[1:])}" for f in features)
    show_md(
        f"**{name}** (`{type(net).__name__}`): {sum(p.numel() for p in net.parameters()):,} "
        f"parámetros; entrada {tuple(x.shape[1:])} → niveles del codificador {levels} → "
        f"latente `z` de dimensión **{z.shape[1]}** → reconstrucción {tuple(recon.shape[1:])}."
        + (f" Skips en los niveles {list(net.skip_levels)}." if hasattr(net, "skip_levels") else "")
    )
show_table(
    pd.DataFrame(rows, columns=["modelo", "bloque", "clase", "parámetros"]),
    title="Parámetros por bloque",
)
ratio = IMAGE_SIZE * IMAGE_SIZE * 3 / NETS["ae"].latent_dim
show_md(
    f"El latente comprime cada imagen {ratio:,.0f} veces ({IMAGE_SIZE}·{IMAGE_SIZE}·3 valores → "
    f"{NETS['ae'].latent_dim})."
)
""",
    ),
    (
        "md",
        r"""
**Por qué importan los *skips* para detectar anomalías.** En el autoencoder clásico todo pasa por
`z`, un cuello de botella que sólo alcanza para describir lo que se repite en las imágenes
buenas: la forma de la pieza, su color, su posición. Un defecto (un rayón, un cable cambiado) no
cabe en esa descripción, la reconstrucción lo «repara» y el error se concentra en él; eso es lo
que se quiere. Los *skips* de la U-Net, en cambio, llevan al decodificador los mapas de alta
resolución del codificador sin pasar por `z`: la red puede aprender a copiar la entrada, y copia
también el defecto. Reconstruye mejor, pero el error ya no distingue lo anómalo. La sección 6
lo muestra con las mismas imágenes de test reconstruidas por ambas redes, y la 7 lo mide.
""",
    ),
]
