"""Fault suite, security (issue 28): archives that try to write outside the dataset folder, and
configs that try to run code through a YAML tag.

Already covered in tests/test_download.py (not repeated): a top-level `../escaped.txt` member and
a symlink to `/etc` (::test_unsafe_members_are_refused), an absolute member name
(::test_whole_archive_is_verified_and_unpacks_only_requested_categories).
"""

from __future__ import annotations

import io
import re
import stat
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf

from ae_lab.data import download
from ae_lab.errors import AeLabError

REPO = Path(__file__).resolve().parents[2]
CATEGORY = ["cable/train/good/000.png", "cable/test/good/000.png", "cable/test/crack/000.png"]


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if info.size else None)


def _archive(path: Path, prefix: str, evil: list[tuple[str, dict]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in CATEGORY:
            _member(tar, prefix + name)
        for name, attrs in evil:
            _member(tar, name, b"evil", **attrs)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


SYM, LNK = {"type": tarfile.SYMTYPE}, {"type": tarfile.LNKTYPE}
EVIL = {
    # The whole archive's top folder is dropped: these pass a check made before that, not after.
    "dotdot-after-the-top-folder": ("top/", [("top/cable/../../escaped.txt", {})]),
    "overwrite-another-category": ("top/", [("top/cable/../../screw/train/good/000.png", {})]),
    "symlink-after-the-top-folder": (
        "top/",
        [("top/cable/up", {**SYM, "linkname": "../.."}), ("top/cable/up/escaped.txt", {})],
    ),
    "relative-symlink-out": ("", [("cable/train/good/l.png", {**SYM, "linkname": "../../../.."})]),
    "hardlink-absolute": ("", [("cable/train/good/h.png", {**LNK, "linkname": "/etc/passwd"})]),
    "hardlink-relative-out": ("", [("cable/train/good/h.png", {**LNK, "linkname": "../x"})]),
    "device": ("", [("cable/train/good/dev.png", {"type": tarfile.CHRTYPE})]),
}


@pytest.mark.parametrize("case", list(EVIL))
def test_archives_that_reach_out_are_refused_and_write_nothing(tmp_path, case):
    prefix, evil = EVIL[case]
    root = tmp_path / "data" / "mvtec"
    (root / "screw/train/good").mkdir(parents=True)
    (root / "screw/train/good/000.png").write_bytes(b"installed before")
    archive = _archive(tmp_path / "data" / "cable.tar", prefix, evil)
    before = _files(tmp_path)
    with pytest.raises(AeLabError, match="Refusing to unpack") as err:
        download.extract(archive, root, ["cable"])
    assert str(archive) in str(err.value) and "delete it" in str(err.value)
    assert _files(tmp_path) == before  # nothing new or changed anywhere, the archive's folder too
    assert sorted(p.name for p in root.iterdir()) == ["screw"]  # no category, no temp folder


def test_unpacked_files_lose_setuid_and_world_write_bits(tmp_path):
    archive = tmp_path / "cable.tar"
    with tarfile.open(archive, "w") as tar:
        for name in CATEGORY:
            _member(tar, name, mode=0o6777)
    download.extract(archive, tmp_path / "mvtec", ["cable"])
    for name in CATEGORY:
        mode = (tmp_path / "mvtec" / name).stat().st_mode
        assert not mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH), f"{name}: {oct(mode)}"


# ---- YAML tags ----------------------------------------------------------------------------------
def _payload(marker: Path) -> str:
    return f"!!python/object/apply:os.system ['touch {marker}']"


def test_a_yaml_tag_in_a_config_file_or_override_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "evil.yaml").write_text(f"model:\n  name: {_payload(marker)}\n")
    (conf / "plain.yaml").write_text("model:\n  name: ae\n")
    with pytest.raises(Exception, match="constructor"):  # yaml's ConstructorError
        OmegaConf.load(conf / "evil.yaml")
    with pytest.raises(Exception, match="constructor"):
        OmegaConf.create(f"x: {_payload(marker)}")
    with pytest.raises(Exception, match="constructor"):
        OmegaConf.from_dotlist([f"x={_payload(marker)}"])
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        with pytest.raises(Exception, match="constructor"):  # as train.py loads its configs
            compose(config_name="evil")
        with pytest.raises(HydraException):  # an unquoted tag does not even parse
            compose(config_name="plain", overrides=[f"+x={_payload(marker)}"])
        quoted = compose(config_name="plain", overrides=[f'+x="{_payload(marker)}"'])
    assert quoted.x == _payload(marker)  # a quoted one stays the text it is
    assert not marker.exists()


def test_a_yaml_tag_in_a_sweep_file_is_refused_naming_the_file(tmp_path):
    from ae_lab.sweep import load_sweep

    marker = tmp_path / "pwned"
    sweep = tmp_path / "evil.yaml"
    sweep.write_text(f"method: grid\nparameters:\n  seed:\n    values: [{_payload(marker)}]\n")
    with pytest.raises(AeLabError, match="YAML tag") as err:
        load_sweep(sweep)
    assert str(sweep) in str(err.value) and not marker.exists()


def test_no_code_reads_yaml_or_checkpoints_with_an_unsafe_loader():
    """Regression guard: YAML is read by safe loaders only, checkpoints with weights_only=True."""
    unsafe = re.compile(
        r"yaml\.(load|unsafe_load|full_load)\(|UnsafeLoader|FullLoader|Loader=yaml\.Loader\b"
        r"|pickle\.loads?\(|torch\.load\((?![^)]*weights_only=True)"
    )
    files = [*REPO.glob("ae_lab/**/*.py"), *REPO.glob("bench/*.py"), REPO / "train.py"]
    hits = [
        f"{f.relative_to(REPO)}:{i}: {line.strip()}"
        for f in [*files, REPO / "analyze.py"]
        for i, line in enumerate(f.read_text().splitlines(), 1)
        if unsafe.search(line) and not line.lstrip().startswith(("#", '"', "`"))
    ]
    assert not hits, "\n".join(hits)
