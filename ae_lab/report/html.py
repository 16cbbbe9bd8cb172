"""`reports/<project>/`: the analysis as a folder of tables and figures, and as `index.html`, a
course report a browser shows well.

Static PNG figures with captions (the interactive Plotly versions are linked), tables that fit
the page (wide ones scroll inside their box), the ranking with bootstrap intervals.
"""

import html
import re
from pathlib import Path

import pandas as pd
from plotly.offline import get_plotlyjs

from ae_lab import keys
from ae_lab.analysis import tables
from ae_lab.analysis.build import Analysis
from ae_lab.analysis.figures import best_runs
from ae_lab.analysis.sources import RunData
from ae_lab.figures.static import defect_histograms, save_png
from ae_lab.report.results import interval_table

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
  line-height:1.45;color:#222}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(700px,1fr));gap:1em}
.scroll{overflow-x:auto;max-width:100%}
.tbl{border-collapse:collapse;font-size:13px}
.tbl td,.tbl th{border:1px solid #ccc;padding:3px 6px;text-align:right}
"""
RUN_COLUMNS = ["label", "model", "loss", "final_train_loss", "final_val_loss",
               f"final_{keys.VAL_L1}", f"final_{keys.VAL_ONE_MINUS_SSIM}"]  # fmt: skip
TOP_GAPS = 10
PLOTLY_JS = "plotly.min.js"
HEADERS = {  # the report's language; the CSV files keep the column names
    "label": "corrida", "model": "modelo", "loss": "pérdida", "category": "clase",
    "defect": "defecto", "good_mean": "media buenas", "defect_mean": "media defecto",
    "gap_std": "distancia (desv. est.)", "auroc": "AUROC", "final_train_loss": "train/loss final",
    "final_val_loss": "val/loss final",
}  # fmt: skip


def table(frame: pd.DataFrame, digits: int = 3) -> str:
    frame = frame.rename(columns=HEADERS)
    styler = frame.style.format(precision=digits, escape="html").hide(axis="index")
    return '<div class="scroll">' + styler.set_table_attributes('class="tbl"').to_html() + "</div>"


def figure(src: str, caption: str) -> str:
    esc = html.escape
    return f'<figure><img src="{esc(src)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def index_html(analysis, data, out: Path, slug) -> str:
    """The page; writes the per-class histogram PNGs of each architecture's best run into `out`."""
    esc = html.escape
    runs = data.runs
    title = f"Detección de anomalías por reconstrucción: {data.project}"
    p = [f"<h1>{esc(title)}</h1>"]
    p += [
        "<p>Se entrenan autoencoders sólo con imágenes buenas y se usa su error de reconstrucción "
        "como puntuación de anomalía. La grilla compara dos arquitecturas (<code>ae</code>, un "
        "autoencoder convolucional con cuello de botella, y <code>unet</code>, con conexiones "
        "<i>skip</i>) y cuatro pérdidas (L1, L2, 1 − SSIM y su mezcla). La detección se mide con "
        "el AUROC por imagen de cada clase, promediado sobre las clases.</p>",
        f"<p>Fuente: {esc(data.source)}; grupo {esc(str(data.group or '—'))}; "
        f"{len(runs)} corridas.</p>",
    ]
    ci = interval_table(runs, data.scores).sort_values("AUROC", ascending=False)
    p += ["<h2>Resultado con incertidumbre</h2>",
          "<p>AUROC medio de las clases con su intervalo de bootstrap al 95 % (imágenes de test "
          "remuestreadas dentro de cada clase). Corridas con intervalos solapados no se distinguen "
          "con estos datos.</p>", table(ci),
          "<p>Junto a las cifras publicadas: son autoencoders simples entrenados minutos en una "
          "CPU, sin pesos preentrenados; los métodos de reconstrucción que publican 0.85-0.98 de "
          "AUROC por imagen en MVTec AD (RIAD, DRAEM) entrenan cientos de épocas en GPU a 256 px, "
          "y DRAEM añade una red discriminativa. Sobre datos sintéticos, además, un AUROC alto "
          "sólo dice que estos defectos dibujados se separan; no predice el de MVTec real "
          "(el tornillo real se mide aparte: bench/README.md).</p>"]  # fmt: skip
    warnings = [*data.skipped, *analysis.mismatches]
    if warnings:
        p += ["<h2>Avisos</h2><ul>", *(f"<li>{esc(w)}</li>" for w in warnings), "</ul>"]
    p += ["<h2>Curvas de pérdida</h2>"]
    for key in [k for k in analysis.images if "loss_curves" in k]:
        model = key.rsplit("/", 1)[-1]
        p += [figure(f"figures/{slug(key)}.png", f"Arquitectura {model}: pérdida de entrenamiento "
                     "y validación de las cuatro pérdidas (izq.) y val/l1, comparable entre ellas (der.).")]  # fmt: skip
    p += ["<h2>AUROC por clase y defecto</h2>",
          figure("figures/" + slug("analysis/auroc_heatmap_image") + ".png",
                 "AUROC por imagen; escala fija de 0 a 1, 0.5 = azar. Rojo: el defecto puntúa "
                 "por debajo de las imágenes buenas."),
          '<p><a href="auroc_table.csv">Tabla completa (CSV)</a></p>']  # fmt: skip
    p += ["<h2>Histogramas por clase</h2>",
          "<p>Mejor corrida de cada arquitectura: puntuación de las imágenes buenas (gris) contra "
          "cada tipo de defecto (rojo), como fracción de las imágenes de cada grupo.</p>"]  # fmt: skip
    for _, run in best_runs(runs).iterrows():
        sc = data.scores[data.scores["run_id"] == run["run_id"]]
        cells = []
        for cat in sorted(sc["category"].unique()):
            name = f"figures/histograms__{run['label']}__{cat}.png"
            save_png(defect_histograms(sc, cat), out / name)
            cells.append(figure(name, f"{run['label']}: {cat}"))
        p += [f"<h3>{esc(run['label'])}</h3>", '<div class="grid">', *cells, "</div>"]
    gaps = analysis.score_gaps.sort_values("gap_std").head(TOP_GAPS)
    p += ["<h2>Defectos peor separados</h2>",
          f"<p>Los {TOP_GAPS} pares corrida/defecto con menor distancia entre la puntuación media "
          "de las defectuosas y la de las buenas (en desviaciones estándar de las buenas). "
          '<a href="score_gaps.csv">Tabla completa (CSV)</a>.</p>', table(gaps)]  # fmt: skip
    cols = [c for c in RUN_COLUMNS if c in analysis.run_table]
    p += ["<h2>Corridas</h2>", table(analysis.run_table[cols], 4),
          '<p><a href="run_table.csv">Todas las columnas (CSV)</a>. Versiones interactivas '
          "(Plotly) de las figuras: " + ", ".join(
              f'<a href="figures/{slug(k)}.html">{esc(k.removeprefix("analysis/"))}</a>'
              for k in analysis.figures if "histograms/" not in k) + ".</p>"]  # fmt: skip
    head = f'<meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style>'
    return f"<!DOCTYPE html><html lang='es'><head>{head}</head><body>{''.join(p)}</body></html>\n"


def slug(key: str) -> str:
    """`analysis/histograms/ae-l1-z32` -> `histograms__ae-l1-z32` (a safe file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key.removeprefix("analysis/").replace("/", "__"))


def write_report(analysis: Analysis, data: RunData, out_dir: str | Path) -> Path:
    """Write CSV + Markdown tables, one HTML per Plotly figure, one PNG per static
    figure (`analysis.images`) and `index.html`.

    plotly.js is written once next to `index.html`, so the report works without a network.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    js = out / PLOTLY_JS
    if not js.is_file():
        js.write_text(get_plotlyjs(), encoding="utf-8")
    run_cols = list(data.runs["label"])
    analysis.run_table.to_csv(out / "run_table.csv", index=False)
    analysis.auroc_table.to_csv(out / "auroc_table.csv")
    analysis.score_gaps.to_csv(out / "score_gaps.csv", index=False)
    (out / "run_table.md").write_text(tables.to_markdown(analysis.run_table))
    (out / "auroc_table.md").write_text(tables.to_markdown(analysis.auroc_table, run_cols))
    (out / "score_gaps.md").write_text(tables.to_markdown(analysis.score_gaps))
    (out / "ranking.md").write_text("".join(f"- {line}\n" for line in analysis.ranking))
    for key, fig in analysis.figures.items():
        fig.write_html(out / "figures" / f"{slug(key)}.html", include_plotlyjs=f"../{PLOTLY_JS}")
    for key, image in analysis.images.items():
        save_png(image, out / "figures" / f"{slug(key)}.png")
    index = out / "index.html"
    index.write_text(index_html(analysis, data, out, slug), encoding="utf-8")
    return index
