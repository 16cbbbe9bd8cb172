"""Download MVTec AD (CC BY-NC-SA 4.0) into `<root>/<category>/...`, verified and resumable.

Two sources, both MVTec's own links:
- per-category archives (`CATEGORY_URLS`, default: only what you ask for, a few hundred MB each).
  MVTec publishes NO checksums for these, so they are verified only when you pass one
  (`--checksum cable=<sha256>`); otherwise the sha256 of the download is printed so that it can
  be pinned, and the archive must hold `<category>/train/good`.
- the whole archive (`--whole-archive`, 4.9 GB): verified against the sha256 anomalib pins
  (`WHOLE_ARCHIVE_SHA256`, the same digest in several anomalib releases); only the requested
  categories are unpacked.
Archives go to `<root>/.downloads/` (a partial `.part` file is resumed over HTTP) and are deleted
after unpacking unless `keep_archives`. Categories already present are skipped. Unpacking refuses
absolute paths, `..`, links and special files, goes to a hidden folder first and is moved into
place per category, so a category folder that exists is complete.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
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
    base = root / category
    train = base / "train" / "good"
    return train.is_dir() and any(train.iterdir()) and (base / "test").is_dir()


def _digest(path: Path, expected: str | None) -> tuple[str, str]:
    algo = "md5" if expected is not None and len(expected) == 32 else "sha256"
    h = hashlib.new(algo)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return algo, h.hexdigest()


def fetch(url: str, dest: Path, expected: str | None, progress: bool = True) -> Path:
    """Download `url` to `dest` (resuming `dest.part` over HTTP) and check its sha256/md5."""
    part = dest.with_name(dest.name + ".part")
    if not dest.exists():
        have = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "ae-lab"})
        if have and url.startswith("http"):
            request.add_header("Range", f"bytes={have}-")
        try:
            with urllib.request.urlopen(request, timeout=60) as resp:
                resumed = getattr(resp, "status", None) == 206
                total = int(resp.headers.get("Content-Length") or 0) + (have if resumed else 0)
                with (
                    part.open("ab" if resumed else "wb") as f,
                    tqdm(
                        total=total or None,
                        initial=have if resumed else 0,
                        unit="B",
                        unit_scale=True,
                        desc=dest.name,
                        disable=not progress,
                    ) as bar,
                ):
                    while chunk := resp.read(1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise AeLabError(
                f"Could not download {url} ({err}). Check the network and rerun the same "
                f"command to resume (partial data is kept in {part}). {MANUAL}"
            ) from err
        part.replace(dest)
    algo, got = _digest(dest, expected)
    if expected is None:
        print(f"{dest.name}: no published checksum to verify; its sha256 is {got}")
    elif got != expected.lower():
        dest.unlink()
        raise AeLabError(
            f"Checksum mismatch for {url}: {algo} {got}, expected {expected}. The download is "
            f"corrupt or the URL serves another file; it was deleted and nothing was unpacked. "
            f"Rerun to try again. {MANUAL}"
        )
    return dest


def _safe_name(member: tarfile.TarInfo, archive: Path) -> PurePosixPath:
    name = PurePosixPath(member.name.removeprefix("./"))
    unsafe = name.is_absolute() or ".." in name.parts or "\\" in member.name
    if unsafe or not (member.isfile() or member.isdir()):
        raise AeLabError(
            f"Refusing to unpack {archive}: member {member.name!r} is "
            f"{'outside the target folder' if unsafe else 'a link or special file'}. The archive "
            f"is not a genuine MVTec AD archive; delete it. Nothing was unpacked. {MANUAL}"
        )
    # Tolerate a wrapping folder such as `mvtec_anomaly_detection/<category>/...`.
    if len(name.parts) > 1 and name.parts[0] not in MVTEC_CATEGORIES:
        name = PurePosixPath(*name.parts[1:])
    return name


def extract(archive: Path, root: Path, categories: Iterable[str]) -> None:
    """Unpack only `categories` from `archive` into `root`, each moved into place when complete."""
    wanted = set(categories)
    tmp = root / f".extract-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = _safe_name(member, archive)
                if name.parts and name.parts[0] in wanted:
                    member.name = name.as_posix()
                    tar.extract(member, tmp, filter="data")
        for c in sorted(wanted):
            if not is_present(tmp, c):
                raise AeLabError(
                    f"{archive} holds no complete '{c}' folder ({c}/train/good and {c}/test): "
                    f"it is not that category's MVTec AD archive. Delete it and rerun. {MANUAL}"
                )
            shutil.rmtree(root / c, ignore_errors=True)  # an incomplete leftover
            (tmp / c).rename(root / c)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise AeLabError(
            f"{archive} is not a readable tar archive ({err}). Delete it and rerun. {MANUAL}"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def download_mvtec(
    root: str | Path,
    categories: Iterable[str] = MVTEC_CATEGORIES,
    url_base: str | None = None,
    checksums: Mapping[str, str] | None = None,
    whole_archive: bool = False,
    keep_archives: bool = False,
    progress: bool = True,
) -> list[str]:
    """Fetch and unpack the missing `categories` into `root`; returns the ones installed now.

    `url_base` replaces MVTec's server: archives are then `<url_base>/<category>.tar.xz` and
    `<url_base>/mvtec_anomaly_detection.tar.xz`. `checksums` maps a category (or
    "mvtec_anomaly_detection") to the expected sha256 (64 hex) or md5 (32 hex) of its archive.
    """
    categories = list(categories)
    unknown = [c for c in categories if c not in MVTEC_CATEGORIES]
    if unknown or not categories:
        raise AeLabError(
            f"Unknown MVTec AD categor{'y' if len(unknown) == 1 else 'ies'} {unknown or '(none)'}; "
            f"valid ones: {', '.join(MVTEC_CATEGORIES)}."
        )
    root = Path(root).expanduser()
    missing = [c for c in dict.fromkeys(categories) if not is_present(root, c)]
    for c in categories:
        if c not in missing:
            print(f"{c}: already in {root}, skipped")
    if not missing:
        return []
    sums = {WHOLE_ARCHIVE: WHOLE_ARCHIVE_SHA256, **(checksums or {})}
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    jobs = [(WHOLE_ARCHIVE, missing)] if whole_archive else [(c, [c]) for c in missing]
    for name, cats in jobs:
        url = (
            f"{url_base.rstrip('/')}/{name}.tar.xz"
            if url_base
            else (WHOLE_ARCHIVE_URL if name == WHOLE_ARCHIVE else CATEGORY_URLS[name])
        )
        archive = fetch(url, downloads / f"{name}.tar.xz", sums.get(name), progress)
        extract(archive, root, cats)
        if not keep_archives:
            archive.unlink()
        print(f"{', '.join(cats)}: unpacked into {root}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.data.download",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", required=True, help="folder to put <category>/ folders in")
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(MVTEC_CATEGORIES),
        metavar="CATEGORY",
        help="default: all 15",
    )
    parser.add_argument("--url-base", help="mirror serving <category>.tar.xz (default: MVTec)")
    parser.add_argument(
        "--checksum",
        action="append",
        default=[],
        metavar="NAME=HEX",
        help="expected sha256/md5 of an archive, e.g. cable=<sha256>",
    )
    parser.add_argument(
        "--whole-archive",
        action="store_true",
        help="fetch the verified 4.9 GB archive instead of per-category ones",
    )
    parser.add_argument("--keep-archives", action="store_true", help="keep the .tar.xz files")
    args = parser.parse_args(argv)
    try:
        bad = [s for s in args.checksum if "=" not in s]
        if bad:
            raise AeLabError(f"--checksum {bad[0]!r} must look like NAME=HEX, e.g. cable=<sha256>.")
        download_mvtec(
            args.root,
            args.categories,
            args.url_base,
            dict(s.split("=", 1) for s in args.checksum),
            args.whole_archive,
            args.keep_archives,
        )
    except AeLabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
