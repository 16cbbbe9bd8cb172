"""Section 1: objective, environment, W&B mode."""

CELLS = [
    (
        "md",
        r"""
## 1. Objetivo y configuración

**Qué se compara.** Un autoencoder aprende a reconstruir sólo imágenes *buenas* (sin defectos);
ante una imagen defectuosa debería fallar justo en el defecto, y ese error de reconstrucción es
la puntuación de anomalía. Se comparan dos arquitecturas y cuatro funciones de pérdida, en una
grilla de 2 x 4 = 8 corridas con todo lo demás fijo:

| | arquitectura | idea |
|---|---|---|
| `ae` | autoencoder convolucional clásico (`ConvAutoencoder`) | toda la información pasa por el vector latente `z` |
| `unet` | autoencoder U-Net (`UNetAutoencoder`) | además, conexiones *skip* del codificador al decodificador |

| pérdida | definición |
|---|---|
| `l1` | error absoluto medio |
| `l2` | error cuadrático medio |
| `ssim` | 1 − SSIM (similitud estructural local, ventana gaussiana de 11 px) |
| `ssim_l1` | 0,84 · (1 − SSIM) + 0,16 · L1 (Zhao et al., 2017) |

**Cómo se mide.** Para cada imagen de test se calcula un mapa de anomalía (error por píxel entre
la imagen y su reconstrucción, `conf/scoring/default.yaml`) y una puntuación por imagen (la media
del 1 % de píxeles con más error). El **AUROC por imagen** (buenas contra defectuosas, por clase
y por tipo de defecto) dice cuán bien separa esa puntuación; vale 0,5 al azar y 1 si separa
perfectamente. Los errores de validación `val/l1`, `val/l2` y `val/ssim` (iguales para todas las
corridas, sea cual sea la pérdida de entrenamiento) dicen cuán bien *reconstruye* cada modelo.

Primero, el entorno de esta ejecución:
""",
    ),
    (
        "code",
        r"""
from importlib.metadata import version

from ae_lab.wandb_mode import has_wandb_credentials

packages = ["torch", "lightning", "hydra-core", "wandb", "kornia", "plotly", "pandas", "numpy"]
versions = pd.DataFrame(
    [("python", platform.python_version())] + [(p, version(p)) for p in packages],
    columns=["paquete", "versión"],
)
show_table(versions, title="Versiones")
device = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU"
show_md(
    f"Dispositivo de entrenamiento: **{device}** ({os.cpu_count()} núcleos, "
    f"{torch.get_num_threads()} hilos de torch).\n\n"
    f"W&B: modo **{WANDB_MODE}**; credenciales {'sí' if has_wandb_credentials() else 'no'}; "
    f"las corridas se escriben en `{WANDB_DIR / 'wandb'}`"
    + (" y se suben después con `wandb sync`." if WANDB_MODE == "offline" else ".")
)
""",
    ),
]
