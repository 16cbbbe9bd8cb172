"""The hand-in notebook's steps as functions, so that its cells are one or two calls each.

Tables come back with Spanish headers (the notebook's language); W&B keys stay as they are.
"""

import inspect
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from ae_lab.data.io import load_image, load_mask
from ae_lab.errors import AeLabError
from ae_lab.figures.images import image_grid
from ae_lab.overrides import hydra_value


@dataclass
class Setup:
    """Where everything is and the Hydra overrides every run of this execution shares."""

    root: Path
    wandb_dir: Path
    data_root: Path
    group: str
    overrides: list[str]
    online: bool
    started: float = field(default_factory=time.time)

    def compose(self, *extra: str) -> DictConfig:
        """What `train.py` composes (conf/config.yaml + overrides), without running it."""
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(self.root / "conf"), version_base="1.3"):
            return compose(config_name="config", overrides=[*self.overrides, *extra])


def setup(p: dict[str, Any]) -> Setup:
    """`p`: the notebook's parameters (DATA, DATA_ROOT, CATEGORIES, ...). Moves to the repo root
    and sets the W&B environment for the runs the notebook starts."""
    here = Path.cwd()
    root = next(d for d in [here, *here.parents] if (d / "train.py").is_file())
    os.chdir(root)  # the configs, sweeps and relative paths are the repository's
    wandb_dir = Path(p["WANDB_DIR"] or os.environ.get("WANDB_DIR") or root).resolve()
    os.environ |= {
        "WANDB_DIR": str(wandb_dir),
        "WANDB_MODE": p["WANDB_MODE"],
        "WANDB_SILENT": "true",
    }
    data_root = p["DATA_ROOT"]
    if p["DATA"] == "synthetic" and data_root is None:
        cache = Path(os.environ.get("AE_LAB_CACHE", ".cache/ae_lab")).resolve()
        # One folder per generator setting: another size never overwrites these images.
        name = f"synthetic_nb_{'-'.join(p['CATEGORIES'])}_n{p['N_TRAIN']}-{p['N_TEST']}"
        data_root = cache / f"{name}_{p['SOURCE_SIZE']}px"
    if data_root is None:
        raise AeLabError('DATA = "mvtec" needs DATA_ROOT: the folder holding cable/, screw/, ...')
    if p["GROUP"] is None and not p["RUN_GRID"]:
        raise AeLabError("RUN_GRID = False reuses the runs of a W&B group: set GROUP to its name.")
    group = p["GROUP"] or f"nb-{p['DATA']}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = [
        f"data={p['DATA']}",
        f"data.root={hydra_value(str(Path(data_root).resolve()))}",
        f"data.categories={hydra_value(list(p['CATEGORIES']))}",
        f"data.image_size={p['IMAGE_SIZE']}",
        f"data.batch_size={p['BATCH_SIZE']}",
        f"trainer.max_epochs={p['EPOCHS']}",
        f"logger.project={p['PROJECT']}",
    ]
    if p["DATA"] == "synthetic":
        overrides += [
            f"data.generate.n_train={p['N_TRAIN']}",
            f"data.generate.n_test={p['N_TEST']}",
            f"data.generate.image_size={p['SOURCE_SIZE']}",
        ]
    overrides += list(p["EXTRA_OVERRIDES"])
    online = p["WANDB_MODE"] == "online"
    return Setup(root, wandb_dir, Path(data_root).resolve(), group, overrides, online)


def versions() -> pd.DataFrame:
    import platform
    from importlib.metadata import version

    names = ["torch", "lightning", "hydra-core", "wandb", "kornia", "matplotlib", "pandas"]
    rows = [("python", platform.python_version())] + [(n, version(n)) for n in names]
    return pd.DataFrame(rows, columns=["paquete", "versión"])


# ---- data ------------------------------------------------------------------------------------
def image_table(dm) -> pd.DataFrame:
    """Every image of the data module, one row each (path, category, split, defect, label, mask)."""
    dm.prepare_data()  # generates the synthetic set if missing and caches the decoded images
    table = pd.concat([dm.table(s) for s in ("train", "val", "test")], ignore_index=True)
    table["split"] = pd.Categorical(table["split"], ["train", "val", "test"])
    return table


def counts(table: pd.DataFrame) -> pd.DataFrame:
    kind = np.where(table["label"] == 1, "defectuosas", "buenas")
    out = table.assign(kind=kind).pivot_table(
        index="category", columns=["split", "kind"], values="path", aggfunc="count",
        fill_value=0, observed=True,
    )  # fmt: skip
    out.columns = [f"{split} {kind}" for split, kind in out.columns]
    return out.rename_axis("clase").reset_index()


def defect_counts(table: pd.DataFrame) -> pd.DataFrame:
    bad = table[(table["split"] == "test") & (table["label"] == 1)]
    out = bad.groupby(["category", "defect"]).agg(
        imágenes=("path", "size"), con_máscara=("mask_path", "count")
    )
    return out.reset_index().rename(columns={"category": "clase", "defect": "defecto"})


def train_samples(table: pd.DataFrame, categories: list[str], size: int, n: int = 6) -> np.ndarray:
    """A row of `n` preprocessed training images per class, as one uint8 image."""
    train = table[table["split"] == "train"]
    rows = [
        np.stack([load_image(p, size) for p in train[train["category"] == c]["path"][:n]])
        for c in categories
    ]
    return image_grid(np.concatenate(rows), ncol=n)


def network_inputs(dm, categories: list[str], n: int = 6) -> np.ndarray:
    """A row of `n` training images per class as the network gets them (resized and, for the
    classes in `data.align` / `data.straighten`, turned and centred), as one uint8 image."""
    ds = dm.dataset("train")
    cats = np.asarray(ds.category)
    rows = [ds.images[np.flatnonzero(cats == c)[:n]] for c in categories]
    return image_grid(np.concatenate(rows).transpose(0, 2, 3, 1), ncol=n)


def defect_examples(table: pd.DataFrame, size: int) -> tuple[np.ndarray, pd.DataFrame]:
    """One image per defect type next to itself with the ground-truth mask in red; the order."""
    first = table[(table["split"] == "test") & (table["label"] == 1)]
    first = first.groupby(["category", "defect"]).head(1)
    pairs = []
    for r in first.itertuples():
        image, mask = load_image(r.path, size), load_mask(r.mask_path, size)
        tinted = image.copy()
        tinted[mask] = (0.35 * tinted[mask] + 0.65 * np.array([255, 0, 0])).astype(np.uint8)
        pairs += [image, tinted]
    order = first[["category", "defect"]].reset_index(drop=True)
    order = order.rename(columns={"category": "clase", "defect": "defecto"})
    return image_grid(np.stack(pairs), ncol=8), order.rename_axis("par").reset_index()


# ---- configuration and code ------------------------------------------------------------------
def config_yaml(cfg: DictConfig) -> str:
    parts = ["seed", "data", "model", "loss", "optimizer", "trainer", "scoring", "run_name"]
    return OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, parts), resolve=True)


def config_groups(root: Path) -> pd.DataFrame:
    """The options of each `conf/` group, with the first comment line of each file."""
    rows = []
    for group in sorted(p for p in (root / "conf").iterdir() if p.is_dir()):
        for option in sorted(group.glob("*.yaml")):
            first = next((ln for ln in option.read_text().splitlines() if ln.startswith("#")), "")
            rows.append((group.name, option.stem, first.lstrip("# ")))
    return pd.DataFrame(rows, columns=["grupo", "opción", "descripción"])


def source(obj: Any) -> str:
    """A function's or class's source as a Markdown code block."""
    return "```python\n" + inspect.getsource(obj).rstrip() + "\n```"


def grid_points(setup: Setup, sweep: str) -> pd.DataFrame:
    from ae_lab.sweep import expand, load_sweep

    spec = load_sweep(setup.root / sweep)
    points = expand(spec, setup.root / "conf", setup.overrides)
    rows = [
        (p.index, p.config.run_name, " ".join(f"{k}={v}" for k, v in p.values.items() if k in spec.varied))
        for p in points
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["#", "corrida", "parámetros variados"])


def network_table(nets: dict[str, Any], image_size: int) -> pd.DataFrame:
    """Parameters, latent size and encoder levels of each network, from a forward pass."""
    import torch

    x = torch.rand(2, 3, image_size, image_size)
    rows = []
    for name, net in nets.items():
        net.eval()
        with torch.no_grad():
            levels, z = net.encoder(x), net.encode(x)
        shapes = " → ".join("x".join(map(str, f.shape[1:])) for f in levels)
        params = sum(p.numel() for p in net.parameters())
        rows.append((name, type(net).__name__, params, z.shape[1], shapes))
    return pd.DataFrame(
        rows, columns=["modelo", "clase", "parámetros", "dim. de z", "niveles del codificador"]
    )


# ---- training --------------------------------------------------------------------------------
def run_grid(setup: Setup, sweep: str, jobs: int) -> float:
    """The offline sweep runner (one Hydra multirun), its progress printed live; minutes taken."""
    cmd = [sys.executable, "-m", "ae_lab.sweep", sweep, *setup.overrides, "--jobs", str(jobs),
           "--group", setup.group]  # fmt: skip
    print("$ python", " ".join(cmd[1:]), flush=True)
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=setup.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout or []:
        lines.append(line)
        print(line, end="", flush=True)
    if proc.wait() != 0:
        raise AeLabError(
            f"the grid failed (exit status {proc.returncode}):\n{''.join(lines[-20:])}"
        )
    return (time.time() - start) / 60
