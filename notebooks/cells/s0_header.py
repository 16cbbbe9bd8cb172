"""Title, parameters (papermill), set-up helpers and the generated header of this execution."""

CELLS = [
    (
        "md",
        r"""
# Tarea 05 — Detección de anomalías por reconstrucción con autoencoders

Este notebook es la entrega de la tarea: cada paso se ejecuta aquí, se explica en texto y cada
imagen se obtiene de la corrida de **Weights & Biases (W&B)** que la registró, para volver a
insertarla en el notebook. El código vive en el paquete `ae_lab/` del repositorio; aquí sólo se
llama y se muestra.

**Cómo ejecutarlo.** `make notebook` (o `python -m ae_lab.notebook notebooks/tarea05.ipynb`)
ejecuta una copia con los parámetros de la celda siguiente; `-p NOMBRE VALOR` los cambia y
`--smallest` usa el tamaño mínimo de integración continua. En Jupyter basta con
«Run All». La celda siguiente a los parámetros dice qué datos y qué ajustes produjeron las
salidas guardadas.
""",
    ),
    (
        "code",
        r"""
# Parámetros (celda etiquetada parameters: papermill los reemplaza con -p NOMBRE VALOR)
DATA = "synthetic"  # "synthetic": conjunto generado con la estructura de MVTec AD; "mvtec": el real
DATA_ROOT = None  # None: carpeta del sintético según su tamaño; con "mvtec", la carpeta de MVTec AD
CATEGORIES = ["cable", "capsule", "screw", "transistor"]
N_TRAIN = 60  # sintético: imágenes de entrenamiento (buenas) por clase
N_TEST = 20  # sintético: imágenes de test por clase (1/3 buenas, el resto repartido por defecto)
SOURCE_SIZE = 256  # sintético: lado de los archivos generados (MVTec AD: 700 a 1024 px)
IMAGE_SIZE = 128  # lado de la imagen de entrada de la red (128 x 128 x 3)
EPOCHS = 5  # épocas de cada una de las 8 corridas
BATCH_SIZE = 16
SWEEP = "sweeps/demo.yaml"  # grilla arquitectura x pérdida de make demo (8 corridas)
EXTRA_OVERRIDES = []  # overrides de Hydra extra para todas las corridas (p. ej. una red más chica)
JOBS = 2  # corridas en paralelo
PROJECT = "tarea05"
WANDB_MODE = "offline"  # "offline": carpetas locales; "online": servidor de W&B (requiere login)
WANDB_DIR = (
    None  # None: $WANDB_DIR o la raíz del repositorio; las corridas quedan en WANDB_DIR/wandb
)
RUN_GRID = True  # False: no entrena, reutiliza las corridas existentes del grupo GROUP
GROUP = None  # grupo de W&B; None: uno nuevo con fecha y hora (obligatorio si no se entrena)
""",
    ),
    (
        "code",
        r"""
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ae_lab.cli import hydra_value
from ae_lab.errors import AeLabError
from ae_lab.nb_display import show_array, show_figure, show_image_file, show_md, show_table

START = time.time()
warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents] if (p / "train.py").is_file())
os.chdir(ROOT)  # the configs, sweeps and relative paths are the repository's
WANDB_DIR = Path(WANDB_DIR or os.environ.get("WANDB_DIR") or ROOT).resolve()
os.environ |= {"WANDB_DIR": str(WANDB_DIR), "WANDB_MODE": WANDB_MODE, "WANDB_SILENT": "true"}
CACHE = Path(os.environ.get("AE_LAB_CACHE", ".cache/ae_lab")).resolve()
if DATA == "synthetic" and DATA_ROOT is None:
    # One folder per generator setting: another size never overwrites these images.
    DATA_ROOT = CACHE / f"synthetic_nb_{'-'.join(CATEGORIES)}_n{N_TRAIN}-{N_TEST}_{SOURCE_SIZE}px"
if DATA_ROOT is None:
    raise AeLabError('DATA = "mvtec" needs DATA_ROOT: the folder holding cable/, screw/, ...')
DATA_ROOT = Path(DATA_ROOT).resolve()
if GROUP is None and not RUN_GRID:
    raise AeLabError("RUN_GRID = False reuses the runs of a W&B group: set GROUP to its name.")
GROUP = GROUP or f"nb-{DATA}-{time.strftime('%Y%m%d-%H%M%S')}"

# Hydra overrides shared by every run of the grid (the swept `model` and `loss` excepted).
OVERRIDES = [
    f"data={DATA}",
    f"data.root={hydra_value(str(DATA_ROOT))}",
    f"data.categories={hydra_value(list(CATEGORIES))}",
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
OVERRIDES += list(EXTRA_OVERRIDES)


def compose_config(*extra: str):
    # The same composition train.py does (conf/config.yaml + overrides), without running it.
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*OVERRIDES, *extra])


CFG = compose_config("model=ae", "loss=l2")
""",
    ),
    (
        "code",
        r"""
data_text = (
    f"sintético generado en `{DATA_ROOT.name}` ({N_TRAIN} de entrenamiento y {N_TEST} de test "
    f"por clase, archivos de {SOURCE_SIZE} px)"
    if DATA == "synthetic"
    else f"MVTec AD en `{DATA_ROOT}`"
)
gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "sin GPU"
extra = ", ".join(f"`{o}`" for o in EXTRA_OVERRIDES)
trained = "entrenadas en esta ejecución" if RUN_GRID else "reutilizadas, no reentrenadas"
show_md(
    f"**Esta ejecución** ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} núcleos de CPU, "
    f"{gpu}): datos {data_text}; clases {', '.join(CATEGORIES)}; entrada "
    f"{IMAGE_SIZE}x{IMAGE_SIZE}x3; {EPOCHS} época{'s' if EPOCHS != 1 else ''} por corrida con lotes de {BATCH_SIZE}; "
    f"grilla `{SWEEP}`" + (f"; overrides extra {extra}" if extra else "") + f"; W&B {WANDB_MODE}, "
    f"proyecto `{PROJECT}`, grupo `{GROUP}` (corridas {trained}). Todas las cifras y figuras de "
    "abajo salen de estas corridas."
)
""",
    ),
]
