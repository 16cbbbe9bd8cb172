"""Section 8: conclusions, generated from the tables where they depend on numbers."""

CELLS = [
    (
        "md",
        r"""
## 8. Conclusiones
""",
    ),
    (
        "code",
        r"""
best = AUROC.idxmax()
points = [
    f"La mejor corrida es **{best}** (`{runs.at[best, 'model']}` con pérdida "
    f"`{runs.at[best, 'loss']}`): AUROC por imagen {AUROC[best]:.3f} sobre {len(CATEGORIES)} clases.",
    "Mejor pérdida por arquitectura: "
    + "; ".join(f"`{m}` → `{runs.at[BEST[m], 'loss']}` ({AUROC[BEST[m]]:.3f})" for m in MODELS)
    + ".",
]
differ = [
    m
    for m in MODELS
    if REC[REC["model"] == m].set_index("loss")["val_l1"].idxmin() != runs.at[BEST[m], "loss"]
]
points.append(
    "La pérdida que mejor reconstruye no es la que mejor detecta en: "
    + ", ".join(f"`{m}`" for m in differ)
    + "."
    if differ
    else "En esta ejecución la pérdida que mejor reconstruye es también la que mejor detecta, en ambas "
    "arquitecturas."
)
if ae is not None:
    points.append(
        f"La U-Net reconstruye con val/l1 medio {un['val_l1']:.4f} (clásico {ae['val_l1']:.4f}) y "
        f"detecta con AUROC medio {un['auroc']:.3f} (clásico {ae['auroc']:.3f}): "
        + (
            "coherente con que sus *skips* dejan pasar también los defectos (sección 7.2)."
            if un["auroc"] < ae["auroc"]
            else "aquí sus *skips* no le restaron capacidad de detección."
        )
    )
points.append(
    f"Clase más difícil: **{hard['clase']}** (mejor AUROC {hard['AUROC']:.3f}); defecto más "
    f"pequeño: {smallest.index[0][0]}/{smallest.index[0][1]} ({smallest['mean'].iloc[0]:.0f} px a "
    f"{IMAGE_SIZE} px, mejor AUROC {smallest['mejor_auroc'].iloc[0]:.3f})."
)
minutes = (time.time() - START) / 60
points.append(
    f"Todo el notebook tardó {minutes:.1f} min"
    + (f" (la grilla de {len(runs)} corridas, {GRID_MINUTES:.1f} min)" if GRID_MINUTES else "")
    + f" con {EPOCHS} época{'s' if EPOCHS != 1 else ''} por corrida; los resultados son de una ejecución corta y sirven para "
    "comparar, no como cifras finales."
)
show_md("\n".join(f"- {p}" for p in points))
""",
    ),
]
