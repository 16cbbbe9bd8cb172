"""Real W&B offline runs shaped like ae-lab training runs, for the analysis tests.

`make_runs(tmp)` starts subprocesses (W&B state stays out of the test process) that write runs into
`tmp/wandb/` with `wandb.init(mode="offline")`: per-epoch losses, `test/...` summary metrics and a
`test/scores` table; it returns what each run logged (`expected.json`), keyed by run name.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

PROJECT = "ae-lab-test"
GROUP = "grid"
CLASSES = {"bottle": ("broken_large", "contamination"), "screw": ("scratch_head", "thread_top")}
N_GOOD, N_DEFECT, EPOCHS = 10, 5, 3

# A tiny grid (2 models x 2 losses) plus runs the analysis must leave out.
GRID = [
    {"model": m, "loss": loss, "latent_dim": 32} for m in ("ae", "unet") for loss in ("l1", "ssim")
]
EXTRA = [
    {"model": "ae", "loss": "l2", "latent_dim": 16, "end": "exit1"},  # crashed: finish(exit_code=1)
    {"model": "ae", "loss": "l2", "latent_dim": 8, "end": "no_scores"},  # train only, no test
    {"model": "ae", "loss": "l1", "latent_dim": 32, "project": "other-project"},
]
KILLED = [{"model": "vae", "loss": "l2", "latent_dim": 32, "end": "kill"}]  # os._exit mid-run


def run_name(spec: dict[str, Any]) -> str:
    return f"{spec['model']}-{spec['loss']}-z{spec['latent_dim']}"


def _scores(spec: dict[str, Any], rng) -> list[list[Any]]:
    """Image scores: defects score higher, except one defect per class the U-Net reconstructs well."""
    rows = []
    for c, (cat, defects) in enumerate(CLASSES.items()):
        groups = [("good", N_GOOD, 0.0)]
        for d, defect in enumerate(defects):
            shift = 0.05 if spec["model"] == "unet" and d == 0 else 0.5 + 0.3 * d + 0.2 * c
            groups.append((defect, N_DEFECT, shift * (1.2 if spec["loss"] == "ssim" else 1.0)))
        for defect, n, shift in groups:
            for i in range(n):
                score = float(1.0 + shift + rng.normal(0, 0.25))
                l1 = score * 0.1 + float(rng.normal(0, 0.01))
                row = [f"{cat}/test/{defect}/{i:03d}.png", cat, defect, int(defect != "good")]
                rows.append([*row, score, l1, l1 * l1, score * 0.2, defect != "good"])
    return rows


def _summary(table, roc_auc_score) -> dict[str, float]:
    """What the training run's test stage writes: AUROC mean of classes, pooled, per class, per defect."""
    out = {
        "test/image_auroc_pooled": roc_auc_score(table["label"], table["score"]),
        "test/f1_max": 0.5,
    }
    per_class = []
    for cat, part in table.groupby("category"):
        out[f"test/image_auroc/{cat}"] = roc_auc_score(part["label"], part["score"])
        per_class.append(out[f"test/image_auroc/{cat}"])
        for defect in sorted(set(part["defect"]) - {"good"}):
            both = part[part["defect"].isin(["good", defect])]
            out[f"test/image_auroc/{cat}/{defect}"] = roc_auc_score(both["label"], both["score"])
    out["test/image_auroc"] = sum(per_class) / len(per_class)
    return {k: float(v) for k, v in out.items()}


def logged_values(spec: dict[str, Any]) -> dict[str, Any]:
    """What a run with this spec logs (no W&B needed): config, history rows, scores, summary."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from ae_lab import keys

    name = run_name(spec)
    rng = np.random.default_rng(sum(map(ord, name)) + len(spec.get("project", "")))
    config = {
        "model": {"name": spec["model"], "latent_dim": spec["latent_dim"], "kl_beta": 0.0},
        "loss": {"name": spec["loss"]},
        "run_name": name,
        "logger": {"group": GROUP, "project": spec.get("project", PROJECT)},
        "seed": 0,
    }
    history = []
    for e in range(EPOCHS):
        # Lightning logs val and train metrics in separate rows; val/loss is best at epoch 1.
        val = {"val/loss": [0.5, 0.3, 0.35][e] + float(rng.uniform(0, 0.01))}
        val |= {
            k: float(rng.uniform(0.05, 0.5)) for k in ("val/l1", "val/l2", "val/one_minus_ssim")
        }
        history.append(
            {"epoch": e, **val, "train/loss": 1.0 / (e + 1) + float(rng.uniform(0, 0.01))}
        )
    table = pd.DataFrame(_scores(spec, rng), columns=list(keys.SCORE_COLUMNS))
    return {
        "name": name,
        "spec": spec,
        "config": config,
        "history": history,
        "scores": table.to_dict("records"),
        "summary": _summary(table, roc_auc_score),
    }


def make_one(spec: dict[str, Any], wandb_dir: str) -> dict[str, Any]:
    """Log one run the way training does; return what was logged."""
    import pandas as pd
    import wandb

    from ae_lab import keys

    out = logged_values(spec)
    project = spec.get("project", PROJECT)
    run = wandb.init(
        mode="offline",
        dir=wandb_dir,
        project=project,
        group=GROUP,
        job_type="train",
        name=out["name"],
        config=out["config"],
    )
    out["run_id"] = run.id
    for row in out["history"]:
        val = {k: v for k, v in row.items() if k.startswith("val/")}
        run.log({"epoch": row["epoch"], **val})
        run.log({"epoch": row["epoch"], "train/loss": row["train/loss"]})
        if spec.get("end") == "kill":
            os._exit(1)  # no finish: the crash the analysis must survive
    if spec.get("end") == "exit1":
        run.finish(exit_code=1)
        return out
    if spec.get("end") != "no_scores":
        run.summary.update(out["summary"])
        run.log({keys.TEST_SCORES: wandb.Table(dataframe=pd.DataFrame(out["scores"]))})
    run.finish()
    return out


def make_runs(tmp: Path) -> dict[str, dict[str, Any]]:
    """Create GRID + EXTRA (one process) and KILLED (another) in parallel under `tmp/wandb`."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp), "WANDB_SILENT": "true"}
    procs = []
    for i, specs in enumerate((GRID + EXTRA, KILLED)):
        cmd = [
            sys.executable,
            __file__,
            str(tmp),
            json.dumps(specs),
            str(tmp / f"expected{i}.json"),
        ]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL))
    for p in procs:
        p.wait()
    if procs[0].returncode != 0:
        raise RuntimeError("creating the fake W&B runs failed")
    return json.loads((tmp / "expected0.json").read_text())


if __name__ == "__main__":
    wandb_dir, specs, out_file = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    logged = {}
    for spec in specs:
        logged[run_name(spec) + spec.get("project", "")] = make_one(spec, wandb_dir)
    out_file.write_text(json.dumps(logged))
