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
# Esta es la entrega de la tarea. Cada paso se ejecuta aquí y se explica en texto; cada figura
# es el archivo que registró una corrida de **Weights & Biases (W&B)**, leído de vuelta de la
# carpeta de esa corrida e insertado en el notebook. El código vive en el paquete `ae_lab/` del
# repositorio; las celdas sólo lo llaman.
#
# **Cómo ejecutarlo.** `make notebook` (o `python -m ae_lab.report.notebook notebooks/tarea05.ipynb`)
# ejecuta una copia con los parámetros de la celda siguiente; `-p NOMBRE VALOR` los cambia y
# `--smallest` usa el tamaño mínimo de la integración continua (CI). La fuente del notebook es
# `notebooks/tarea05.py` (jupytext, formato *percent*), emparejada con `tarea05.ipynb`.
#
# **Afirmaciones comprobadas.** Cada frase del análisis que depende de los resultados va seguida
# de una celda con `assert`: si los números no la sostienen, la ejecución falla en vez de
# entregar una frase falsa. Las que sólo valen con el entrenamiento completo de la entrega
# (`COMPLETO`, abajo) están escritas como condicionales y sólo se comprueban a ese tamaño.

# %% tags=["parameters"]
# Parámetros (celda etiquetada parameters: papermill los reemplaza con -p NOMBRE VALOR)
DATA = "synthetic"  # "synthetic": conjunto con la estructura de MVTec AD; "mvtec": el real
DATA_ROOT = None  # None: carpeta del sintético según su tamaño; con "mvtec", la de MVTec AD
CATEGORIES = ["cable", "capsule", "screw", "transistor"]
N_TRAIN = 60  # sintético: imágenes de entrenamiento (buenas) por clase
N_TEST = 200  # sintético: imágenes de test por clase (1/3 buenas, el resto por defecto)
SOURCE_SIZE = 128  # sintético: lado de los archivos generados
IMAGE_SIZE = 128  # lado de la entrada de la red (128 x 128 x 3)
EPOCHS = 30  # épocas de cada una de las 8 corridas
BATCH_SIZE = 16
SWEEP = "sweeps/demo.yaml"  # grilla arquitectura x pérdida (8 corridas)
EXTRA_OVERRIDES = []  # overrides de Hydra para todas las corridas
JOBS = 2  # corridas en paralelo
PROJECT = "tarea05"
WANDB_MODE = "offline"  # "offline": carpetas locales; "online": servidor de W&B
WANDB_DIR = None  # None: $WANDB_DIR o la raíz del repositorio
RUN_GRID = True  # False: reutiliza las corridas del grupo GROUP
GROUP = None  # grupo de W&B; None: uno nuevo; obligatorio cuando no se entrena

# %%
import os

import hydra
import pandas as pd
import torch

from ae_lab import keys
from ae_lab.report import handin
from ae_lab.report.display import show_array, show_image_file, show_md, show_table

S = handin.setup(globals())
CFG = S.compose("model=ae", "loss=l2")
COMPLETO = EPOCHS >= 10 and (DATA == "mvtec" or N_TEST >= 50)  # el tamaño de la entrega
show_table(handin.versions(), title="Versiones")
device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
show_md(
    f"Datos `{DATA}` en `{S.data_root.name}`; {EPOCHS} épocas por corrida; dispositivo {device} "
    f"({os.cpu_count()} núcleos); W&B {WANDB_MODE}, proyecto `{PROJECT}`, grupo `{S.group}`; "
    f"tamaño completo de la entrega: {'sí' if COMPLETO else 'no (ejecución corta de prueba)'}."
)

# %% [markdown]
# ## 1. Objetivo
#
# Un autoencoder aprende a reconstruir sólo imágenes *buenas*; ante una imagen con un defecto
# debería fallar justo en el defecto, y ese error de reconstrucción es la puntuación de anomalía.
# Se comparan dos arquitecturas y cuatro funciones de pérdida en una grilla de 2 x 4 = 8 corridas,
# con todo lo demás fijo:
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
# **Cómo se mide.** Cada imagen de test da un mapa de error por píxel (suavizado) y una
# puntuación: la media de los píxeles con más error (`conf/scoring/default.yaml`). El **AUROC
# por imagen** dice cuán bien esa puntuación separa buenas de defectuosas (0.5 = azar, 1 =
# perfecto); se calcula por clase y se promedia (`test/image_auroc`, la convención de MVTec AD).
# Los errores de validación `val/l1`, `val/l2` y `val/one_minus_ssim` (1 − SSIM) se calculan igual
# en todas las corridas, sea cual sea su pérdida: miden cuán bien *reconstruye* cada modelo.

# %% [markdown]
# ## 2. Datos
#
# MVTec AD tiene, por clase, imágenes de entrenamiento sólo buenas (`train/good`) e imágenes de
# test buenas y con defectos (`test/<defecto>`), cada defecto con su máscara
# (`ground_truth/<defecto>/<n>_mask.png`). Sin el conjunto real (unos 5 GB) el repositorio genera
# un sustituto sintético con la misma estructura de carpetas y los mismos nombres de defecto, así
# que el código es el mismo para ambos. El *data module* se instancia desde la misma
# configuración de Hydra que usan las corridas; de `train` se separa un 10 % por clase para
# validación.

# %%
dm = hydra.utils.instantiate(CFG.data)
TABLE = handin.image_table(dm)
show_table(handin.counts(TABLE), title=f"Imágenes por clase y partición ({len(TABLE)} en total)")
show_table(handin.defect_counts(TABLE), title="Imágenes de test por tipo de defecto")

# %% [markdown]
# Muestras de entrenamiento (buenas), ya preprocesadas; una fila por clase, en el orden de
# `CATEGORIES`:

# %%
show_array(handin.train_samples(TABLE, CATEGORIES, IMAGE_SIZE))

# %% [markdown]
# Un ejemplo de cada tipo de defecto: la imagen de test y, a su derecha, la misma con la máscara
# pintada en rojo.

# %%
pairs, order = handin.defect_examples(TABLE, IMAGE_SIZE)
show_array(pairs)
show_table(order, title="Orden de los pares (de izquierda a derecha y de arriba abajo)")

# %% [markdown]
# **Preprocesamiento.** Cada archivo se lee con Pillow y se lleva a RGB de 8 bits (las imágenes en
# escala de grises, como `screw`, se replican en tres canales), se redimensiona a `IMAGE_SIZE` x
# `IMAGE_SIZE` con interpolación bilineal antialiasada y se escala a [0, 1] como tensor `float32
# [3, H, W]`; las máscaras se redimensionan con vecino más cercano para seguir siendo binarias.

# %% [markdown]
# **Alineación.** En el sintético cada objeto aparece con un pequeño desplazamiento y giro, y el
# tornillo a cualquier ángulo (en MVTec AD real, también). Un objeto girado no es un defecto, y un
# autoencoder que debe codificar la pose la gasta en `z` y pierde el detalle fino: sin alinear,
# sus reconstrucciones borran las patas del transistor y la impresión de la cápsula, y con ellas
# los defectos finos de esas zonas (medido en `bench/README.md`, sección *Detection quality*).
# Antes de entrenar y de puntuar (`ae_lab/data/pose.py`, con los momentos de la imagen), las
# clases de `data.align`, objetos que yacen a cualquier ángulo como el tornillo, se ponen de pie
# (eje principal vertical, extremo más pesado arriba) y se centran; las de `data.straighten`,
# objetos fotografiados en una pose fija con un pequeño desvío (cápsula y transistor en el
# sintético), se centran y se enderezan con el menor giro posible, sin voltearlas. Las máscaras se
# transforman igual. El círculo del cable no tiene eje principal y se deja como está. Así las ve
# la red:

# %%
show_md(f"`data.align = {list(CFG.data.align)}`, `data.straighten = {list(CFG.data.straighten)}`")
show_array(handin.network_inputs(dm, CATEGORIES))

# %%
batch = next(iter(dm.train_dataloader()))["image"]
show_md(f"Un lote de entrenamiento: `{batch.dtype}` {tuple(batch.shape)}, valores en [0, 1].")
assert batch.dtype == torch.float32 and batch.min() >= 0 and batch.max() <= 1

# %% [markdown]
# ## 3. Configuración (Hydra)
#
# Todo lo que distingue a una corrida está en `conf/`: `config.yaml` compone un archivo por grupo
# (`data`, `model`, `loss`, `trainer`, `logger`, `scoring`) y cada archivo es YAML plano con un
# `_target_`, la clase que Hydra instancia. Cambiar de modelo o de pérdida es elegir otra opción
# del grupo (`model=unet loss=ssim`).

# %%
show_table(handin.config_groups(S.root), title="Grupos y opciones de `conf/`")

# %% [markdown]
# La configuración compuesta de una corrida (`model=ae loss=l2` más los overrides de esta
# ejecución): la misma que recibe `train.py` y que queda en la configuración de la corrida en W&B.

# %%
show_md("```yaml\n" + handin.config_yaml(CFG) + "```")

# %% [markdown]
# **Tres maneras de correr la grilla**, el mismo archivo de barrido (`method: grid`, parámetros
# que son rutas de Hydra) o la misma lista de valores:
#
# 1. **Barrido de W&B + agente** (online; un agente por máquina o GPU):
#    ```bash
#    wandb sweep sweeps/grid.yaml                 # imprime ENTIDAD/tarea05/ID
#    wandb agent ENTIDAD/tarea05/ID
#    ```
# 2. **Multirun de Hydra** (sin servidor; el launcher joblib corre varias a la vez):
#    ```bash
#    python train.py -m hydra/launcher=joblib model=ae,unet loss=l1,l2,ssim,ssim_l1
#    ```
# 3. **El ejecutor offline del repositorio**, que valida cada punto del archivo de barrido y lo
#    traduce a un multirun de Hydra (es el que usa este notebook):
#    ```bash
#    python -m ae_lab.sweep sweeps/demo.yaml --jobs 2
#    ```

# %%
show_table(handin.grid_points(S, SWEEP), title=f"Las corridas de `{SWEEP}` en esta ejecución")

# %% [markdown]
# ## 4. Modelos y LightningModule
#
# Ambas redes comparten codificador y decodificador (`ae_lab/models/blocks.py`): convoluciones de
# paso 2 que reducen la resolución a la mitad, una capa lineal hasta el vector latente `z`, y el
# camino inverso hasta una salida sigmoide en [0, 1]. La U-Net agrega *skips*: en cada nivel el
# decodificador recibe el mapa del codificador de la misma resolución.

# %%
NETS = {m: hydra.utils.instantiate(S.compose(f"model={m}").model.net) for m in ("ae", "unet")}
show_table(handin.network_table(NETS, IMAGE_SIZE), title="Las dos redes")

# %% [markdown]
# El `LightningModule` (`ae_lab/module.py`) recibe la red, la pérdida y el optimizador ya
# instanciados por Hydra. Sus partes clave: el paso de entrenamiento, la validación con los tres
# errores comunes a todas las corridas y el paso de test que produce, una sola vez, las
# predicciones que luego leen las métricas y los callbacks de W&B.

# %%
from ae_lab.module import AutoencoderModule

for method in ("training_step", "validation_step", "test_step"):
    show_md(handin.source(getattr(AutoencoderModule, method)))

# %% [markdown]
# **Por qué importan los *skips*.** En el autoencoder clásico todo pasa por `z`, un cuello de
# botella que sólo alcanza para lo que se repite en las imágenes buenas; un defecto no cabe en esa
# descripción, la reconstrucción lo «repara» y el error se concentra en él. Los *skips* de la
# U-Net llevan al decodificador el detalle de alta resolución sin pasar por `z`: la red puede
# copiar la entrada, defecto incluido. Se espera que reconstruya mejor y detecte peor; la
# sección 7 lo pone a prueba.

# %% [markdown]
# ## 5. Entrenamiento
#
# Cada corrida es un `train.py`: entrena con imágenes buenas, valida cada época, guarda el mejor
# *checkpoint* por `val/loss`, lo evalúa en test y registra en W&B las curvas, las
# reconstrucciones, el t-SNE de los latentes, la tabla de puntuaciones por imagen, los histogramas
# y los AUROC (las métricas de test van al resumen de la corrida).

# %%
if RUN_GRID:
    minutes = handin.run_grid(S, SWEEP, JOBS)
    show_md(f"Grilla completa en **{minutes:.1f} min**, grupo de W&B `{S.group}`.")
else:
    show_md(f"`RUN_GRID = False`: se reutilizan las corridas del grupo `{S.group}`.")

# %% [markdown]
# ## 6. Resultados desde W&B
#
# Todo lo que sigue se lee de las corridas de W&B del grupo (las carpetas offline o la API).
# `run_analysis` es lo mismo que `analyze.py`: arma las tablas, escribe el informe HTML y registra
# una corrida de análisis en W&B con las figuras que comparan corridas; las figuras de abajo son
# los archivos que esas corridas registraron.

# %%
from ae_lab.analysis.run import run_analysis
from ae_lab.report import results

OUT = run_analysis(
    PROJECT, group=S.group, offline_dir=None if S.online else S.wandb_dir / "wandb",
    out_dir=S.root / "reports" / PROJECT,
)  # fmt: skip
RUNS, SCORES, A = OUT.data.runs.set_index("label", drop=False), OUT.data.scores, OUT.analysis
MEDIA = results.media_runs(dict(RUNS["run_id"]), S.wandb_dir, PROJECT, S.online)
AN = results.media_runs({"análisis": OUT.logged.run_id}, S.wandb_dir, PROJECT, S.online)["análisis"]
MODELS, LOSSES = sorted(RUNS["model"].unique()), sorted(RUNS["loss"].unique())
show_md(f"**{len(RUNS)} corridas** leídas de {OUT.data.source}; informe en `{OUT.index_html}`.")
assert len(RUNS) == len(MODELS) * len(LOSSES), "la grilla está incompleta"
assert not A.mismatches, A.mismatches  # los AUROC recalculados coinciden con los registrados

# %% [markdown]
# ### 6.1 Curvas de pérdida
#
# Una figura por arquitectura con sus cuatro pérdidas: a la izquierda `train/loss` (continua) y
# `val/loss` (discontinua), cada una en la escala de su propia función (eje logarítmico: L2 es
# mucho menor que 1 − SSIM); a la derecha `val/l1`, el mismo error para todas, donde sí se
# comparan.

# %%
for m in MODELS:
    show_image_file(results.media_file(AN, f"analysis/loss_curves_image/{m}"))

# %% [markdown]
# ### 6.2 Reconstrucciones de validación
#
# Las mismas 16 imágenes de validación en todas las corridas; filas 1 y 3 originales, filas 2 y 4
# sus reconstrucciones, al final del entrenamiento.

# %%
for label in RUNS.index:
    show_md(f"**{label}**")
    show_image_file(results.media_file(MEDIA[label], keys.VAL_RECONSTRUCTIONS))

# %% [markdown]
# ### 6.3 t-SNE de los latentes de validación
#
# El t-SNE 2-D de los vectores `z` de **todas** las imágenes de validación, un color por clase,
# tal como lo registró cada corrida (`val/latent_tsne_image`).

# %%
for label in RUNS.index:
    show_image_file(results.media_file(MEDIA[label], keys.VAL_LATENT_TSNE_IMAGE))

# %% [markdown]
# ### 6.4 Histogramas de la puntuación por tipo de defecto
#
# Por clase, un panel por tipo de defecto: la puntuación de las imágenes con ese defecto (rojo)
# contra la de las buenas (gris), como fracción de cada grupo; el título da el AUROC del defecto.
# Se muestran los de la mejor corrida de cada arquitectura.

# %%
BEST = RUNS.sort_values(keys.TEST_IMAGE_AUROC).groupby("model").tail(1)["label"]
for label in BEST:
    show_md(f"**{label}**")
    for cat in CATEGORIES:
        show_image_file(
            results.media_file(MEDIA[label], f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{cat}")
        )

# %% [markdown]
# ### 6.5 AUROC por clase y defecto
#
# El mapa de calor usa una escala fija de 0 a 1 (0.5 = azar, amarillo): un defecto en rojo es uno
# en que las imágenes defectuosas puntúan *por debajo* de las buenas.

# %%
show_image_file(results.media_file(AN, "analysis/auroc_heatmap_image"))

# %% [markdown]
# ## 7. Análisis
#
# ### 7.1 Incertidumbre antes de ordenar
#
# Con pocas decenas de imágenes de test por clase, un AUROC tiene un error de muestreo de algunas
# centésimas. La tabla da, por corrida, el AUROC medio de las clases con su intervalo de
# *bootstrap* al 95 % (se remuestrean las imágenes de test dentro de cada clase). Dos corridas
# cuyos intervalos se solapan no se ordenan: su diferencia está dentro del ruido.

# %%
CI = results.interval_table(RUNS, SCORES)
show_table(CI, digits=3, title="AUROC (media de clases) e intervalo de bootstrap al 95 %")
assert ((CI["IC95 inf."] <= CI["AUROC"]) & (CI["AUROC"] <= CI["IC95 sup."])).all()

# %% [markdown]
# **Qué significan estas cifras.** Con el entrenamiento completo de la entrega sobre el
# sintético, el mejor autoencoder clásico pasa de 0.85 de AUROC medio: detecta de verdad los
# defectos dibujados, no por azar. Junto a las cifras publicadas, en cambio, no dicen mucho: son
# autoencoders simples entrenados minutos en una CPU, sin pesos preentrenados, sobre defectos que
# nosotros mismos generamos; los métodos de reconstrucción que publican 0.85-0.98 en MVTec AD real
# (RIAD, DRAEM) entrenan cientos de épocas en GPU a 256 px. En el tornillo real de MVTec AD
# (`bench/README.md`) el autoencoder clásico con L2 llega a 0.77 y con SSIM a 0.86 de media, con
# mucha varianza entre semillas (0.82-0.92): cerca de lo publicado sólo en sus mejores corridas.

# %%
best_ae = CI[CI["modelo"] == "ae"]["AUROC"].max()
show_md(f"Mejor AUROC del autoencoder clásico en esta ejecución: **{best_ae:.3f}**.")
if COMPLETO and DATA == "synthetic":
    assert best_ae >= 0.85

# %% [markdown]
# ### 7.2 Autoencoder clásico contra U-Net
#
# Se comparan las arquitecturas a igual pérdida, en reconstrucción (`val/l1`, menor es mejor) y
# en detección (AUROC). Con el entrenamiento completo de la entrega, la U-Net **reconstruye mejor
# que el autoencoder clásico con las cuatro pérdidas** — los *skips* le dan el detalle que el
# cuello de botella le quita al clásico — y **aun así detecta peor: su AUROC medio sobre las
# cuatro pérdidas es menor**. Reconstruir bien no basta; hay que reconstruir mal lo anómalo.

# %%
REC = results.reconstruction_table(RUNS, A.run_table)
show_table(REC, digits=4, title="Reconstrucción (validación) y detección (test), por corrida")
by_arch = REC.pivot(index="pérdida", columns="modelo", values=["val/l1", "AUROC"])
if COMPLETO:
    assert (by_arch[("val/l1", "unet")] < by_arch[("val/l1", "ae")]).all()
    assert by_arch[("AUROC", "unet")].mean() < by_arch[("AUROC", "ae")].mean()

# %% [markdown]
# Estas dos afirmaciones comparan arquitecturas, no pérdidas: juntar las ocho corridas en una sola
# correlación entre `val/l1` y AUROC mediría sólo esta diferencia entre arquitecturas. Dentro de
# cada arquitectura hay cuatro puntos, muy pocos para una correlación, así que no se calcula.
#
# ### 7.3 Una pérdida contra otra
#
# Una pérdida sólo se declara mejor que otra si sus intervalos (7.1) no se solapan; la tabla
# siguiente lista, por arquitectura, los pares de pérdidas cuya diferencia sale del ruido (si está
# vacía, ninguna pérdida gana con claridad). Con el entrenamiento completo, además, **la pérdida
# pesa menos que la arquitectura**: en cada arquitectura, el rango de AUROC entre sus cuatro
# pérdidas es menor que la distancia entre los AUROC medios de las dos arquitecturas.

# %%
pairs = [
    (m, a["pérdida"], b["pérdida"], a["AUROC"] - b["AUROC"])
    for m, sub in CI.groupby("modelo")
    for i, a in sub.iterrows()
    for j, b in sub.iterrows()
    if i < j and not results.overlapping(a, b)
]
show_table(
    pd.DataFrame(pairs, columns=["modelo", "pérdida A", "pérdida B", "AUROC A − B"]),
    title="Pares de pérdidas con intervalos separados",
)
spread = CI.groupby("modelo")["AUROC"].agg(lambda s: s.max() - s.min())
gap = abs(by_arch[("AUROC", "unet")].mean() - by_arch[("AUROC", "ae")].mean())
show_table(spread.rename("rango entre pérdidas").reset_index().assign(**{"distancia ae–unet": gap}))
if COMPLETO:
    assert (spread < gap).all()

# %% [markdown]
# ### 7.4 Por tipo de defecto
#
# La tabla da, por defecto, el mejor AUROC de cada arquitectura entre sus cuatro pérdidas. Con el
# entrenamiento completo **hay defectos en que hasta la mejor U-Net queda por debajo de 0.5**: las
# imágenes con ese defecto puntúan *menos* que las buenas, porque la U-Net las reconstruye incluso
# mejor. En el peor de ellos el autoencoder clásico sí separa (AUROC sobre 0.5). Debajo, el
# histograma de la clase de ese defecto en la mejor U-Net y sus reconstrucciones de test.

# %%
DEF = results.defect_table(A.auroc_table, RUNS)
show_table(DEF, digits=3, title="Mejor AUROC por defecto y arquitectura")
worst = DEF.loc[DEF["mejor unet"].idxmin()]
show_md(f"Peor defecto para la U-Net: **{worst['clase']} / {worst['defecto']}**.")
if COMPLETO:
    assert worst["mejor unet"] < 0.5 < worst["mejor ae"]
unet_best = BEST[BEST.str.startswith("unet")].iloc[0]
key = f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{worst['clase']}"
show_image_file(results.media_file(MEDIA[unet_best], key))

# %% [markdown]
# Reconstrucciones de test de la mejor U-Net (`test/reconstructions`): por tira, la imagen, su
# reconstrucción, el mapa de error (escala común a todas las tiras: oscuro = normal) y la máscara
# real. La leyenda de cada tira dice su clase, su defecto y su puntuación.

# %%
for path, caption in zip(*results.test_strips(MEDIA[unet_best]), strict=True):
    show_image_file(path, caption.split(" — ")[0])

# %% [markdown]
# ## 8. Conclusiones
#
# - Con el entrenamiento completo, la arquitectura decide más que la pérdida (7.2, 7.3): los
#   *skips* de la U-Net mejoran la reconstrucción y empeoran la detección, porque también
#   reconstruyen los defectos (7.4).
# - Entre pérdidas, sólo los pares de la tabla de 7.3 difieren fuera del ruido; el resto de las
#   diferencias de AUROC no permite ordenarlas.
# - Todas las cifras vienen de las corridas de W&B de este grupo; las afirmaciones de arriba se
#   comprueban con `assert` en cada ejecución de tamaño completo.
