"""Section 5: run the grid (offline sweep runner) or reuse a group."""

CELLS = [
    (
        "md",
        r"""
## 5. Entrenamiento

Cada corrida es un proceso `train.py` independiente: entrena con las imágenes buenas, valida cada
época (`train/loss`, `val/loss`, `val/l1`, `val/l2`, `val/ssim`), guarda el mejor *checkpoint*
por `val/loss`, lo evalúa en test y registra en W&B las curvas, las reconstrucciones, el t-SNE
de los latentes, la tabla de puntuaciones por imagen, los histogramas y los AUROC.

La celda siguiente lanza la grilla con el ejecutor offline del repositorio (`JOBS` corridas a la
vez, los hilos de CPU repartidos entre ellas), con los overrides de los parámetros del notebook:
éstos deciden el tamaño (clases, imágenes, épocas) y por lo tanto el tiempo. Con W&B online las
corridas se registran en el servidor; también se puede usar el barrido de W&B
(`wandb sweep sweeps/grid.yaml` y luego `wandb agent <entidad>/tarea05/<id>`), y con
`RUN_GRID = False` el notebook sólo lee las corridas ya hechas del grupo `GROUP`.
""",
    ),
    (
        "code",
        r"""
if RUN_GRID:
    cmd = [
        sys.executable,
        "-m",
        "ae_lab.sweep",
        SWEEP,
        *OVERRIDES,
        "--jobs",
        str(JOBS),
        "--group",
        GROUP,
    ]
    print("$", " ".join(cmd[1:]), flush=True)
    grid_start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:  # the runner's progress, live
        lines.append(line)
        print(line, end="", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(
            f"the grid failed (exit status {proc.returncode}):\n{''.join(lines[-20:])}"
        )
    GRID_MINUTES = (time.time() - grid_start) / 60
    show_md(f"Grilla completa en **{GRID_MINUTES:.1f} min**, grupo de W&B `{GROUP}`.")
else:
    GRID_MINUTES = None
    show_md(f"`RUN_GRID = False`: se reutilizan las corridas del grupo `{GROUP}`.")
""",
    ),
]
