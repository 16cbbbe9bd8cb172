"""Section 2: the data table, counts, defect types, samples, preprocessing."""

CELLS = [
    (
        "md",
        r"""
## 2. Datos

MVTec AD tiene, por clase, imágenes de entrenamiento sólo buenas (`train/good`) e imágenes de
test buenas y con defectos (`test/<defecto>`), cada defecto con su máscara de verdad de terreno
(`ground_truth/<defecto>/<n>_mask.png`). Aquí se usan cuatro clases: `cable`, `capsule`, `screw` y
`transistor`. Sin el conjunto real (unos 5 GB), el repositorio genera un sustituto sintético con
**exactamente la misma estructura de carpetas**, los mismos nombres de defecto y variaciones
naturales (posición, iluminación, ruido), de modo que todo el código es el mismo para ambos.

El *data module* usa la misma configuración que las corridas (`CFG.data`, compuesta con Hydra) y
recorre la carpeta con `scan_mvtec`: una fila por imagen con su ruta, clase, partición, tipo de
defecto, etiqueta y máscara. De `train` se separa un 10 % por clase para validación.
""",
    ),
    (
        "code",
        r"""
import hydra.utils

from ae_lab.data.io import load_image, load_mask

dm = hydra.utils.instantiate(CFG.data)
dm.prepare_data()  # generates the synthetic set if missing and caches the decoded images
table = pd.concat([dm.table(split) for split in ("train", "val", "test")], ignore_index=True)
table["split"] = pd.Categorical(table["split"], ["train", "val", "test"])
counts = table.assign(kind=np.where(table["label"] == 1, "defectuosas", "buenas")).pivot_table(
    index="category",
    columns=["split", "kind"],
    values="path",
    aggfunc="count",
    fill_value=0,
    observed=True,
)
counts.columns = [f"{split} {kind}" for split, kind in counts.columns]
show_table(counts, title=f"Imágenes por clase y partición ({len(table)} en total)")
""",
    ),
    (
        "code",
        r"""
test = table[table["split"] == "test"]
defects = (
    test[test["label"] == 1]
    .groupby(["category", "defect"])
    .agg(imagenes=("path", "size"), con_mascara=("mask_path", "count"))
    .reset_index()
)
per_class = defects.groupby("category")["defect"].apply(lambda d: ", ".join(d))
show_table(
    per_class.rename("tipos de defecto").reset_index(),
    title=f"{len(defects)} tipos de defecto en {defects['category'].nunique()} clases",
)
show_table(defects, title="Imágenes de test por tipo de defecto (y cuántas tienen máscara)")
""",
    ),
    (
        "md",
        r"""
Muestras de entrenamiento (buenas) de cada clase, ya preprocesadas al tamaño de entrada de la red:
""",
    ),
    (
        "code",
        r"""
from ae_lab.visualize import image_grid

SAMPLES = 6
train = table[table["split"] == "train"]
rows = [
    np.stack([load_image(p, IMAGE_SIZE) for p in train[train["category"] == c]["path"][:SAMPLES]])
    for c in CATEGORIES
]
show_array(image_grid(np.concatenate(rows), ncol=SAMPLES))
show_md("Filas, de arriba abajo: " + ", ".join(f"`{c}`" for c in CATEGORIES) + ".")
""",
    ),
    (
        "md",
        r"""
Un ejemplo de cada tipo de defecto con su máscara: a la izquierda la imagen de test, a la derecha
la misma imagen con la máscara de verdad de terreno pintada en rojo.
""",
    ),
    (
        "code",
        r"""
def with_mask(path: str, mask_path: str | None) -> np.ndarray:
    image = load_image(path, IMAGE_SIZE)
    mask = load_mask(mask_path, IMAGE_SIZE)
    tinted = image.copy()
    tinted[mask] = (0.35 * tinted[mask] + 0.65 * np.array([255, 0, 0])).astype(np.uint8)
    return np.stack([image, tinted])


first = test[test["label"] == 1].groupby(["category", "defect"]).head(1)
pairs = np.concatenate([with_mask(r.path, r.mask_path) for r in first.itertuples()])
show_array(image_grid(pairs, ncol=8))
show_table(
    first[["category", "defect"]].reset_index(drop=True).rename_axis("par").reset_index(),
    title="Orden de los pares (de izquierda a derecha y de arriba abajo)",
)
""",
    ),
    (
        "md",
        r"""
**Preprocesamiento a 128 x 128 x 3.** Cada archivo se lee con Pillow y se lleva a RGB de 8 bits
(las imágenes en escala de grises, como `screw`, se replican en los tres canales; RGBA pierde el
canal alfa), se redimensiona a `IMAGE_SIZE` x `IMAGE_SIZE` con interpolación bilineal
antialiasada y se escala a [0, 1] como tensor `float32 [3, H, W]`. Las máscaras se binarizan y se
redimensionan con vecino más cercano para que sigan siendo binarias. Antes y después, sobre una
imagen de `screw`:
""",
    ),
    (
        "code",
        r"""
from PIL import Image as PILImage

screw_cls = "screw" if "screw" in CATEGORIES else CATEGORIES[0]
path = train[train["category"] == screw_cls]["path"].iloc[0]
with PILImage.open(path) as raw:
    before = np.asarray(raw.convert("L") if raw.mode.startswith("I") else raw)
    raw_mode, raw_size = raw.mode, raw.size
after = load_image(path, IMAGE_SIZE)
batch = dm.dataset("train")[0]["image"]
show_md(
    f"Archivo `{Path(path).relative_to(DATA_ROOT)}`: modo Pillow **{raw_mode}**, {raw_size[0]} x "
    f"{raw_size[1]} px, arreglo {before.dtype} {tuple(before.shape)}. Después: {after.dtype} "
    f"{tuple(after.shape)}; en un lote, `{batch.dtype}` {tuple(batch.shape)} con valores en "
    f"[{batch.min():.2f}, {batch.max():.2f}]."
)
show_array(before)
show_array(after)
""",
    ),
]
