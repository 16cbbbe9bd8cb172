"""Section 7: critical analysis; every sentence that depends on a number is generated from the tables."""

CELLS = [
    (
        "md",
        r"""
## 7. Análisis crítico

Las frases con cifras de esta sección se generan a partir de las tablas de la sección 6, así que
siguen siendo ciertas si cambian los datos, el tamaño o las épocas; el razonamiento general es
texto fijo. Una advertencia primero: con pocas imágenes de test por clase, diferencias de AUROC
de unas centésimas están dentro del ruido.
""",
    ),
    (
        "code",
        r"""
n_test = table[table["split"] == "test"].groupby("category")["label"].agg(["size", "sum"])
show_md(
    "Imágenes de test por clase (buenas / defectuosas): "
    + ", ".join(f"{c} {r['size'] - r['sum']}/{r['sum']}" for c, r in n_test.iterrows())
    + "."
)
REC = runs[["model", "loss"]].assign(
    val_l1=rt[f"final_{keys.VAL_L1}"], val_ssim=rt[f"final_{keys.VAL_SSIM}"], auroc=AUROC
)
show_table(
    REC.reset_index(drop=True),
    digits=4,
    title="Reconstrucción (error de validación, menor es mejor) y detección (AUROC)",
)
""",
    ),
    (
        "md",
        r"""
### 7.1 Reconstruir bien no es detectar bien

La pérdida de entrenamiento decide *qué* aprende a reconstruir la red; la puntuación de anomalía
es la misma para todas las corridas (el mapa de error de `conf/scoring`), así que la pérdida
actúa sólo a través de la reconstrucción.
""",
    ),
    (
        "code",
        r"""
lines = []
for model in MODELS:
    sub = REC[REC["model"] == model].set_index("loss")
    best_rec, best_ssim, best_sep = (
        sub["val_l1"].idxmin(),
        sub["val_ssim"].idxmin(),
        sub["auroc"].idxmax(),
    )
    verdict = (
        "aquí coinciden"
        if best_rec == best_sep
        else "**no coinciden**: la que mejor reconstruye no es la que mejor detecta"
    )
    lines.append(
        f"- **{model}**: reconstruye mejor con `{best_rec}` (val/l1 {sub.at[best_rec, 'val_l1']:.4f}; "
        f"en val/ssim gana `{best_ssim}`) y separa mejor con `{best_sep}` (AUROC "
        f"{sub.at[best_sep, 'auroc']:.3f}, contra {sub.at[best_rec, 'auroc']:.3f} de `{best_rec}`); {verdict}."
    )
rho = REC["val_l1"].corr(REC["auroc"], method="spearman")
trend = (
    "mejor reconstrucción va con mejor detección"
    if rho < -0.3
    else "peor reconstrucción va con mejor detección"
    if rho > 0.3
    else "casi no hay relación"
)
spread_l1 = (REC["val_l1"].max() - REC["val_l1"].min()) / REC["val_l1"].mean()
lines.append(
    f"- Entre las {len(REC)} corridas, la correlación de Spearman entre val/l1 y AUROC es "
    f"{rho:+.2f}: {trend}"
    + (
        f" (ojo: val/l1 varía sólo un {100 * spread_l1:.1f} % entre corridas)."
        if spread_l1 < 0.02
        else "."
    )
)
scoring = CFG.scoring
show_md(
    "\n".join(lines) + f"\n\n(Puntuación usada por todas: mapa `{scoring.map}`, reducción "
    f"`{scoring.reduction}` del {scoring.topk_percent:g} % de píxeles con más error.)"
)
""",
    ),
    (
        "md",
        r"""
Un error de reconstrucción bajo en validación mide cuán bien la red reproduce imágenes *buenas*;
detectar exige además que reproduzca *mal* lo anómalo. Una red que reconstruye todo con mucho
detalle baja ambos errores a la vez, y la separación entre buenas y defectuosas puede empeorar.

### 7.2 Por clase y por arquitectura
""",
    ),
    (
        "code",
        r"""
rows = []
for cat, row in per_class.iterrows():
    best_ae = {m: row[[c for c in row.index if c.startswith(f"{m}/")]].idxmax() for m in MODELS}
    rows.append(
        [
            cat,
            row.idxmax(),
            row.max(),
            row.idxmin(),
            row.min(),
            *[f"{best_ae[m]} ({row[best_ae[m]]:.3f})" for m in MODELS],
        ]
    )
CLASS = pd.DataFrame(
    rows, columns=["clase", "mejor", "AUROC", "peor", "AUROC peor", *[f"mejor {m}" for m in MODELS]]
)
show_table(CLASS)
hard, easy = CLASS.loc[CLASS["AUROC"].idxmin()], CLASS.loc[CLASS["AUROC"].idxmax()]
spread = (CLASS["AUROC"] - CLASS["AUROC peor"]).mean()
show_md(
    f"La clase más difícil es **{hard['clase']}** (su mejor corrida, `{hard['mejor']}`, llega a "
    f"{hard['AUROC']:.3f}); la más fácil, **{easy['clase']}** ({easy['AUROC']:.3f} con "
    f"`{easy['mejor']}`). Dentro de una clase, elegir bien modelo y pérdida cambia el AUROC en "
    f"{spread:.3f} de media (mejor menos peor)."
)
best_run = AUROC.idxmax()
class_of_best = per_class[f"{runs.at[best_run, 'model']}/{runs.at[best_run, 'loss']}"]
if AUROC[best_run] < class_of_best.min():
    show_md(
        f"El AUROC de todo el test de la mejor corrida ({AUROC[best_run]:.3f}) es menor que el de "
        f"cada una de sus clases ({class_of_best.min():.3f} a {class_of_best.max():.3f}): cada clase "
        "tiene su propia escala de puntuación, y un único umbral para todas mezcla las buenas de una "
        "clase con las defectuosas de otra. En la práctica se fija un umbral por clase."
    )
ARCH = REC.groupby("model")[["val_l1", "val_ssim", "auroc"]].mean()
small = GAPS.assign(small=GAPS["gap_std"] < 1).groupby("model")["small"].agg(["sum", "size"])
ARCH["defectos_copiados"] = small["sum"].astype(str) + "/" + small["size"].astype(str)
ARCH["gap_std_medio"] = GAPS.groupby("model")["gap_std"].mean()
show_table(ARCH.reset_index(), digits=4, title="Media de las cuatro pérdidas por arquitectura")
""",
    ),
    (
        "code",
        r"""
ae, un = (ARCH.loc[m] for m in ("ae", "unet")) if {"ae", "unet"} <= set(MODELS) else (None, None)
if ae is not None:
    rec_word = "reconstruye mejor" if un["val_l1"] < ae["val_l1"] else "reconstruye peor"
    det_word = "separa peor" if un["auroc"] < ae["auroc"] else "separa igual o mejor"
    text = (
        f"La U-Net {rec_word} que el autoencoder clásico (val/l1 medio {un['val_l1']:.4f} contra "
        f"{ae['val_l1']:.4f}) y {det_word} (AUROC medio {un['auroc']:.3f} contra {ae['auroc']:.3f}). "
        f"Su separación media entre buenas y defectuosas es de {un['gap_std_medio']:.2f} desviaciones "
        f"estándar de las buenas, contra {ae['gap_std_medio']:.2f}; en {un['defectos_copiados']} "
        f"combinaciones corrida x defecto queda por debajo de 1 (el defecto se reconstruye casi como "
        f"una imagen buena), contra {ae['defectos_copiados']} del clásico."
    )
    if un["auroc"] >= ae["auroc"]:
        text += (
            " Aquí los *skips* no le costaron capacidad de detección: con pocas épocas la U-Net "
            "todavía no aprende a copiar la entrada, o los defectos son demasiado grandes para "
            "pasar enteros por los *skips*."
        )
    show_md(text)
""",
    ),
    (
        "md",
        r"""
**Por qué una U-Net con *skips* también reconstruye los defectos.** El decodificador recibe, en
cada resolución, los mapas del codificador de esa misma resolución. El camino más corto para
bajar la pérdida de reconstrucción es pasar la imagen por esos atajos casi sin tocarla, y un
atajo no sabe qué es normal: un rayón entra por el *skip* de alta resolución y sale en la
reconstrucción. El cuello de botella `z` deja de ser el único camino y con él se pierde la
regularización que hace fallar al autoencoder justo en lo anómalo (compárense las tiras de la
sección 6.4). Por eso `UNetAutoencoder` admite `skip_levels`: conservar sólo los *skips*
profundos (p. ej. `[2, 3]`) recupera parte de esa regularización.

### 7.3 Dónde ayuda SSIM y dónde L1

SSIM compara estructura local (medias, contrastes y correlación en ventanas de 11 px): es
sensible a bordes y texturas y poco a cambios uniformes de brillo o de color. L1 penaliza
diferencias absolutas de intensidad en cada píxel, incluidos los cambios de color. Se esperaría
que entrenar con SSIM ayude en defectos estructurales (rayones, grietas, roscas dañadas) y con L1
en defectos de color o de material. La tabla compara, por clase y defecto, el AUROC de las
corridas `ssim` y `l1`, promediado entre arquitecturas:
""",
    ),
    (
        "code",
        r"""
table_runs = analysis.auroc_table.drop(columns="best_run")


def loss_mean(loss: str) -> pd.Series:
    cols = [lab for lab in runs.index if runs.at[lab, "loss"] == loss]
    return table_runs[cols].mean(axis=1)


if {"ssim", "l1"} <= set(LOSSES):
    SSIM_L1 = pd.DataFrame({"auroc_ssim": loss_mean("ssim"), "auroc_l1": loss_mean("l1")})
    SSIM_L1["ssim_menos_l1"] = SSIM_L1["auroc_ssim"] - SSIM_L1["auroc_l1"]
    show_table(SSIM_L1.reset_index())
    by_cls = SSIM_L1.xs(ALL, level="defect")["ssim_menos_l1"]
    by_def = SSIM_L1.drop(index=ALL, level="defect")["ssim_menos_l1"].sort_values()

    def fmt(s: pd.Series) -> str:
        return ", ".join(f"{c}/{d} ({v:+.3f})" for (c, d), v in s.items()) or "ninguno"

    def cls(s: pd.Series) -> str:
        return ", ".join(f"{c} ({v:+.3f})" for c, v in s.items()) or "ninguna"

    show_md(
        f"- Clases donde SSIM separa mejor que L1 (diferencia > 0,02): {cls(by_cls[by_cls > 0.02])}; "
        f"donde L1 separa mejor: {cls(by_cls[by_cls < -0.02])}.\n"
        f"- Defectos donde más ayuda SSIM: {fmt(by_def[by_def > 0.05][::-1][:4])}.\n"
        f"- Defectos donde más ayuda L1: {fmt(by_def[by_def < -0.05][:4])}.\n"
        f"- En promedio sobre todos los defectos, SSIM menos L1 = {by_def.mean():+.3f}."
    )
""",
    ),
    (
        "md",
        r"""
### 7.4 Los límites de 128 px

Bajar la imagen a 128 x 128 hace barato el entrenamiento, pero un defecto fino ocupa entonces
pocos píxeles, y el mapa de anomalía se suaviza con una gaussiana antes de puntuar: lo que cubre
un par de píxeles casi no mueve la puntuación. La tabla mide el área de cada tipo de defecto en
las máscaras ya reducidas al tamaño de entrada, junto al mejor AUROC que logró alguna corrida:
""",
    ),
    (
        "code",
        r"""
test_ds = dm.dataset("test")
pixels = test_ds.masks.reshape(len(test_ds), -1).sum(axis=1)
area = pd.DataFrame(
    {"category": test_ds.category, "defect": test_ds.defect, "px": pixels, "label": test_ds.label}
)
AREA = area[area["label"] == 1].groupby(["category", "defect"])["px"].agg(["mean", "min"])
AREA["pct_imagen"] = 100 * AREA["mean"] / IMAGE_SIZE**2
AREA["mejor_auroc"] = table_runs.drop(index=ALL, level="defect").max(axis=1)
show_table(
    AREA.sort_values("mean").reset_index(),
    digits=2,
    title=f"Área de los defectos en píxeles de la entrada ({IMAGE_SIZE} x {IMAGE_SIZE})",
)
rho_area = AREA["mean"].corr(AREA["mejor_auroc"], method="spearman")
smallest = AREA.sort_values("mean").head(3)
per_px = (raw_size[0] / IMAGE_SIZE) ** 2
text = (
    "Los tres defectos más pequeños son "
    + ", ".join(
        f"{c}/{d} ({r['mean']:.0f} px, {r['pct_imagen']:.2f} % de la imagen; mejor AUROC "
        f"{r['mejor_auroc']:.3f})"
        for (c, d), r in smallest.iterrows()
    )
    + f". La correlación de Spearman entre área y mejor AUROC es {rho_area:+.2f}"
    + (
        ": los defectos pequeños son los que peor se detectan."
        if rho_area > 0.3
        else ": en estos datos el tamaño no explica por sí solo qué defecto es difícil."
    )
)
if "screw" in AREA.index.get_level_values("category"):
    s = AREA.loc["screw"]
    text += (
        f" En `screw` los defectos cubren en promedio {s['mean'].mean():.0f} px de la entrada"
        + (
            f"; cada píxel de la entrada resume {per_px:.0f} píxeles del archivo original "
            f"({raw_size[0]} px de lado)"
            if per_px > 1
            else ""
        )
        + f"; en MVTec real (1024 px) serían {(1024 / IMAGE_SIZE) ** 2:.0f}: un rayón de 2 px de ancho "
        f"ocupa {2 * IMAGE_SIZE / 1024:.2f} px de la entrada."
    )
show_md(text)
""",
    ),
    (
        "md",
        r"""
### 7.5 Qué probar después

- **Más resolución donde hace falta**: 256 px o parches (*tiles*) de 128 px sobre la imagen
  completa para las clases con defectos finos como `screw`, en vez de reducir la imagen entera.
- **Regularizar la U-Net**: `model.net.skip_levels=[2,3]` (sin los *skips* de alta resolución), o
  *dropout*/ruido en los *skips*, para que no pueda copiar el defecto.
- **Separar entrenamiento y puntuación**: entrenar con SSIM+L1 pero puntuar con un mapa que
  combine SSIM y L1 (`scoring.map`), según el tipo de defecto que domine en cada clase.
- **Más épocas y datos reales**: las corridas de este notebook son cortas; con MVTec AD
  (`DATA = "mvtec"`) y 50-100 épocas las diferencias entre pérdidas se vuelven más estables.
- **Métodos de referencia**: comparar con un extractor preentrenado (PaDiM, PatchCore), que hoy
  superan a los autoencoders en MVTec AD.
""",
    ),
]
