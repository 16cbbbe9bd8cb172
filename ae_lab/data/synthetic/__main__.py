"""Generate a synthetic dataset in MVTec AD's folder layout
(<out>/<category>/{train/good,test/<defect>,ground_truth/<defect>}) with localised defects, exact
masks and documented nuisances (listed per file in <out>/synthetic.json). Same arguments give
byte-identical files."""

import argparse
import sys
import time

from ae_lab.data.synthetic import DEFAULT_CATEGORIES, generate, is_complete, read_marker
from ae_lab.errors import AeLabError

CATEGORIES_HELP = "the four default classes are hand-made; any other name gets a plain plate"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.data.synthetic",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("out_dir", metavar="OUT_DIR", help="dataset root to write into")
    add("--categories", nargs="+", default=list(DEFAULT_CATEGORIES), help=CATEGORIES_HELP)
    add("--n-train", type=int, default=220, help="good training images per category")
    add("--n-test", type=int, default=120, help="test images per category (about 1/3 good)")
    add("--seed", type=int, default=0, help="random seed")
    add("--image-size", type=int, default=256, help="image side in pixels")
    add("--force", action="store_true", help="regenerate even if OUT_DIR is already complete")
    params = vars(parser.parse_args(argv))
    out, force = params.pop("out_dir"), params.pop("force")
    try:
        if not force and is_complete(out, **params):
            print(f"{out} is already complete for these parameters (use --force to redo).")
        else:
            start = time.perf_counter()
            out = generate(out, **params)
            print(f"Generated in {time.perf_counter() - start:.1f} s.")
    except AeLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for category, info in read_marker(out)["categories"].items():
        counts = ", ".join(f"{k} {n}" for k, n in info["counts"].items())
        print(f"  {category}: {counts}; {len(info['nuisances'])} files with nuisances")
    print(f"Wrote {out} (details in {out}/synthetic.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
