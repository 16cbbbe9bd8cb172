"""Section 3: the conf/ tree, one composed config, an override's effect, the sweep file."""

CELLS = [
    (
        "md",
        r"""
## 3. Configuración

Todo lo que distingue a una corrida está en `conf/` (Hydra): `config.yaml` compone un archivo por
grupo (`data`, `model`, `loss`, `trainer`, `logger`, `scoring`) y cada archivo es YAML plano con un
`_target_` (la clase que Hydra instancia). Cambiar de modelo o de pérdida es elegir otro archivo
del grupo; cambiar un valor es un *override* `clave=valor`, igual en la línea de comandos
(`python train.py model=unet loss=ssim`), en la API de composición y en los barridos de W&B.
""",
    ),
    (
        "code",
        r"""
rows = []
for group in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir()):
    for option in sorted(group.glob("*.yaml")):
        first = next((ln for ln in option.read_text().splitlines() if ln.startswith("#")), "")
        rows.append((group.name, option.stem, first.lstrip("# ")))
show_table(pd.DataFrame(rows, columns=["grupo", "opción", "descripción"]), title="`conf/`")
defaults = OmegaConf.load(ROOT / "conf/config.yaml").defaults
items = [
    d if isinstance(d, str) else ", ".join(f"{k}: {v}" for k, v in d.items()) for d in defaults
]
show_md("Lista `defaults` de `conf/config.yaml`: " + ", ".join(f"`{i}`" for i in items) + ".")
""",
    ),
    (
        "md",
        r"""
La configuración compuesta de una corrida (autoencoder clásico con pérdida L2, más los overrides
de datos de esta ejecución). Es la misma que `train.py` recibe y la que queda en la configuración
de la corrida en W&B:
""",
    ),
    (
        "code",
        r"""
parts = ["seed", "data", "model", "loss", "optimizer", "trainer", "scoring", "run_name"]
show_md("```yaml\n" + OmegaConf.to_yaml(OmegaConf.masked_copy(CFG, parts), resolve=True) + "```")
show_md("Overrides de esta ejecución: " + " ".join(f"`{o}`" for o in OVERRIDES))
""",
    ),
    (
        "md",
        r"""
Un override cambia sólo lo que nombra y lo que depende de ello por interpolación (`${...}`):
`model=unet loss=ssim_l1` cambia la red, la pérdida y el nombre de la corrida, nada más.
""",
    ),
    (
        "code",
        r"""
from ae_lab.flatten import flatten

before = flatten(OmegaConf.to_container(CFG, resolve=True))
after = flatten(OmegaConf.to_container(compose_config("model=unet", "loss=ssim_l1"), resolve=True))
diff = pd.DataFrame(
    [
        (k, before.get(k, "—"), after.get(k, "—"))
        for k in sorted(before.keys() | after.keys())
        if before.get(k, "—") != after.get(k, "—")
    ],
    columns=["clave", "model=ae loss=l2", "model=unet loss=ssim_l1"],
).astype(str)
show_table(diff, title=f"{len(diff)} claves cambian de {len(before)}")
""",
    ),
    (
        "md",
        r"""
**El barrido.** La grilla es un archivo de barrido de W&B (`method: grid`); sus parámetros son
rutas de Hydra. El mismo archivo sirve online (`wandb sweep` + `wandb agent`) y offline con el
ejecutor del repositorio (`python -m ae_lab.sweep`), que expande la grilla, valida cada punto
contra la configuración y lanza un `train.py` por punto:
""",
    ),
    (
        "code",
        r"""
from ae_lab.sweep import expand, load_sweep

show_md(f"`{SWEEP}`:\n\n```yaml\n{(ROOT / SWEEP).read_text()}```")
spec = load_sweep(ROOT / SWEEP)
points = expand(spec, ROOT / "conf", OVERRIDES)
show_table(
    pd.DataFrame(
        [
            (
                p.index,
                p.config.run_name,
                " ".join(f"{k}={v}" for k, v in p.values.items() if k in spec.varied),
            )
            for p in points
        ],
        columns=["#", "run_name", "parámetros variados"],
    ),
    title=f"{len(points)} corridas; los overrides de esta ejecución reemplazan los `value:` del archivo",
)
""",
    ),
]
