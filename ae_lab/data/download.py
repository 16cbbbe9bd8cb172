"""Download MVTec AD (CC BY-NC-SA 4.0) into `<root>/<category>/...`.

Two sources, both MVTec's own links:
- per-category archives (default: only what you ask for, a few hundred MB each); MVTec publishes
  no checksums for these.
- the whole archive (`--whole-archive`, 4.9 GB): verified against the sha256 anomalib pins; only
  the requested categories are unpacked.
Categories already present are skipped. Archives go to `<root>/.downloads/` and are deleted once
unpacked. Unpacking uses tarfile's "data" filter (no paths outside the folder, no links out of it,
no special files) into a hidden folder, and each category is moved into place when complete, so a
category folder that exists is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ae_lab.errors import AeLabError

_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download/"
_IDS = {
    "bottle": "420937370-1629951468",
    "cable": "420937413-1629951498",
    "capsule": "420937454-1629951595",
    "carpet": "420937484-1629951672",
    "grid": "420937487-1629951814",
    "hazelnut": "420937545-1629951845",
    "leather": "420937607-1629951964",
    "metal_nut": "420937637-1629952063",
    "screw": "420938130-1629953152",
    "tile": "420938133-1629953189",
    "toothbrush": "420938134-1629953256",
    "transistor": "420938166-1629953277",
    "wood": "420938383-1629953354",
    "zipper": "420938385-1629953449",
}
# Per-category links as published by MVTec (collected from public READMEs); no checksums exist.
CATEGORY_URLS = {c: f"{_SHARE}{i}/{c}.tar.xz" for c, i in _IDS.items()}
CATEGORY_URLS["pill"] = (  # pill sits in a different share on MVTec's server
    "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/"
    "420938129-1629953099/pill.tar.xz"
)
MVTEC_CATEGORIES = tuple(sorted(CATEGORY_URLS))
WHOLE_ARCHIVE = "mvtec_anomaly_detection"
WHOLE_ARCHIVE_URL = f"{_SHARE}420938113-1629952094/{WHOLE_ARCHIVE}.tar.xz"
WHOLE_ARCHIVE_SHA256 = "cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d"
MANUAL = (
    "Download it by hand from https://www.mvtec.com/company/research/datasets/mvtec-ad, unpack it "
    "so that DIR/<category>/train/good exists, and set MVTEC_ROOT=DIR (or `data.root=DIR`). "
    "Without MVTec AD, `data=synthetic` runs on generated data."
)


def is_present(root: Path, category: str) -> bool:
    train = root / category / "train" / "good"
    return train.is_dir() and any(train.iterdir()) and (root / category / "test").is_dir()


def fetch(url: str, dest: Path, sha256: str | None, progress: bool = True) -> Path:
    """Download `url` to `dest` (through `dest.part`) and check its sha256 when one is known."""
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "ae-lab"})
            with urllib.request.urlopen(request, timeout=60) as resp, part.open("wb") as f:
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm.wrapattr(f, "write", total, desc=dest.name, disable=not progress) as out:
                    shutil.copyfileobj(resp, out, 1 << 20)
        except (OSError, ValueError) as err:  # URLError is an OSError
            raise AeLabError(
                f"Could not download {url} ({err}). Check the network and rerun the same "
                f"command. {MANUAL}"
            ) from err
        part.replace(dest)
    if sha256 is not None:
        with dest.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256")
        if digest.hexdigest() != sha256:
            dest.unlink()
            raise AeLabError(
                f"Checksum mismatch for {url}: sha256 {digest.hexdigest()}, expected {sha256}. The "
                f"download is corrupt or the URL serves another file; it was deleted and nothing "
                f"was unpacked. Rerun to try again. {MANUAL}"
            )
    return dest


def extract(archive: Path, root: Path, categories: Iterable[str]) -> None:
    """Unpack only `categories` from `archive` into `root`, each moved into place when complete."""
    wanted = set(categories)

    def keep(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        member = tarfile.data_filter(member, dest)  # raises FilterError for unsafe members
        parts = PurePosixPath(member.name).parts
        if len(parts) > 1 and parts[0] not in MVTEC_CATEGORIES:  # `mvtec_anomaly_detection/...`
            parts = parts[1:]
        if not parts or parts[0] not in wanted:
            return None
        # Checked again where it really lands: one folder up, `x/cable/../../f` and a link
        # `x/cable/l -> ../..` passed the first check but would reach out of `dest`.
        return tarfile.data_filter(member.replace(name="/".join(parts), deep=False), dest)

    tmp = root / f".extract-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter=keep)
        for c in sorted(wanted):
            if not is_present(tmp, c):
                raise AeLabError(
                    f"{archive} holds no complete '{c}' folder ({c}/train/good and {c}/test): "
                    f"it is not that category's MVTec AD archive. Delete it and rerun. {MANUAL}"
                )
            shutil.rmtree(root / c, ignore_errors=True)  # an incomplete leftover
            (tmp / c).rename(root / c)
    except tarfile.FilterError as err:
        raise AeLabError(
            f"Refusing to unpack {archive}: {err}. The archive is not a genuine MVTec AD archive; "
            f"delete it. Nothing was unpacked. {MANUAL}"
        ) from err
    except (tarfile.TarError, EOFError, OSError) as err:
        raise AeLabError(
            f"{archive} is not a readable tar archive ({err}). Delete it and rerun. {MANUAL}"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_mvtec(
    root: str | Path,
    categories: Iterable[str] = MVTEC_CATEGORIES,
    whole_archive: bool = False,
    progress: bool = True,
) -> list[str]:
    """Fetch and unpack the missing `categories` into `root`; returns the ones installed now."""
    categories = list(dict.fromkeys(categories))
    unknown = [c for c in categories if c not in MVTEC_CATEGORIES]
    if unknown or not categories:
        raise AeLabError(
            f"Unknown MVTec AD categor{'y' if len(unknown) == 1 else 'ies'} {unknown or '(none)'}; "
            f"valid ones: {', '.join(MVTEC_CATEGORIES)}."
        )
    root = Path(root).expanduser()
    missing = [c for c in categories if not is_present(root, c)]
    for c in sorted(set(categories) - set(missing)):
        print(f"{c}: already in {root}, skipped")
    if whole_archive and missing:
        jobs = [(WHOLE_ARCHIVE_URL, WHOLE_ARCHIVE_SHA256, missing)]
    else:  # MVTec publishes no checksums for these
        jobs = [(CATEGORY_URLS[c], None, [c]) for c in missing]
    for url, sha256, cats in jobs:
        (root / ".downloads").mkdir(parents=True, exist_ok=True)
        archive = fetch(url, root / ".downloads" / url.rsplit("/", 1)[1], sha256, progress)
        extract(archive, root, cats)
        archive.unlink()
        print(f"{', '.join(cats)}: unpacked into {root}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        "python -m ae_lab.data.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="folder to put <category>/ folders in")
    parser.add_argument("--categories", nargs="+", default=MVTEC_CATEGORIES, help="default: all")
    parser.add_argument("--whole-archive", action="store_true", help="the verified 4.9 GB archive")
    args = parser.parse_args(argv)
    try:
        download_mvtec(args.root, args.categories, args.whole_archive)
    except AeLabError as err:
        parser.exit(2, f"error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
