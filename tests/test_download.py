"""The MVTec downloader against small tar.xz archives served from file:// URLs."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from ae_lab.data import download
from ae_lab.data.download import download_mvtec, is_present
from ae_lab.errors import AeLabError


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **attrs) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data))


def _category_files(category: str, prefix: str = "") -> list[str]:
    return [
        f"{prefix}{category}/train/good/000.png",
        f"{prefix}{category}/test/good/000.png",
        f"{prefix}{category}/test/crack/000.png",
        f"{prefix}{category}/ground_truth/crack/000_mask.png",
    ]


@pytest.fixture
def serve(tmp_path: Path, monkeypatch):
    """serve(name, members, extra=None): write `<name>.tar.xz` and point MVTec's URL for `name`
    (a category or "mvtec_anomaly_detection") at it; returns the archive's sha256."""
    folder = tmp_path / "server"
    folder.mkdir()
    monkeypatch.setattr(download, "CATEGORY_URLS", dict(download.CATEGORY_URLS))

    def serve(name: str, members: list[str], extra=None) -> str:
        path = folder / f"{name}.tar.xz"
        with tarfile.open(path, "w:xz") as tar:
            for member in members:
                _add(tar, member, member.encode())
            if extra:
                extra(tar)
        if name == download.WHOLE_ARCHIVE:
            monkeypatch.setattr(download, "WHOLE_ARCHIVE_URL", path.as_uri())
        else:
            download.CATEGORY_URLS[name] = path.as_uri()
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return serve


def test_per_category_download_unpacks_and_is_idempotent(serve, tmp_path: Path) -> None:
    for c in ("bottle", "screw"):
        serve(c, _category_files(c))
    root = tmp_path / "mvtec"
    assert download_mvtec(root, ["bottle", "screw"], progress=False) == ["bottle", "screw"]
    assert (root / "screw/ground_truth/crack/000_mask.png").read_bytes() == (
        b"screw/ground_truth/crack/000_mask.png"
    )
    assert not list((root / ".downloads").iterdir())  # archives removed after unpacking
    assert not [p for p in root.iterdir() if p.name.startswith(".extract")]
    # Present categories are skipped without touching the network (this URL does not exist).
    download.CATEGORY_URLS["screw"] = (tmp_path / "gone.tar.xz").as_uri()
    assert download_mvtec(root, ["screw"], progress=False) == []


def test_whole_archive_is_verified_and_unpacks_only_requested_categories(
    serve, tmp_path: Path, monkeypatch
) -> None:
    names = _category_files("cable", "mvtec_anomaly_detection/")
    names += _category_files("pill", "mvtec_anomaly_detection/")
    # An absolute name is made relative by tarfile's "data" filter: it cannot escape.
    names += ["mvtec_anomaly_detection/license.txt", "/tmp/ae_lab_absolute_escape.txt"]
    digest = serve(download.WHOLE_ARCHIVE, names)
    root = tmp_path / "mvtec"
    # The published sha256 is checked first: this archive is not MVTec's, nothing is kept.
    with pytest.raises(AeLabError, match="Checksum mismatch") as err:
        download_mvtec(root, ["cable"], whole_archive=True, progress=False)
    assert download.WHOLE_ARCHIVE_SHA256 in str(err.value) and "MVTEC_ROOT" in str(err.value)
    assert not (root / "cable").exists() and not list((root / ".downloads").iterdir())
    monkeypatch.setattr(download, "WHOLE_ARCHIVE_SHA256", digest)
    download_mvtec(root, ["cable"], whole_archive=True, progress=False)
    assert is_present(root, "cable") and not (root / "pill").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads", "cable"]
    assert not Path("/tmp/ae_lab_absolute_escape.txt").exists()


@pytest.mark.parametrize(
    "evil",
    [
        lambda tar: _add(tar, "../escaped.txt"),
        lambda tar: _add(tar, "cable/train/good/link.png", type=tarfile.SYMTYPE, linkname="/etc"),
    ],
    ids=["dotdot", "symlink"],
)
def test_unsafe_members_are_refused(serve, tmp_path: Path, evil) -> None:
    serve("cable", _category_files("cable"), extra=evil)
    root = tmp_path / "mvtec"
    with pytest.raises(AeLabError, match="Refusing to unpack"):
        download_mvtec(root, ["cable"], progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads"]  # no category, no temp


def test_archive_without_the_category_is_rejected(serve, tmp_path: Path) -> None:
    serve("cable", _category_files("screw"))
    with pytest.raises(AeLabError, match="no complete 'cable' folder"):
        download_mvtec(tmp_path / "m", ["cable"], progress=False)
    assert not (tmp_path / "m" / "cable").exists()


def test_network_failure_and_unknown_category_explain_the_fix(serve, tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere" / "cable.tar.xz").as_uri()
    download.CATEGORY_URLS["cable"] = missing
    with pytest.raises(AeLabError) as err:
        download_mvtec(tmp_path / "m", ["cable"], progress=False)
    message = str(err.value)
    assert missing in message
    assert "MVTEC_ROOT" in message and "data=synthetic" in message and "mvtec.com" in message
    with pytest.raises(AeLabError, match="valid ones: bottle, cable"):
        download_mvtec(tmp_path / "m", ["cabel"], progress=False)


def test_official_table_and_cli(serve, tmp_path: Path, capsys) -> None:
    assert len(download.MVTEC_CATEGORIES) == 15
    assert all(u.startswith("https://www.mydrive.ch/") for u in download.CATEGORY_URLS.values())
    serve("grid", _category_files("grid"))
    assert download.main(["--root", str(tmp_path / "m"), "--categories", "grid"]) == 0
    assert is_present(tmp_path / "m", "grid") and "unpacked" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        download.main(["--root", str(tmp_path / "m"), "--categories", "nope"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "valid ones" in err and "Traceback" not in err
