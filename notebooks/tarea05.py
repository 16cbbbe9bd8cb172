# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tarea 05 — Detección de anomalías por reconstrucción con autoencoders
#
# Un autoencoder entrenado sólo con piezas buenas debería reconstruir mal lo que nunca vio: un
# defecto. Esta entrega compara dos arquitecturas (autoencoder convolucional clásico y U-Net) con
# cuatro funciones de pérdida (L1, L2, SSIM y SSIM+L1) en dos conjuntos de datos:
#
# - **Imágenes reales**: la clase *screw* (tornillo) de MVTec AD, la única de las cuatro clases de
#   la tarea de la que se dispuso para esta entrega. Es la prueba que importa: dice si los
#   modelos detectan defectos reales.
# - **Un sustituto sintético** de las cuatro clases de la tarea (`cable`, `capsule`, `screw`,
#   `transistor`), generado por el repositorio con la estructura de carpetas de MVTec AD: sin
#   descargar los 5 GB del conjunto completo permite correr la grilla sobre cuatro clases y
#   conocer exactamente cada defecto y su máscara.
#
# Cada figura de resultados sale de una corrida de **Weights & Biases (W&B)**: es el archivo que
# la corrida registró, o se dibuja con los datos que registró (la tabla de puntuaciones, las
# coordenadas del t-SNE). El código que se califica vive en el paquete `ae_lab/`; las celdas de las
# secciones 3 y 4 lo muestran leído del propio paquete, así que no puede quedar desactualizado.

# %% tags=["parameters"]
# Parámetros: `make notebook NOTEBOOK_ARGS="-p NOMBRE VALOR"` cambia cualquiera de ellos
DATA = "synthetic"  # grilla principal: "synthetic" (sustituto) o "mvtec" (MVTec AD en DATA_ROOT)
DATA_ROOT = None  # None: carpeta del sintético según su tamaño; con "mvtec", la de MVTec AD
CATEGORIES = ["cable", "capsule", "screw", "transistor"]
N_TRAIN = 60  # sintético: imágenes de entrenamiento (buenas) por clase
N_TEST = 200  # sintético: imágenes de test por clase (1/3 buenas, el resto por defecto)
SOURCE_SIZE = 128  # sintético: lado de los archivos generados
IMAGE_SIZE = 128  # lado de la entrada de la red (128 x 128 x 3)
EPOCHS = 30  # épocas de cada corrida
BATCH_SIZE = 16
SWEEP = "sweeps/demo.yaml"  # grilla arquitectura x pérdida (8 corridas)
EXTRA_OVERRIDES = []  # overrides de Hydra para todas las corridas de la grilla principal
JOBS = 2  # corridas en paralelo
PROJECT = "tarea05"
WANDB_MODE = "offline"  # "offline": carpetas locales; "online": servidor de W&B
WANDB_DIR = None  # None: $WANDB_DIR o la raíz del repositorio
RUN_GRID = True  # False: reutiliza las corridas del grupo GROUP
GROUP = None  # grupo de W&B; None: uno nuevo; obligatorio cuando no se entrena
# Segunda grilla, en imágenes reales de MVTec AD (None: se omite)
REAL_ROOT = None  # carpeta con la estructura de MVTec AD, p. ej. ../shared/realdata/mvtec_screw_256
REAL_CATEGORIES = ["screw_matched"]
REAL_SWEEP = "sweeps/grid.yaml"
REAL_EPOCHS = 60  # épocas de cada corrida real (las de la configuración por defecto)
REAL_GROUP = None  # grupo de W&B con esa grilla ya entrenada; None: se entrena aquí

# %%
import functools
import inspect
import io
import json
import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm sin ipywidgets

import hydra
import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from IPython.display import Markdown, display
from omegaconf import OmegaConf
from PIL import Image

from ae_lab import figures, keys
from ae_lab.callbacks import CHECKPOINT_BEST, round_robin
from ae_lab.images import to_uint8
from ae_lab.metrics import defect_aurocs
from ae_lab.report import interval_table
from ae_lab.report.media import media_files, open_run, show_image

# %% [markdown]
# Cinco ayudas de presentación: texto y tablas como Markdown, el código fuente de una función del
# paquete, una figura de matplotlib como imagen, y los archivos que una corrida registró en W&B
# (`ae_lab/report/media.py` los busca en el resumen de la corrida).


# %%
def show_md(text: str) -> None:
    display(Markdown(text))


def show_table(table: pd.DataFrame, title: str = "", digits: int = 3) -> None:
    head = f"**{title}**\n\n" if title else ""
    show_md(head + table.to_markdown(index=False, floatfmt=f".{digits}f"))


def show_source(obj) -> None:
    show_md(f"```python\n{inspect.getsource(obj).rstrip()}\n```")


def show_figure(fig) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    show_image(np.asarray(Image.open(buf).convert("RGB")))


def logged(run_id: str, key: str) -> list:
    """(archivo, leyenda) de cada medio que la corrida `run_id` registró en W&B bajo `key`."""
    return media_files(run_id, key, WANDB_DIR, PROJECT if WANDB_MODE == "online" else None)


# %% [markdown]
# El notebook se ejecuta desde la raíz del repositorio (allí están `conf/`, `sweeps/` y
# `train.py`). Las corridas escriben en W&B según `WANDB_MODE` y `WANDB_DIR`.

# %%
ROOT = next(d for d in [Path.cwd(), *Path.cwd().parents] if (d / "train.py").is_file())
os.chdir(ROOT)
WANDB_DIR = Path(WANDB_DIR or os.environ.get("WANDB_DIR") or ROOT).resolve()
os.environ |= {"WANDB_DIR": str(WANDB_DIR), "WANDB_MODE": WANDB_MODE, "WANDB_SILENT": "true"}
if DATA == "mvtec" and DATA_ROOT is None:
    raise ValueError('DATA = "mvtec" necesita DATA_ROOT: la carpeta con cable/, screw/, ...')
if GROUP is None and not RUN_GRID:
    raise ValueError("RUN_GRID = False reutiliza las corridas de un grupo de W&B: defina GROUP.")
if DATA_ROOT is None:
    name = f"synthetic_nb_{'-'.join(CATEGORIES)}_n{N_TRAIN}-{N_TEST}_{SOURCE_SIZE}px"
    DATA_ROOT = Path(os.environ.get("AE_LAB_CACHE", ".cache/ae_lab"), name)
STAMP = time.strftime("%Y%m%d-%H%M%S")
GROUP = GROUP or f"nb-{DATA}-{STAMP}"
REAL = REAL_ROOT is not None
COMPLETO = EPOCHS >= 10 and (DATA == "mvtec" or N_TEST >= 50)  # el tamaño de la entrega
CREDIT = (
    "<sub>Imágenes reales: MVTec AD, clase *screw* © MVTec Software GmbH, licencia CC BY-NC-SA 4.0 "
    "(Bergmann et al., «MVTec AD — A Comprehensive Real-World Dataset for Unsupervised Anomaly "
    "Detection», CVPR 2019). Las figuras hechas con ellas se comparten bajo la misma licencia.</sub>"
)

# %% [markdown]
# Los overrides de Hydra de cada grilla: los de la grilla principal (sintética) y los de la real.
# Son los mismos argumentos que se escribirían en la terminal tras `python train.py`.

# %%
OVERRIDES = [
    f"data={DATA}",
    f"data.root={DATA_ROOT}",
    f"data.categories=[{','.join(CATEGORIES)}]",
    f"data.image_size={IMAGE_SIZE}",
    f"data.batch_size={BATCH_SIZE}",
    f"trainer.max_epochs={EPOCHS}",
    f"logger.project={PROJECT}",
]
if DATA == "synthetic":
    OVERRIDES += [
        f"data.generate.n_train={N_TRAIN}",
        f"data.generate.n_test={N_TEST}",
        f"data.generate.image_size={SOURCE_SIZE}",
    ]
OVERRIDES += EXTRA_OVERRIDES
REAL_OVERRIDES = [
    f"data.root={REAL_ROOT}",
    f"data.categories=[{','.join(REAL_CATEGORIES)}]",
    f"trainer.max_epochs={REAL_EPOCHS}",
    f"logger.project={PROJECT}",
]
REAL_GROUP = REAL_GROUP or f"nb-mvtec-{STAMP}"
show_md(f"Grilla principal: `{' '.join(OVERRIDES)}`")
if REAL:
    show_md(f"Grilla real (`{REAL_SWEEP}`, que ya fija `data=mvtec`): `{' '.join(REAL_OVERRIDES)}`")


# %%
def config(*overrides: str):
    """La configuración que compone `train.py` con estos overrides (sin ejecutar nada)."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
show_md(
    f"{EPOCHS} épocas por corrida en la grilla principal y {REAL_EPOCHS} en la real; dispositivo "
    f"{device} ({os.cpu_count()} núcleos); W&B {WANDB_MODE}, proyecto `{PROJECT}`; tamaño "
    f"completo de la entrega: {'sí' if COMPLETO else 'no (prueba corta)'}."
)

# %%
from importlib.metadata import version

names = ["torch", "lightning", "hydra-core", "wandb", "kornia", "matplotlib", "pandas"]
show_table(
    pd.DataFrame([(n, version(n)) for n in names], columns=["paquete", "versión"]),
    title=f"Versiones (Python {sys.version.split()[0]})",
)

# %% [markdown]
# ## 1. Objetivo y medida
#
# Se comparan dos arquitecturas y cuatro funciones de pérdida en una grilla de 2 x 4 = 8 corridas
# por conjunto de datos, con todo lo demás fijo:
#
# | | arquitectura | idea |
# |---|---|---|
# | `ae` | autoencoder convolucional (`ConvAutoencoder`) | toda la información pasa por el vector latente `z` |
# | `unet` | autoencoder U-Net (`UNetAutoencoder`) | además, conexiones *skip* del codificador al decodificador |
#
# | pérdida | definición |
# |---|---|
# | `l1` | error absoluto medio |
# | `l2` | error cuadrático medio |
# | `ssim` | 1 − SSIM (similitud estructural local, ventana gaussiana de 11 px) |
# | `ssim_l1` | 0.84 · (1 − SSIM) + 0.16 · L1 (Zhao et al., 2017) |
#
# **Error de reconstrucción.** Para cada imagen, el valor de la pérdida de la corrida entre la
# imagen y su reconstrucción (columna `loss` de la tabla de puntuaciones): es lo que el modelo
# aprendió a minimizar.
#
# **Puntuación de anomalía** (`conf/scoring/default.yaml`), la que se usa para detectar:
#
# 1. se ajusta el brillo y el contraste de la imagen a los de su reconstrucción (`x ≈ a · x̂ + b`
#    por imagen y canal), para que un cambio global de iluminación no cuente como defecto;
# 2. se calcula el error cuadrático por píxel, promediado sobre los canales: el **mapa de
#    anomalía**;
# 3. se suaviza con un filtro gaussiano de σ = 2 px, que borra el ruido de píxeles aislados;
# 4. la puntuación es la media del 0.5 % de píxeles con más error (82 de 128 x 128): un defecto
#    pequeño decide la puntuación aunque ocupe poco de la imagen.
#
# Con la misma puntuación en todas las corridas, lo único que cambia entre ellas es la
# reconstrucción. El **AUROC por imagen** mide cuán bien la puntuación separa buenas de
# defectuosas (0.5 = azar, 1 = perfecto); se calcula por clase y se promedia
# (`test/image_auroc`, la convención de MVTec AD). Los errores de validación `val/l1`, `val/l2` y
# `val/one_minus_ssim` (1 − SSIM) se calculan igual en todas las corridas, sea cual sea su
# pérdida: miden cuán bien *reconstruye* cada modelo.

# %% [markdown]
# ## 2. Datos
#
# MVTec AD tiene, por clase, imágenes de entrenamiento sólo buenas (`train/good`) e imágenes de
# test buenas y con defectos (`test/<defecto>`), cada defecto con su máscara
# (`ground_truth/<defecto>/<n>_mask.png`). El *data module* se instancia desde la misma
# configuración de Hydra que usan las corridas; de `train` se separa un 10 % por clase para
# validación.

# %%
dm = hydra.utils.instantiate(config(*OVERRIDES).data)
dm.prepare_data()  # genera el sintético si falta
TABLE = pd.concat([dm.table(s) for s in ("train", "val", "test")], ignore_index=True)


def count_images(table: pd.DataFrame) -> pd.DataFrame:
    split = pd.Categorical(table["split"], ["train", "val", "test"])
    label = table["label"].map({0: "buenas", 1: "defectuosas"})
    counts = pd.crosstab(table["category"], [split, label])
    counts.columns = [" ".join(c) for c in counts.columns]
    return counts.rename_axis("clase").reset_index()


show_table(count_images(TABLE), f"Grilla principal ({DATA}): imágenes por clase y partición")
defects = TABLE[TABLE["label"] == 1].groupby(["category", "defect"])
show_table(
    defects.agg(imágenes=("path", "size"), con_máscara=("mask_path", "count"))
    .reset_index()
    .rename(columns={"category": "clase", "defect": "defecto"}),
    title="Imágenes de test por tipo de defecto",
)

# %% [markdown]
# **El tornillo real.** `screw_matched` es una partición de la clase *screw* de MVTec AD: en esta
# copia las imágenes `test/good` son más oscuras que las de entrenamiento y que las defectuosas
# (gris medio 170 contra 184 y 187), así que una puntuación que siguiera el brillo separaría
# buenas de defectuosas sin mirar el tornillo. En `screw_matched` se apartaron como `test/good`
# 41 imágenes de `train/good` cuyo brillo coincide con el de las defectuosas: el brillo medio solo
# da un AUROC de 0.47, y lo que pase de 0.5 viene de la forma. Los defectos (roscas dañadas,
# puntas rotas, manchas) están juntos en una carpeta `defect`, sin máscaras.

# %%
from ae_lab.data.table import MissingMaskWarning

warnings.simplefilter("ignore", MissingMaskWarning)  # sin máscaras: lo dice el párrafo anterior
if REAL:
    REAL_DM = hydra.utils.instantiate(config("data=mvtec", *REAL_OVERRIDES).data)
    show_table(count_images(REAL_DM.table()), "Tornillo real: imágenes por clase y partición")
    show_md(CREDIT)


# %% [markdown]
# Muestras de entrenamiento (buenas) tal como están en disco; una fila por clase, en el orden de
# `CATEGORIES`, y al final el tornillo real:


# %%
def grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Filas de imágenes uint8 [H, W, 3] como una sola imagen (las filas cortas, con negro)."""
    rows = [np.hstack(r) for r in rows]
    width = max(r.shape[1] for r in rows)
    return np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])


def read(path: str, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(path).convert(mode).resize((IMAGE_SIZE, IMAGE_SIZE)))


train = TABLE[TABLE["split"] == "train"]
rows = [[read(p) for p in train[train["category"] == c]["path"][:6]] for c in CATEGORIES]
if REAL:
    rows.append([read(p) for p in REAL_DM.table("train")["path"][:6]])
show_image(grid(rows))
if REAL:
    show_md(CREDIT)

# %% [markdown]
# Un ejemplo de cada tipo de defecto del sintético: la imagen de test y, a su derecha, la misma
# con la máscara pintada en rojo; una fila por clase, con sus defectos en el orden de la leyenda.

# %%
first = defects.head(1)
rows = {c: [] for c in CATEGORIES}
for r in first.itertuples():
    image = read(r.path)
    tinted = image.copy()
    if isinstance(r.mask_path, str):
        mask = read(r.mask_path, "L") > 127
        tinted[mask] = (0.35 * tinted[mask] + 0.65 * np.array([255, 0, 0])).astype(np.uint8)
    rows[r.category] += [image, tinted]
show_image(grid(list(rows.values())))
show_md(
    "; ".join(f"**{c}**: {', '.join(first[first['category'] == c]['defect'])}" for c in CATEGORIES)
)

# %% [markdown]
# **Preprocesamiento.** Cada archivo se lee con Pillow y se lleva a RGB de 8 bits (las imágenes en
# escala de grises, como `screw`, se replican en tres canales), se redimensiona a `IMAGE_SIZE` x
# `IMAGE_SIZE` con interpolación bilineal antialiasada y se escala a [0, 1] como tensor `float32
# [3, H, W]`; las máscaras se redimensionan con vecino más cercano para seguir siendo binarias.
#
# **Alineación.** En MVTec AD el tornillo yace a cualquier ángulo; en el sintético, tumbado con un
# pequeño giro (hasta 3 grados; de 6 a 10 en las imágenes que llevan la perturbación de pose). Un
# objeto girado no es un defecto, y un autoencoder que debe codificar la pose dedica a ello parte de `z`
# y pierde el detalle fino (medido en `bench/README.md`, sección *Detection quality*). Antes de
# entrenar y de puntuar (`ae_lab/data/pose.py`, con los momentos de la imagen), las clases de
# `data.align` se ponen de pie (eje principal vertical, la cabeza arriba) y se centran; las de
# `data.straighten`, fotografiadas en una pose fija con un pequeño desvío (cápsula y transistor en
# el sintético), se centran y se enderezan con el menor giro posible, sin voltearlas. Las máscaras
# se transforman igual. El círculo del cable no tiene eje principal y queda como está. Así las ve
# la red (un lote de entrenamiento):

# %%
CFG = config(*OVERRIDES)
show_md(f"`data.align = {list(CFG.data.align)}`, `data.straighten = {list(CFG.data.straighten)}`")
seen = {c: [] for c in CATEGORIES}
for batch in dm.train_dataloader():
    for image, category in zip(to_uint8(batch["image"]), batch["category"], strict=True):
        seen[category].append(image)
rows = [seen[c][:6] for c in CATEGORIES]
if REAL:
    rows.append(list(to_uint8(next(iter(REAL_DM.train_dataloader()))["image"][:6])))
show_image(grid(rows))
show_md(f"Un lote de entrenamiento: `{batch['image'].dtype}` {tuple(batch['image'].shape)}.")
assert batch["image"].dtype == torch.float32
assert 0 <= batch["image"].min() <= batch["image"].max() <= 1

# %% [markdown]
# ## 3. Configuración (Hydra) y entrenamiento (Lightning)
#
# Todo lo que distingue a una corrida está en `conf/`: `config.yaml` compone un archivo por grupo
# (`data`, `model`, `loss`, `trainer`, `logger`, `callbacks`, `scoring`) y cada archivo es YAML
# plano con un `_target_`, la clase que Hydra instancia. Cambiar de modelo o de pérdida es elegir
# otra opción del grupo (`model=unet loss=l2`). Esta es la configuración compuesta de la grilla
# principal (sin overrides de modelo ni pérdida: `ae` con `ssim`, los valores por defecto), la que
# recibe `train.py` y que W&B guarda como configuración de la corrida:

# %%
parts = ["seed", "data", "model", "loss", "optimizer", "scheduler", "trainer", "scoring"]
shown = OmegaConf.masked_copy(CFG, [*parts, "run_name"])
show_md(f"```yaml\n{OmegaConf.to_yaml(shown, resolve=True)}```")

# %% [markdown]
# `train.py` es la entrada: `@hydra.main` compone esa configuración desde la línea de comandos y
# llama a `run_cli`, que envuelve `train(cfg)` (errores del usuario en un párrafo, el archivo de
# resultados de la grilla).

# %%
show_md(f"```python\n{Path('train.py').read_text().rstrip()}\n```")

# %% [markdown]
# `train(cfg)` instancia desde la configuración el *data module*, el `LightningModule`, los
# callbacks de `conf/callbacks/` (el `ModelCheckpoint` que guarda el mejor modelo por `val/loss` y
# `last.ckpt`, el monitor de la tasa de aprendizaje, el callback de medios de W&B), el logger de
# W&B (`conf/logger/wandb.yaml`) y el `Trainer`; entrena, evalúa en test con el mejor checkpoint y
# devuelve las métricas.

# %%
from ae_lab.training import build_module, build_trainer, train

show_source(train)
show_source(build_trainer)
for name in ("callbacks/default.yaml", "logger/wandb.yaml"):
    show_md(f"`conf/{name}`:\n```yaml\n{(ROOT / 'conf' / name).read_text().rstrip()}\n```")

# %% [markdown]
# ## 4. Modelos y LightningModule
#
# Ambas redes comparten codificador y decodificador (`ae_lab/models/`): convoluciones de paso 2
# que reducen la resolución a la mitad, una capa lineal hasta el vector latente `z`, y el camino
# inverso hasta una salida sigmoide en [0, 1]. La U-Net agrega *skips*: en cada nivel el
# decodificador recibe, concatenado, el mapa del codificador de la misma resolución. Una tercera
# opción, `unet_coarse`, es una U-Net con un nivel más (profundidad 5) y un único *skip*, el más
# profundo (4 x 4 a 128 px); se explica en la sección 7.5.

# %%
MODEL_NAMES = ("ae", "unet", "unet_coarse")
NETS = {m: hydra.utils.instantiate(config(*OVERRIDES, f"model={m}").model.net) for m in MODEL_NAMES}
x = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE)
show_table(
    pd.DataFrame(
        [
            (
                m,
                type(net).__name__,
                sum(p.numel() for p in net.parameters()),
                net.encode(x).shape[1],
            )
            for m, net in NETS.items()
        ],
        columns=["modelo", "clase", "parámetros", "dim. de z"],
    ),
    title="Las redes",
)
show_md(
    f"`conf/model/unet_coarse.yaml`:\n```yaml\n{Path('conf/model/unet_coarse.yaml').read_text()}```"
)

# %% [markdown]
# La U-Net, con sus *skips*: `forward_with_latent` guarda la salida de cada nivel del codificador
# (`skips`) y el decodificador concatena la de su misma resolución antes de cada bloque.

# %%
show_source(type(NETS["unet"]))

# %% [markdown]
# El `LightningModule` (`ae_lab/module.py`) recibe la red, la pérdida y el optimizador ya
# instanciados por Hydra. El paso de entrenamiento registra `train/loss`; el de validación,
# `val/loss` y los tres errores comunes a todas las corridas; el de test codifica cada lote una
# vez y devuelve la reconstrucción, `z`, el mapa de anomalía y la tabla de puntuaciones, que leen
# las métricas y el callback de W&B. `configure_optimizers` arma AdamW con la tasa de aprendizaje
# *one-cycle* (subida al 15 % del entrenamiento, luego bajada coseno).

# %%
from ae_lab.module import AutoencoderModule

for method in ("training_step", "validation_step", "test_step", "configure_optimizers"):
    show_source(getattr(AutoencoderModule, method))

# %% [markdown]
# **Por qué importan los *skips*.** En el autoencoder clásico todo pasa por `z`, un cuello de
# botella que sólo alcanza para lo que se repite en las imágenes buenas; un defecto no cabe en esa
# descripción, la reconstrucción lo «repara» y el error se concentra en él. Los *skips* de la
# U-Net llevan al decodificador el detalle de alta resolución sin pasar por `z`: la red puede
# copiar la entrada, defecto incluido. Se espera que reconstruya mejor y detecte peor; la sección
# 7 lo pone a prueba.

# %% [markdown]
# ## 5. La grilla
#
# Una grilla es un archivo de barrido de W&B (`method: grid`, parámetros que son rutas de Hydra).
# Se puede correr de tres maneras, que dan las mismas corridas:
#
# 1. con un barrido de W&B y su agente (en línea; un agente por máquina o GPU):
#    ```bash
#    wandb sweep sweeps/grid.yaml                 # imprime ENTIDAD/tarea05/ID
#    wandb agent ENTIDAD/tarea05/ID
#    ```
# 2. como un *multirun* de Hydra (sin servidor; el launcher joblib corre varias a la vez):
#    ```bash
#    python train.py -m hydra/launcher=joblib model=ae,unet loss=l1,l2,ssim,ssim_l1
#    ```
# 3. con el ejecutor del repositorio, que traduce el archivo de barrido a ese *multirun*
#    (`python -m ae_lab.sweep`). Es el que usa este notebook y el que corre `make demo`.
#
# El archivo de la grilla principal:

# %%
show_md(f"`{SWEEP}`:\n```yaml\n{Path(SWEEP).read_text().rstrip()}\n```")


# %% [markdown]
# Cada grilla agrega una novena corrida en su mismo grupo de W&B: `unet_coarse` con SSIM (sección
# 7.5), con los valores fijos del archivo de barrido, para que sólo cambie el modelo.


# %%
from ae_lab.sweep import hydra_value, load_sweep


def grid_commands(sweep: str, overrides: list[str], group: str) -> list[list[str]]:
    """Los dos comandos de una grilla: el barrido como multirun de Hydra (JOBS corridas a la vez)
    y la novena corrida, `train.py` con los valores fijos del barrido y `unet_coarse` + SSIM."""
    grid = ["-m", "ae_lab.sweep", sweep, *overrides, "--jobs", str(JOBS), "--group", group]
    fixed = {
        k: hydra_value(v[0]) for k, v in load_sweep(sweep)["parameters"].items() if len(v) == 1
    }
    one = fixed | dict(o.partition("=")[::2] for o in overrides)
    one |= {"model": "unet_coarse", "loss": "ssim", "logger.group": group}
    return [grid, ["train.py", *(f"{k}={v}" for k, v in one.items())]]


def show_commands(commands: list[list[str]]) -> None:
    show_md("```bash\n" + "\n".join(shlex.join(["python", *c]) for c in commands) + "\n```")


# %%
def run_grid(sweep: str, overrides: list[str], group: str) -> None:
    """Corre los dos comandos; las barras de avance no se muestran, sólo la tabla del barrido."""
    commands = grid_commands(sweep, overrides, group)
    show_commands(commands)
    start = time.time()
    for command in commands:
        proc = subprocess.run([sys.executable, *command], capture_output=True, text=True)
        assert proc.returncode == 0, f"falló; sus últimos mensajes:\n{proc.stderr[-3000:]}"
        if command[0] == "-m":
            table = proc.stdout[proc.stdout.index("\nrun ") :].split("\n[sweep]")[0].strip()
            show_md(f"```\n{table}\n```")
    show_md(f"{(time.time() - start) / 60:.1f} min, grupo `{group}`.")


# %%
if RUN_GRID:
    run_grid(SWEEP, OVERRIDES, GROUP)
else:
    show_md(f"Se reutilizan las corridas del grupo `{GROUP}`, entrenadas antes con estos comandos:")
    show_commands(grid_commands(SWEEP, OVERRIDES, GROUP))

# %% [markdown]
# La grilla real usa `sweeps/grid.yaml` (la grilla de la tarea sobre MVTec AD, lotes de 32) con la
# carpeta y la clase del tornillo real y `REAL_EPOCHS` épocas por corrida: 60, las de la
# configuración por defecto, porque una clase de MVTec da sólo 8 pasos por época (con 30, el
# autoencoder clásico con SSIM se quedó en 0.81 en una prueba).

# %%
if REAL and REAL_GROUP.startswith(f"nb-mvtec-{STAMP}"):  # un grupo nuevo: se entrena aquí
    run_grid(REAL_SWEEP, REAL_OVERRIDES, REAL_GROUP)
elif REAL:
    show_md(f"Se reutilizan las corridas del grupo `{REAL_GROUP}`, entrenadas con estos comandos:")
    show_commands(grid_commands(REAL_SWEEP, REAL_OVERRIDES, REAL_GROUP))

# %% [markdown]
# ## 6. Resultados desde W&B
#
# Todo lo que sigue se lee de las corridas de W&B de cada grupo (las carpetas offline o la API).
# `run_analysis` es lo mismo que `analyze.py --project tarea05 --group GRUPO`: arma las tablas,
# escribe el informe HTML y registra en W&B una corrida de análisis con las figuras que comparan
# corridas.

# %%
from ae_lab.analysis.report import run_analysis

SETS = {"sintético" if DATA == "synthetic" else "MVTec AD": GROUP}
if REAL:
    SETS["tornillo real"] = REAL_GROUP
RESULTS = {}
for name, group in SETS.items():
    out = run_analysis(
        PROJECT,
        group=group,
        offline_dir=None if WANDB_MODE == "online" else WANDB_DIR / "wandb",
        out_dir=ROOT / "reports" / f"{PROJECT}-{group}",
    )
    assert not out.analysis.mismatches, out.analysis.mismatches  # AUROC recalculado = registrado
    RESULTS[name] = out
    runs = out.data.runs
    show_md(
        f"**{name}**: {len(runs)} corridas del grupo `{group}` "
        f"({', '.join(runs['label'])}); corrida de análisis `{out.logged.run_id}`."
    )


def runs_of(name: str) -> pd.DataFrame:
    return RESULTS[name].data.runs.set_index("label", drop=False)


def credit(name: str) -> None:
    if name == "tornillo real":
        show_md(CREDIT)


# %% [markdown]
# ### 6.1 Curvas de pérdida
#
# Una figura por arquitectura con sus cuatro pérdidas: a la izquierda `train/loss` (continua) y
# `val/loss` (discontinua), cada una en la escala de su propia función (eje logarítmico: L2 es
# mucho menor que 1 − SSIM); a la derecha `val/l1`, el mismo error para todas, donde sí se
# comparan. Son las figuras `analysis/loss_curves_image/<modelo>` de la corrida de análisis.

# %%
for name, out in RESULTS.items():
    for model in sorted(out.data.runs["model"].unique()):
        show_md(f"**{name}, {model}**")
        show_image(logged(out.logged.run_id, f"analysis/loss_curves_image/{model}")[0][0])
    credit(name)

# %% [markdown]
# **Lectura.** Las curvas de entrenamiento y validación bajan juntas y se aplanan en las últimas
# épocas, cuando la tasa *one-cycle* llega a casi cero: no hay sobreajuste visible (la validación
# es de imágenes buenas, como el entrenamiento). Los picos de las primeras épocas (L1 en la época
# 3 del sintético, en la 7 del real) caen mientras la tasa de aprendizaje sube hacia su máximo, en
# el primer 15 % del entrenamiento, y desaparecen cuando baja. En `val/l1` la U-Net queda por
# debajo del autoencoder clásico con cualquier pérdida: reconstruye mejor (tabla de 7.2).

# %% [markdown]
# ### 6.2 Reconstrucciones de validación
#
# Las mismas 16 imágenes de validación en todas las corridas de un conjunto
# (`val/reconstructions`); filas 1 y 3 originales, filas 2 y 4 sus reconstrucciones, al final del
# entrenamiento.

# %%
for name in RESULTS:
    for label, run in runs_of(name).iterrows():
        show_md(f"**{name}: {label}**")
        show_image(logged(run["run_id"], keys.VAL_RECONSTRUCTIONS)[0][0])
    credit(name)

# %% [markdown]
# **Lectura.** En el sintético, el autoencoder clásico entrega reconstrucciones algo borrosas. Con
# L1 y L2 borra los detalles finos, que ocupan pocos píxeles y apenas pesan en un error medio: de
# las patas del transistor quedan tres puntos, la impresión «500» de la cápsula se vuelve una
# mancha gris y los hilos de cobre del cable, un color liso. Con SSIM y SSIM+L1 dibuja las patas,
# porque SSIM compara estructura local (contraste y correlación en ventanas de 11 px) y castiga
# el borrado de un borde; a cambio tolera desvíos del color medio: los colores del cable salen
# más saturados y la impresión «500», una mancha verdosa. Ningún autoencoder clásico escribe el
# «500»: es un detalle que `z` no guarda. La U-Net reproduce casi exactamente cualquier entrada,
# impresión incluida. En el tornillo real pasa lo mismo con la rosca: con L1 y L2 el autoencoder
# clásico dibuja un vástago liso; con SSIM, una rosca regular.

# %% [markdown]
# ### 6.3 t-SNE de los latentes
#
# Para la mejor corrida de cada arquitectura (por AUROC; las de las demás están en W&B), a la
# izquierda el t-SNE 2-D de los vectores `z` de **todas** las imágenes de validación, coloreadas
# por clase (`val/latent_tsne_table`); a la derecha, el de **todas** las imágenes de test, buenas
# contra defectuosas (`test/latent_tsne`). Las coordenadas son las que calculó y registró cada
# corrida; aquí sólo se dibujan.


# %%
def best_runs(name: str) -> dict[str, pd.Series]:
    """La corrida de mayor AUROC de cada arquitectura del conjunto `name`."""
    runs = runs_of(name).sort_values(keys.TEST_IMAGE_AUROC)
    return {m: part.iloc[-1] for m, part in runs.groupby("model")}


def wandb_table(run_id: str, key: str) -> pd.DataFrame:
    """Una tabla de W&B (`{"columns": [...], "data": [...]}`) como DataFrame."""
    obj = json.loads(logged(run_id, key)[0][0].read_text())
    return pd.DataFrame(obj["data"], columns=obj["columns"])


def plotly_points(run_id: str, key: str) -> pd.DataFrame:
    """Los puntos (x, y, clase, buena o defectuosa) de un t-SNE registrado como figura Plotly."""
    fig = json.loads(logged(run_id, key)[0][0].read_text())
    rows = []
    for trace in fig["data"]:
        status, _, category = trace["name"].partition(", ")  # "good, cable"
        label = int(status == "defective")
        rows += [(x, y, category, label) for x, y in zip(trace["x"], trace["y"], strict=True)]
    return pd.DataFrame(rows, columns=["x", "y", "category", "label"])


# %%
for name in RESULTS:
    for run in best_runs(name).values():
        fig = figures.Figure(figsize=(11, 4.4), dpi=figures.DPI, layout="constrained")
        left, right = fig.subplots(1, 2)
        val = wandb_table(run["run_id"], keys.VAL_LATENT_TSNE_TABLE)
        figures.tsne_scatter(val, f"validación: {len(val)} imágenes, por clase", ax=left)
        if f"{keys.TEST_LATENT_TSNE}.path" in open_run(run["run_id"], WANDB_DIR)[0]:
            test = plotly_points(run["run_id"], keys.TEST_LATENT_TSNE)
            figures.tsne_scatter(test, f"test: {len(test)} imágenes", by="label", ax=right)
        else:  # media.tsne_test=false
            right.set_visible(False)
        fig.suptitle(f"{name}: t-SNE de los latentes de {run['label']}")
        show_figure(fig)
    credit(name)

# %% [markdown]
# **Lectura.** En el sintético los latentes de validación forman un grupo por clase en las tres
# corridas: `z` distingue sin esfuerzo un cable de un tornillo. En test, las defectuosas caen
# dentro de los grupos de las buenas de su clase, no aparte: `z` describe el objeto, no el
# defecto, y por eso se detecta con el error de reconstrucción y no con la posición en el
# espacio latente. Con una sola clase (el tornillo real) el t-SNE de validación no tiene grupos
# que separar, y en test buenas y defectuosas se mezclan igual.

# %% [markdown]
# ### 6.4 Reconstrucciones de test: el mejor autoencoder clásico contra la U-Net
#
# Las mismas 16 imágenes de test para el mejor autoencoder clásico y la mejor U-Net de cada
# conjunto (por AUROC; en el real, también `unet_coarse`): 8 buenas (una por clase por turno) y 8
# defectuosas de los tipos de defecto **más difíciles** para el autoencoder clásico (los de menor
# AUROC). Cada modelo se carga de su mejor checkpoint (`checkpoint/best` en el resumen de W&B) y
# pasa las imágenes por su `test_step`; el mapa de anomalía de cada modelo va en su propia escala
# (barra de color debajo), común a sus 16 imágenes. W&B guarda además, por corrida, 16 tiras
# fijas de este tipo en `test/reconstructions`.


# %%
def pick_test(scores: pd.DataFrame, n: int = 8) -> pd.DataFrame:
    """n buenas (clases por turno) y n defectuosas: de los tipos de defecto con menor AUROC,
    una imagen de cada uno (si hay menos de n tipos, se repiten los más difíciles)."""
    good = scores.loc[round_robin(scores[scores["label"] == 0], n, ["category"])]
    aurocs = defect_aurocs(scores, "score").sort_values("auroc")
    aurocs = aurocs[aurocs["defect"] != "all"]
    bad = scores[scores["label"] == 1].sample(frac=1, random_state=0)
    picked, n = [], min(n, len(bad))
    while len(picked) < n:
        for r in aurocs.itertuples():
            rows = bad[(bad["category"] == r.category) & (bad["defect"] == r.defect)]
            rows = rows[~rows.index.isin(picked)]
            if len(rows) and len(picked) < n:
                picked.append(rows.index[0])
    return pd.concat([good, scores.loc[picked]])


# %% [markdown]
# `predict` usa el código de la corrida: `build_module` arma el mismo `LightningModule` desde la
# configuración que Hydra guardó junto al checkpoint, y `test_step` produce la reconstrucción y el
# mapa de anomalía exactamente como en el test de la corrida.


# %%
@functools.cache
def test_split(data_yaml: str) -> tuple[dict[str, int], object]:
    """El test de una configuración de datos, cargado una vez por conjunto (las corridas de una
    grilla comparten sus datos): ruta -> posición, y el dataset."""
    data = hydra.utils.instantiate(OmegaConf.create(data_yaml))
    return {p: i for i, p in enumerate(data.table("test")["path"])}, data.dataset("test")


@torch.no_grad()
def predict(run_id: str, paths: list[str]) -> dict:
    """Carga el mejor checkpoint de la corrida con su propia configuración y corre `test_step`
    sobre las imágenes `paths`: imagen, reconstrucción, mapa de anomalía y máscara."""
    ckpt = Path(open_run(run_id, WANDB_DIR)[0][CHECKPOINT_BEST])
    cfg = OmegaConf.load(ckpt.parents[1] / ".hydra" / "config.yaml")
    cfg.result_file = None  # `${hydra:...}` sólo se resuelve dentro de una corrida de Hydra
    module = build_module(cfg)  # el mismo LightningModule que entrenó la corrida
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    module.load_state_dict(state)
    module.eval()
    position, dataset = test_split(OmegaConf.to_yaml(cfg.data, resolve=True))
    batch = dataset.__getitems__([position[p] for p in paths])
    return batch | module.test_step(batch, 0)


# %%
COMPARED = {}
for name in RESULTS:
    best = best_runs(name)
    scores = RESULTS[name].data.scores
    chosen = pick_test(scores[scores["run_id"] == best["ae"]["run_id"]])
    models, out = {}, None
    for run in best.values():
        out = predict(run["run_id"], chosen["path"].tolist())
        maps = out["map"][:, 0].numpy()
        name_ = run["label"].rsplit("-z", 1)[0]  # "ae-ssim-z128" -> "ae-ssim"
        models[name_] = (to_uint8(out["recon"]), maps, float(np.quantile(maps, 0.999)))
    spanish = {"good": "buena", "defect": "defecto"}  # nombres de carpeta de MVTec AD
    titles = [f"{r.category}\n{spanish.get(r.defect, r.defect)}" for r in chosen.itertuples()]
    COMPARED[name] = chosen
    n_good = int((chosen["label"] == 0).sum())
    for part, rows in (("buenas", slice(0, n_good)), ("defectuosas", slice(n_good, None))):
        show_md(f"**{name}: imágenes {part}**")
        show_figure(
            figures.reconstruction_comparison(
                to_uint8(out["image"])[rows],
                out["mask"][rows, 0].numpy(),
                {k: (r[rows], m[rows], v) for k, (r, m, v) in models.items()},
                titles[rows],
            )
        )
    credit(name)

# %% [markdown]
# **Lectura.** En las buenas, el mapa del autoencoder clásico es oscuro salvo donde no sabe
# dibujar: la impresión «500» de todas las cápsulas y las patas del transistor. En las
# defectuosas se enciende donde la máscara marca el defecto (el agujero del cable, la pata
# cortada), porque dibuja la pieza normal en su lugar; en las grietas y rayas de la cápsula, el
# defecto queda junto a la impresión, que ya brilla en las buenas: por eso son los defectos más
# difíciles (7.4). La U-Net reproduce también el defecto (el agujero negro del cable, la pata
# cortada): su error, mucho menor (véanse las barras de color), se reparte por los bordes en
# buenas y defectuosas por igual. En el tornillo real (sin máscaras: la columna va vacía) el mapa del autoencoder
# clásico y el de `unet_coarse` se encienden en un punto (una mancha en el vástago, una rosca
# dañada, la punta), y el de la U-Net, mucho más tenue, en toda la rosca.

# %% [markdown]
# ### 6.5 Histogramas: buenas contra cada tipo de defecto
#
# Para la mejor corrida de cada arquitectura y por clase, un panel por tipo de defecto: la
# distribución de las imágenes con ese defecto (rojo) contra la de las buenas (gris), como
# fracción de cada grupo, con el AUROC del defecto en el título. Primero el **error de
# reconstrucción** en la pérdida de la corrida (columna `loss` de `test/scores`); después la
# **puntuación de anomalía** de la sección 1, la que decide la detección
# (`test/score_histogram_images/<clase>` en W&B).

# %%
for name in RESULTS:
    scores = RESULTS[name].data.scores
    for model, run in best_runs(name).items():
        if model == "unet_coarse":
            continue
        part = scores[scores["run_id"] == run["run_id"]]
        for cat in sorted(part["category"].unique()):
            show_md(f"**{name}: {run['label']}, {cat}**")
            show_figure(figures.defect_histograms(part, cat, column="loss"))
            show_image(logged(run["run_id"], f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{cat}")[0][0])
    credit(name)

# %% [markdown]
# Las dos vistas en cifras: por corrida, el AUROC (media de las clases) del error de
# reconstrucción y el de la puntuación de anomalía.

# %%
rows = []
for name, out in RESULTS.items():
    for _, run in runs_of(name).iterrows():
        part = out.data.scores[out.data.scores["run_id"] == run["run_id"]]
        aurocs = [
            defect_aurocs(part, c).query("defect == 'all'")["auroc"].mean()
            for c in ("loss", "score")
        ]
        rows.append((name, run["label"], *aurocs))
VIEWS = pd.DataFrame(
    rows, columns=["datos", "corrida", "AUROC del error", "AUROC de la puntuación"]
)
show_table(VIEWS, title="Qué separa mejor: el error de reconstrucción o la puntuación")

# %% [markdown]
# **Lectura.** El error de reconstrucción medio de la imagen entera separa mal: un defecto ocupa
# pocos píxeles y su error se diluye en el de todo el objeto, que varía de una pieza buena a otra.
# La puntuación, que mira sólo el 0.5 % de píxeles con más error tras alinear el brillo, separa
# mucho mejor en el autoencoder clásico y en `unet_coarse`. En la U-Net ninguna de las dos
# separa; en el tornillo real su error medio queda incluso por debajo de 0.5 (las defectuosas se
# reconstruyen con *menos* error que las buenas), algo que aquí no se investigó.

# %% [markdown]
# ### 6.6 AUROC por clase y defecto
#
# La figura `analysis/auroc_heatmap_image` de la corrida de análisis, con escala fija de 0 a 1
# (0.5 = azar, amarillo): un defecto en rojo es uno en que las imágenes defectuosas puntúan *por
# debajo* de las buenas.

# %%
for name, out in RESULTS.items():
    show_md(f"**{name}**")
    show_image(logged(out.logged.run_id, "analysis/auroc_heatmap_image")[0][0])
    credit(name)

# %% [markdown]
# ## 7. Análisis
#
# ### 7.1 Cuánto se puede leer de una diferencia
#
# Hay dos fuentes de ruido. La primera es el **muestreo de las imágenes de test**: con pocas
# decenas de imágenes por clase, un AUROC se mueve algunas centésimas según qué imágenes tocaron.
# La tabla da, por corrida, el AUROC medio de las clases con su intervalo de *bootstrap* al 95 %
# (se remuestrean las imágenes de test dentro de cada clase). La segunda es la **semilla** (otra
# inicialización, otro orden de los lotes), que estos intervalos no incluyen: cada corrida de la
# grilla tiene una sola semilla. Medida aparte (`bench/README.md`, 3 semillas, 60 épocas), la
# configuración por defecto (`ae` con SSIM) da en el tornillo real 0.935 ± 0.007 (desviación
# estándar; semillas 0.942, 0.935 y 0.928). Una diferencia entre dos corridas sólo se lee como real si sus intervalos no se
# solapan **y** supera con margen esa variación entre semillas.

# %%
CI = {}
for name, out in RESULTS.items():
    CI[name] = interval_table(out.data.runs, out.data.scores)
    show_table(CI[name], title=f"{name}: AUROC (media de clases) e intervalo de bootstrap al 95 %")
    assert (
        (CI[name]["IC95 inf."] <= CI[name]["AUROC"]) & (CI[name]["AUROC"] <= CI[name]["IC95 sup."])
    ).all()

# %% [markdown]
# ### 7.2 Autoencoder clásico contra U-Net
#
# Se comparan las arquitecturas a igual pérdida, en reconstrucción (`val/l1`, menor es mejor) y
# en detección (AUROC).

# %%
REC = {}
for name, out in RESULTS.items():
    runs = runs_of(name)
    final = out.analysis.run_table.set_index("label")  # valores finales de validación
    rec = pd.DataFrame(
        {
            "modelo": runs["model"],
            "pérdida": runs["loss"],
            "val/l1": final[f"final_{keys.VAL_L1}"],
            "val/one_minus_ssim": final[f"final_{keys.VAL_ONE_MINUS_SSIM}"],
            "AUROC": runs[keys.TEST_IMAGE_AUROC],
        }
    ).sort_values(["modelo", "pérdida"])
    REC[name] = rec
    show_table(rec, digits=4, title=f"{name}: reconstrucción (validación) y detección (test)")
    if not {"ae", "unet"} <= set(rec["modelo"]):
        continue
    pair = rec[rec["modelo"].isin(["ae", "unet"])].pivot(index="pérdida", columns="modelo")
    better = int((pair[("val/l1", "unet")] < pair[("val/l1", "ae")]).sum())
    ae_mean, unet_mean = pair[("AUROC", "ae")].mean(), pair[("AUROC", "unet")].mean()
    show_md(
        f"**{name}**: la U-Net reconstruye mejor (menor `val/l1`) con {better} de las "
        f"{len(pair)} pérdidas; AUROC medio sobre las pérdidas: autoencoder clásico "
        f"**{ae_mean:.3f}**, U-Net **{unet_mean:.3f}**."
    )
    if COMPLETO:
        assert better == len(pair) and unet_mean < ae_mean - 0.1

# %% [markdown]
# En los dos conjuntos, la U-Net reconstruye mejor que el autoencoder clásico con las cuatro
# pérdidas y detecta mucho peor: reconstruir bien no basta, hay que reconstruir mal lo anómalo, y
# los *skips* llevan el defecto de la entrada a la salida sin pasar por el cuello de botella. La
# diferencia entre arquitecturas es de varias décimas de AUROC, muy por encima de los intervalos
# de 7.1 y de la variación entre semillas: es la conclusión más sólida de la tarea. Juntar las
# ocho corridas en una correlación entre `val/l1` y AUROC mediría sólo esta diferencia entre
# arquitecturas; dentro de cada una hay cuatro puntos, muy pocos para una correlación.

# %% [markdown]
# ### 7.3 La mejor pérdida de cada arquitectura

# %%
for name, ci in CI.items():
    lines = []
    for model, part in ci[ci["modelo"].isin(["ae", "unet"])].groupby("modelo"):
        part = part.sort_values("AUROC", ascending=False)
        top, second = part.iloc[0], part.iloc[1]
        apart = top["IC95 inf."] > second["IC95 sup."]
        if COMPLETO and model == "ae":  # «Entre SSIM y SSIM+L1 no hay diferencia medible» (9)
            assert {top["pérdida"], second["pérdida"]} == {"ssim", "ssim_l1"} and not apart
        lines.append(
            f"- `{model}`: la mejor es **{top['pérdida']}** ({top['AUROC']:.3f}, IC95 "
            f"{top['IC95 inf.']:.3f}–{top['IC95 sup.']:.3f}); la segunda, {second['pérdida']} "
            f"({second['AUROC']:.3f}): los intervalos {'no ' if apart else ''}se solapan. "
            f"Rango entre sus cuatro pérdidas: {part['AUROC'].max() - part['AUROC'].min():.3f}."
        )
    show_md(f"**{name}**\n\n" + "\n".join(lines))

# %% [markdown]
# **Por qué SSIM ayuda al autoencoder clásico.** L1 y L2 promedian el error de todos los píxeles:
# una reconstrucción borrosa, que acierta el tono medio y omite los detalles finos, les cuesta
# poco. Con eso, el autoencoder no aprende a dibujar la rosca del tornillo ni las patas del
# transistor, y las piezas buenas dejan un error alto justo en esas zonas, donde también caen
# muchos defectos: la puntuación de las buenas sube y se mezcla con la de las defectuosas. SSIM
# compara en ventanas de 11 px la media, el contraste y la correlación entre imagen y
# reconstrucción, y una zona borrosa la castiga aunque su tono medio sea correcto: el
# autoencoder aprende a dibujar la estructura normal, las buenas quedan con poco error, y lo que
# sobresale es el defecto. Que la puntuación se calcule siempre con L2 sobre la imagen alineada en
# brillo (sección 1) neutraliza el punto débil de SSIM, su tolerancia a desvíos del color medio.
# En la U-Net la pérdida importa poco: con cualquiera de las cuatro copia la entrada.
#
# **Cuánto ayuda**, autoencoder clásico con SSIM contra L2:


# %%
SSIM_APART = {}  # ¿los intervalos de SSIM y L2 se separan?
for name, ci in CI.items():
    ae = ci[ci["modelo"] == "ae"].set_index("pérdida")
    (a, a_lo, _), (b, _, b_hi) = (
        ae.loc[k, ["AUROC", "IC95 inf.", "IC95 sup."]] for k in ("ssim", "l2")
    )
    SSIM_APART[name] = a_lo > b_hi
    show_md(
        f"- **{name}**: SSIM {a:.3f} contra L2 {b:.3f} (+{a - b:.3f}); los intervalos "
        f"{'no se solapan' if SSIM_APART[name] else 'se solapan'}."
    )
if COMPLETO and REAL:
    assert SSIM_APART["tornillo real"] and not SSIM_APART["sintético"]

# %% [markdown]
# En el tornillo real la ventaja de SSIM es clara: la rosca es el detalle que L2 borra y donde
# caen los defectos. En el sintético es pequeña y cabe en el ruido del test: los defectos dibujados
# son casi todos grandes, y L2 ya los separa.

# %% [markdown]
# ### 7.4 Defectos fáciles y difíciles
#
# Por defecto, el mejor AUROC de cada arquitectura entre sus cuatro pérdidas, ordenado de más
# difícil a más fácil para el autoencoder clásico.

# %%
for name, out in RESULTS.items():
    runs = runs_of(name)
    table = out.analysis.auroc_table.drop(columns="best_run")
    best = table.T.groupby(runs["model"]).max().T.add_prefix("mejor ")
    best = best.reset_index().rename(columns={"category": "clase", "defect": "defecto"})
    best = best[best["defecto"] != "all"].sort_values("mejor ae", ignore_index=True)
    show_table(best, title=f"{name}: mejor AUROC por defecto y arquitectura")
    if len(best) > 3:
        hard, easy = (
            ", ".join(f"{r['clase']}/{r['defecto']} ({r['mejor ae']:.2f})" for _, r in t.iterrows())
            for t in (best.head(3), best.tail(3))
        )
        show_md(f"Más difíciles para el autoencoder clásico: {hard}; más fáciles: {easy}.")

# %% [markdown]
# **Lectura.** Los defectos fáciles son grandes o cambian la forma del objeto (un hilo que falta,
# un transistor mal colocado, una cápsula aplastada): la reconstrucción dibuja el objeto normal y
# la diferencia ocupa muchos píxeles. Los difíciles son finos y de bajo contraste (la grieta y la
# raya de la cápsula): su error no sobresale del que el autoencoder ya comete en las piezas
# buenas, sobre todo junto a la impresión «500», que no sabe dibujar (6.4). En la U-Net ningún
# defecto llega a 0.7, y varios quedan en 0.49-0.50: azar. `unet_coarse`, con la semilla de esta
# grilla, queda por debajo del autoencoder clásico en casi todos los defectos del sintético, más en
# los del cable y la cápsula (7.5). El tornillo real junta todos sus defectos en una carpeta, así
# que allí no hay desglose por tipo.

# %% [markdown]
# ### 7.5 Una U-Net que detecta: `unet_coarse`
#
# Si los *skips* son el problema, no hace falta quitarlos todos. Un *skip* a resolución completa
# o a la mitad entrega al decodificador los píxeles de la entrada, defecto incluido. Uno muy
# profundo, a 1/32 de resolución (4 x 4 a 128 px), resume en cada celda un parche de 32 x 32: lleva
# la disposición de la pieza (dónde está cada parte) pero no un defecto de pocos píxeles, que el
# decodificador debe volver a dibujar a partir de lo que aprendió de las piezas normales.
# `conf/model/unet_coarse.yaml` es la U-Net con un nivel más (`depth: 5`) y `skip_levels: [-1]`
# (sólo el nivel más profundo), sin código nuevo. Con la profundidad de la U-Net (4, un *skip* de
# 8 x 8) la cápsula sintética se quedaba en 0.61-0.64: sus defectos grandes pasaban por el *skip*
# (`bench/README.md`).

# %%
for name, rec in REC.items():
    rec = rec.set_index(["modelo", "pérdida"])
    if ("unet_coarse", "ssim") not in rec.index:
        continue
    show_table(
        rec.reset_index().query("`pérdida` == 'ssim'"),
        digits=4,
        title=f"{name}, pérdida SSIM: las tres arquitecturas",
    )
    coarse, plain, ae = (rec.loc[(m, "ssim"), "AUROC"] for m in ("unet_coarse", "unet", "ae"))
    both = CI[name].set_index(["modelo", "pérdida"]).loc[[("unet_coarse", "ssim"), ("ae", "ssim")]]
    overlap = both["IC95 inf."].max() <= both["IC95 sup."].min()
    show_md(
        f"`unet_coarse`: **{coarse:.3f}**; con la misma pérdida, la U-Net completa {plain:.3f} y el "
        f"autoencoder clásico {ae:.3f} (intervalos de 7.1 {'solapados' if overlap else 'separados'})."
    )
    if COMPLETO:  # lo que dice el párrafo siguiente
        assert coarse > plain + 0.2 and overlap
        assert rec.loc[("unet_coarse", "ssim"), "val/l1"] < rec.loc[("ae", "ssim"), "val/l1"]
    credit(name)

# %% [markdown]
# En el tornillo real `unet_coarse` detecta como el autoencoder clásico; en el sintético, con la
# semilla de esta grilla, queda por debajo, aunque los intervalos de 7.1 se solapan. En los dos
# reconstruye mejor que él (menor `val/l1`): el *skip* profundo le da la disposición de la pieza
# sin darle el defecto. Medida aparte (`bench/README.md`), da 0.966 ± 0.007 en el tornillo real
# (3 semillas) y 0.864 ± 0.017 en el sintético (semillas 0, 1, 2 y 42), la misma media que el
# autoencoder clásico (0.864 ± 0.010). En el sintético es además sensible al ruido numérico: con la
# misma semilla 42 da 0.826 con un hilo de CPU (esta grilla) y 0.847 con dos, sólo porque cambia el
# orden de las sumas; el autoencoder clásico apenas se mueve (0.872 y 0.871). Por eso se compara
# con él sobre varias semillas y no con una corrida; la cápsula (0.70-0.76) sigue siendo su clase
# más débil.

# %% [markdown]
# ### 7.6 Sintético contra real, y lo que dicen estas cifras
#
# - La conclusión principal no depende del sintético: el orden entre arquitecturas es el mismo en
#   los dos conjuntos. El beneficio de SSIM en el autoencoder clásico, en cambio, sólo es claro en
#   el tornillo real (7.3).
# - El sintético es más fácil en algunas clases (defectos dibujados con contraste) y más difícil
#   en otras (las grietas finas de la cápsula); sus cifras sirven para comparar configuraciones
#   entre sí, no con la literatura.
# - En el tornillo real, el mejor autoencoder clásico queda cerca de métodos de reconstrucción
#   publicados (RIAD, unos 0.85 en *screw*; DRAEM, 0.94 tras cientos de épocas en GPU a 256 px),
#   pero en una partición propia (`screw_matched`, 41 imágenes buenas de test elegidas por su
#   brillo), a 128 px y con una sola semilla por corrida: no es una comparación en igualdad de
#   condiciones. En la partición publicada, cuyas buenas de test son más oscuras (el brillo medio
#   solo las separa con AUROC 1.000), la configuración por defecto da 0.914 ± 0.014 (3 semillas,
#   `bench/README.md`), 0.02 por debajo de `screw_matched`: no toma ese atajo.
# - Los modelos de anomalib probados en las mismas imágenes con el mismo presupuesto de CPU
#   (GANomaly 0.530, DRAEM 0.390, `bench/README.md`) quedan lejos, pero porque en ese presupuesto
#   apenas entrenan (3 épocas y 1 época): dice más del costo de esos modelos en una CPU que de su
#   calidad.

# %% [markdown]
# ## 8. Las mismas figuras en W&B
#
# Cada corrida queda en W&B (offline: en `wandb/offline-run-*`; `wandb sync --sync-all` las sube
# después de `wandb login`, y con una cuenta `WANDB_MODE=online` las escribe directamente en el
# proyecto `tarea05`). En la página del proyecto, el grupo de cada grilla reúne sus corridas;
# `analyze.py --project tarea05 --report` arma además un *Report* de W&B con los paneles de la
# corrida de análisis.
#
# | figura del notebook | clave de W&B | panel |
# |---|---|---|
# | 6.1 curvas de pérdida | `train/loss`, `val/loss`, `val/l1` (por corrida); `train/loss_and_val_loss`; `analysis/loss_curves_image/<modelo>` | gráficos de línea de cada corrida; imagen de la corrida de análisis |
# | 6.2 reconstrucciones de validación | `val/reconstructions` | imagen (con deslizador por época) |
# | 6.3 t-SNE | `val/latent_tsne`, `val/latent_tsne_table`, `val/latent_tsne_image`, `test/latent_tsne` | Plotly interactivo, tabla e imagen |
# | 6.4 reconstrucciones de test | `test/reconstructions` (16 tiras por corrida) | imágenes con leyenda |
# | 6.5 histogramas | `test/error_histograms/<clase>` (error en la pérdida), `test/score_histograms/<clase>` y `test/score_histogram_images/<clase>` (puntuación) | Plotly e imagen |
# | tabla de puntuaciones por imagen | `test/scores` | tabla de W&B |
# | 6.6 y 7 AUROC | `test/image_auroc`, `test/image_auroc/<clase>/<defecto>` (resumen); `analysis/auroc_heatmap_image` | tabla de corridas, imagen |

# %% [markdown]
# ## 9. Conclusiones

# %%
lines = []
for name, ci in CI.items():
    best = ci.sort_values("AUROC").groupby("modelo").tail(1).set_index("modelo")
    parts = [f"`{m}` con {best.loc[m, 'pérdida']}: {best.loc[m, 'AUROC']:.3f}" for m in best.index]
    lines.append(f"- **{name}**, mejor AUROC por arquitectura: {'; '.join(parts)}.")
show_md("\n".join(lines))

# %% [markdown]
# - La arquitectura decide más que la pérdida: los *skips* de la U-Net mejoran la reconstrucción
#   y destruyen la detección, porque también reconstruyen los defectos (7.2, 6.4).
# - En el autoencoder clásico, SSIM (sola o con L1) es la mejor pérdida en los dos conjuntos,
#   porque lo obliga a dibujar el detalle normal; la ventaja sobre L2 es clara en el tornillo real
#   y cabe en el ruido en el sintético (7.3). Entre SSIM y SSIM+L1 no hay diferencia medible.
# - Una U-Net con un único *skip* muy profundo (`unet_coarse`) detecta como el autoencoder clásico
#   en el tornillo real y cerca de él en el sintético, donde varía más entre semillas, y
#   reconstruye mejor que él (7.5): lo que arruina a la U-Net no son los *skips* en sí, sino los de
#   alta resolución.
# - Las cifras son de una semilla por corrida, en una CPU y a 128 px: sirven para comparar estas
#   configuraciones entre sí; la variación entre semillas medida aparte es de menos de una
#   centésima para la configuración por defecto en el tornillo real (0.935 ± 0.007).
