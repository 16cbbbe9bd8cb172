"""Section 6: every result read back from the W&B runs (offline folders or the API)."""

CELLS = [
    (
        "md",
        r"""
## 6. Resultados desde W&B

Nada de lo que sigue viene de la memoria del proceso que entrenó: todo se lee de las corridas de
W&B del grupo. Offline, `ae_lab.analysis` lee cada carpeta `wandb/offline-run-*` con el lector
propio de W&B (`wandb leet inspect`); online, usa la API. De ahí salen tres tablas (corridas con
su resumen, historia por época y puntuaciones por imagen de test) y, para cada imagen o figura,
el archivo que la corrida registró: su ruta está en el resumen de la corrida
(`<clave>.path`, o `<clave>.filenames` para listas de imágenes), bajo `files/media/`.
""",
    ),
    (
        "code",
        r"""
from ae_lab import keys
from ae_lab.analysis import analyse, load_runs
from ae_lab.analysis.tables import ALL
from ae_lab.wandb_media import (
    load_plotly,
    load_table,
    media_captions,
    media_files,
    media_names,
    open_api_run,
    open_offline_run,
)

OFFLINE = WANDB_MODE != "online"
data = load_runs(PROJECT, group=GROUP, offline_dir=WANDB_DIR / "wandb" if OFFLINE else None)
analysis = analyse(data)
runs = data.runs.set_index("label", drop=False)
if OFFLINE:
    MEDIA = {r: open_offline_run(WANDB_DIR / "wandb", runs.at[r, "run_id"]) for r in runs.index}
else:
    import wandb

    entity = wandb.Api().default_entity
    MEDIA = {
        r: open_api_run(
            f"{entity}/{PROJECT}/{runs.at[r, 'run_id']}", ROOT / "reports/notebook/media"
        )
        for r in runs.index
    }
MODELS = sorted(runs["model"].unique())
LOSSES = [loss for loss in ("l1", "l2", "ssim", "ssim_l1") if loss in set(runs["loss"])]
AUROC = runs[keys.TEST_IMAGE_AUROC]
BEST = {m: AUROC[runs["model"] == m].idxmax() for m in MODELS}  # best run per architecture
show_md(
    f"Fuente: {data.source}; **{len(runs)} corridas** del grupo `{GROUP}`"
    + (f"; omitidas: {len(data.skipped)}" if data.skipped else "")
    + "."
)
show_table(
    runs[["model", "loss", "run_id", keys.TEST_IMAGE_AUROC]].reset_index(drop=True),
    title="Corridas (AUROC por imagen de todo el test)",
)
""",
    ),
    (
        "md",
        r"""
### 6.1 Curvas de pérdida

Las cuatro corridas de cada arquitectura. `train/loss` y `val/loss` están en la escala de *su*
pérdida (L2 es mucho menor que 1 − SSIM), así que entre pérdidas sólo se comparan los paneles
`val/l1` y `val/ssim`, que se calculan igual en todas las corridas.
""",
    ),
    (
        "code",
        r"""
for model in MODELS:
    show_figure(analysis.figures[f"analysis/loss_curves/{model}"])
rt = analysis.run_table.set_index("label")
curve_cols = [
    "final_train_loss",
    "final_val_loss",
    "best_val_loss_epoch",
    f"final_{keys.VAL_L1}",
    f"final_{keys.VAL_L2}",
    f"final_{keys.VAL_SSIM}",
]
show_table(
    rt[["model", "loss", *curve_cols]].reset_index(),
    digits=4,
    title="Última época de cada corrida (la tabla detrás de las curvas)",
)
""",
    ),
    (
        "md",
        r"""
### 6.2 Reconstrucciones de validación

Las mismas 16 imágenes de validación (fijas, repartidas entre las clases) en todas las corridas:
filas 1 y 3 originales, filas 2 y 4 sus reconstrucciones, al final del entrenamiento. Cada imagen
es el archivo `val/reconstructions` de la corrida.
""",
    ),
    (
        "code",
        r"""
for label in runs.index:
    path = media_files(MEDIA[label], keys.VAL_RECONSTRUCTIONS)[0]
    caption = media_captions(MEDIA[label], keys.VAL_RECONSTRUCTIONS)[0]
    show_md(f"**{label}** — `{os.path.relpath(path, WANDB_DIR)}`")
    show_image_file(path, caption)
""",
    ),
    (
        "md",
        r"""
### 6.3 t-SNE de los latentes de validación

Cada corrida registró el t-SNE 2-D de los vectores `z` de validación como figura de Plotly y como
tabla (`val/latent_tsne_table`). Aquí se juntan las tablas de las ocho corridas (un color por
clase) y se resume cuán agrupadas quedan las clases con el coeficiente de silueta (1: grupos
compactos y separados; 0: mezclados).
""",
    ),
    (
        "code",
        r"""
from plotly.colors import qualitative
from plotly.subplots import make_subplots
from sklearn.metrics import silhouette_score

colour = {c: qualitative.Plotly[i % 10] for i, c in enumerate(CATEGORIES)}
fig = make_subplots(
    rows=len(MODELS),
    cols=len(LOSSES),
    subplot_titles=[f"{m} / {loss}" for m in MODELS for loss in LOSSES],
)
silhouette = {}
for label, run in runs.iterrows():
    tsne = load_table(media_files(MEDIA[label], keys.VAL_LATENT_TSNE_TABLE)[0])
    row, col = MODELS.index(run["model"]) + 1, LOSSES.index(run["loss"]) + 1
    for cat, part in tsne.groupby("category"):
        fig.add_trace(
            go.Scatter(
                x=part["x"],
                y=part["y"],
                mode="markers",
                name=cat,
                marker={"color": colour.get(cat), "size": 6},
                legendgroup=cat,
                showlegend=(row, col) == (1, 1),
            ),
            row=row,
            col=col,
        )
    enough = tsne["category"].nunique() > 1 and len(tsne) > tsne["category"].nunique()
    silhouette[label] = silhouette_score(tsne[["x", "y"]], tsne["category"]) if enough else np.nan
fig.update_layout(
    title="t-SNE de los latentes de validación (color: clase)", height=330 * len(MODELS)
)
show_figure(fig)
SILHOUETTE = pd.Series(silhouette, name="silueta")
show_table(
    runs[["model", "loss"]].join(SILHOUETTE).reset_index(drop=True),
    title="Silueta de las clases en el t-SNE de validación",
)
best_ae = BEST[MODELS[0]]
show_md(f"La figura tal como la registró la corrida **{best_ae}** (`val/latent_tsne`):")
show_figure(load_plotly(media_files(MEDIA[best_ae], keys.VAL_LATENT_TSNE)[0]))
for label in BEST.values():
    if media_names(MEDIA[label].summary, keys.TEST_LATENT_TSNE):
        show_figure(load_plotly(media_files(MEDIA[label], keys.TEST_LATENT_TSNE)[0]))
""",
    ),
    (
        "md",
        r"""
### 6.4 Reconstrucciones de test: buenas contra defectuosas

Cada corrida registró 16 imágenes de test (`test/reconstructions`, la mitad buenas y la mitad
con defectos, las mismas en todas las corridas), cada una como tira de cuatro paneles: original,
reconstrucción, mapa de anomalía (escala común, oscuro = normal) y máscara real. Se ponen lado a
lado las tiras del autoencoder clásico y de la U-Net entrenados con la misma pérdida, la del mejor
autoencoder clásico, para ver qué hace cada arquitectura con el mismo defecto.
""",
    ),
    (
        "code",
        r"""
from PIL import Image as PILImage

from ae_lab.nb_display import show_pil

CMP_LOSS = runs.at[BEST[MODELS[0]], "loss"]
pair = [runs[(runs["model"] == m) & (runs["loss"] == CMP_LOSS)].index[0] for m in MODELS]
strips = {label: media_files(MEDIA[label], keys.TEST_RECONSTRUCTIONS) for label in pair}
captions = {label: media_captions(MEDIA[label], keys.TEST_RECONSTRUCTIONS) for label in pair}
rows, info = [], []
for i in range(min(len(s) for s in strips.values())):
    parts = [PILImage.open(strips[label][i]).convert("RGB") for label in pair]
    w, h = sum(p.width for p in parts) + 12 * (len(parts) - 1), max(p.height for p in parts)
    row = PILImage.new("RGB", (w, h), "white")
    x = 0
    for part in parts:
        row.paste(part, (x, 0))
        x += part.width + 12
    rows.append(row)
    fields = [captions[label][i].split(" — ")[0].split(" | ") for label in pair]
    info.append([i + 1, fields[0][0], fields[0][1]] + [f[2].removeprefix("score ") for f in fields])
sheet = PILImage.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
for i, row in enumerate(rows):
    sheet.paste(row, (0, sum(r.height for r in rows[:i])))
show_md(f"Izquierda **{pair[0]}**, derecha **{pair[1]}**; pérdida `{CMP_LOSS}`.")
show_pil(sheet)
show_table(
    pd.DataFrame(
        info, columns=["fila", "clase", "defecto", *[f"puntuación {label}" for label in pair]]
    )
)
""",
    ),
    (
        "md",
        r"""
### 6.5 Histogramas del error por tipo de defecto

Para la mejor corrida de cada arquitectura, la figura `test/error_histograms/<clase>` que registró:
la puntuación de las imágenes buenas contra la de cada tipo de defecto (en la leyenda, el AUROC de
ese defecto). Debajo, la misma información como tabla: medias y separación en desviaciones
estándar de las buenas.
""",
    ),
    (
        "code",
        r"""
for model, label in BEST.items():
    show_md(f"**{label}** (mejor corrida `{model}`, AUROC {AUROC[label]:.3f})")
    for cat in CATEGORIES:
        show_figure(
            load_plotly(media_files(MEDIA[label], f"{keys.TEST_ERROR_HISTOGRAMS}/{cat}")[0])
        )
GAPS = analysis.score_gaps
show_table(
    GAPS[GAPS["label"].isin(BEST.values())].drop(columns=["model", "loss"]),
    title="Puntuación media de buenas y defectuosas, separación (gap_std) y AUROC",
)
""",
    ),
    (
        "md",
        r"""
### 6.6 AUROC

El AUROC por imagen de todo el test, por clase y por tipo de defecto, recalculado desde la tabla de
puntuaciones de cada corrida (`test/scores`) y comparado con el valor que la corrida dejó en su
resumen de W&B.
""",
    ),
    (
        "code",
        r"""
overall = runs.pivot(index="model", columns="loss", values=keys.TEST_IMAGE_AUROC)[LOSSES]
show_table(overall.reset_index(), bold_best_of=LOSSES, title="AUROC de todo el test (fila: modelo)")
per_class = analysis.auroc_table.xs(ALL, level="defect").drop(columns="best_run")
per_class.columns = [f"{runs.at[c, 'model']}/{runs.at[c, 'loss']}" for c in per_class.columns]
show_table(
    per_class.reset_index(),
    bold_best_of=list(per_class.columns),
    title="AUROC por clase (en negrita el mejor de cada fila)",
)
by_defect = analysis.auroc_table.drop(index=ALL, level="defect")
show_table(
    by_defect.reset_index(), bold_best_of=list(runs.index), title="AUROC por tipo de defecto"
)
show_figure(analysis.figures["analysis/auroc_heatmap"])
show_md(
    "Los AUROC recalculados coinciden con los del resumen de cada corrida."
    if not analysis.mismatches
    else "Diferencias con el resumen: " + "; ".join(analysis.mismatches)
)
""",
    ),
]
