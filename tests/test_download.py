"""The MVTec downloader against small tar.xz archives served from file:// URLs."""

from __future__ import annotations

import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
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


def _archive(path: Path, names: list[str], extra=None) -> str:
    """Write a tar.xz with one small file per name; returns its sha256."""
    with tarfile.open(path, "w:xz") as tar:
        for name in names:
            _add(tar, name, name.encode())
        if extra:
            extra(tar)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Path:
    folder = tmp_path / "server"
    folder.mkdir()
    return folder


def test_per_category_download_is_verified_and_idempotent(server: Path, tmp_path: Path) -> None:
    sums = {c: _archive(server / f"{c}.tar.xz", _category_files(c)) for c in ("bottle", "screw")}
    root = tmp_path / "mvtec"
    done = download_mvtec(root, ["bottle", "screw"], server.as_uri(), sums, progress=False)
    assert done == ["bottle", "screw"]
    assert (root / "screw/ground_truth/crack/000_mask.png").read_bytes() == (
        b"screw/ground_truth/crack/000_mask.png"
    )
    assert not list((root / ".downloads").iterdir())  # archives removed after unpacking
    assert not [p for p in root.iterdir() if p.name.startswith(".extract")]
    # Present categories are skipped without touching the network (this URL does not exist).
    assert download_mvtec(root, ["screw"], (tmp_path / "gone").as_uri(), progress=False) == []


def test_whole_archive_unpacks_only_requested_categories(server: Path, tmp_path: Path) -> None:
    names = _category_files("cable", "mvtec_anomaly_detection/")
    names += _category_files("pill", "mvtec_anomaly_detection/")
    # An absolute name is made relative by tarfile's "data" filter: it cannot escape.
    names += ["mvtec_anomaly_detection/license.txt", "/tmp/ae_lab_absolute_escape.txt"]
    digest = _archive(server / "mvtec_anomaly_detection.tar.xz", names)
    root = tmp_path / "mvtec"
    sums = {"mvtec_anomaly_detection": digest}
    assert digest != download.WHOLE_ARCHIVE_SHA256
    download_mvtec(root, ["cable"], server.as_uri(), sums, whole_archive=True, progress=False)
    assert is_present(root, "cable") and not (root / "pill").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads", "cable"]
    assert not Path("/tmp/ae_lab_absolute_escape.txt").exists()


def test_checksum_mismatch_keeps_nothing(server: Path, tmp_path: Path) -> None:
    _archive(server / "cable.tar.xz", _category_files("cable"))
    root = tmp_path / "mvtec"
    with pytest.raises(AeLabError, match="Checksum mismatch") as err:
        download_mvtec(root, ["cable"], server.as_uri(), {"cable": "0" * 64}, progress=False)
    assert "cable.tar.xz" in str(err.value) and "MVTEC_ROOT" in str(err.value)
    assert not (root / "cable").exists() and not list((root / ".downloads").iterdir())
    # The whole archive is checked against the published sha256 by default.
    _archive(server / "mvtec_anomaly_detection.tar.xz", _category_files("cable"))
    with pytest.raises(AeLabError, match=download.WHOLE_ARCHIVE_SHA256):
        download_mvtec(root, ["cable"], server.as_uri(), whole_archive=True, progress=False)


@pytest.mark.parametrize(
    "evil",
    [
        lambda tar: _add(tar, "../escaped.txt"),
        lambda tar: _add(tar, "cable/train/good/link.png", type=tarfile.SYMTYPE, linkname="/etc"),
    ],
    ids=["dotdot", "symlink"],
)
def test_unsafe_members_are_refused(server: Path, tmp_path: Path, evil) -> None:
    digest = _archive(server / "cable.tar.xz", _category_files("cable"), extra=evil)
    root = tmp_path / "mvtec"
    with pytest.raises(AeLabError, match="Refusing to unpack"):
        download_mvtec(root, ["cable"], server.as_uri(), {"cable": digest}, progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == [".downloads"]  # no category, no temp


def test_archive_without_the_category_is_rejected(server: Path, tmp_path: Path) -> None:
    digest = _archive(server / "cable.tar.xz", _category_files("screw"))
    with pytest.raises(AeLabError, match="no complete 'cable' folder"):
        download_mvtec(
            tmp_path / "m", ["cable"], server.as_uri(), {"cable": digest}, progress=False
        )
    assert not (tmp_path / "m" / "cable").exists()


def test_network_failure_and_unknown_category_explain_the_fix(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere").as_uri()
    with pytest.raises(AeLabError) as err:
        download_mvtec(tmp_path / "m", ["cable"], missing, progress=False)
    message = str(err.value)
    assert f"{missing}/cable.tar.xz" in message
    assert "MVTEC_ROOT" in message and "data=synthetic" in message and "mvtec.com" in message
    with pytest.raises(AeLabError, match="valid ones: bottle, cable"):
        download_mvtec(tmp_path / "m", ["cabel"], missing, progress=False)


def test_interrupted_download_is_resumed_from_part_file(server: Path, tmp_path: Path) -> None:
    digest = _archive(server / "wood.tar.xz", _category_files("wood"))
    root = tmp_path / "mvtec"
    (root / ".downloads").mkdir(parents=True)
    (root / ".downloads/wood.tar.xz.part").write_bytes(b"partial garbage")
    # file:// cannot resume a range, so the download restarts cleanly instead of appending.
    download_mvtec(root, ["wood"], server.as_uri(), {"wood": digest}, progress=False)
    assert is_present(root, "wood")


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `self.server.payload`, honouring `Range: bytes=N-` like MVTec's server."""

    def do_GET(self) -> None:
        data, start = self.server.payload, 0
        self.server.ranges.append(self.headers.get("Range"))
        if self.headers.get("Range"):
            start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        pass


def test_http_download_resumes_with_a_range_request(
    server: Path, tmp_path: Path, monkeypatch
) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # talk to the local server directly
    digest = _archive(server / "tile.tar.xz", _category_files("tile"))
    payload = (server / "tile.tar.xz").read_bytes()
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.payload, httpd.ranges = payload, []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        root = tmp_path / "mvtec"
        (root / ".downloads").mkdir(parents=True)
        (root / ".downloads/tile.tar.xz.part").write_bytes(payload[:100])  # an interrupted run
        url = f"http://127.0.0.1:{httpd.server_port}"
        download_mvtec(root, ["tile"], url, {"tile": digest}, progress=False)
    finally:
        httpd.shutdown()
        thread.join()
    assert httpd.ranges == ["bytes=100-"] and is_present(root, "tile")


def test_official_table_and_cli(tmp_path: Path, server: Path) -> None:
    assert len(download.MVTEC_CATEGORIES) == 15 and set(download.CATEGORY_URLS) == set(
        download.MVTEC_CATEGORIES
    )
    assert all(u.startswith("https://www.mydrive.ch/") for u in download.CATEGORY_URLS.values())
    digest = _archive(server / "grid.tar.xz", _category_files("grid"))
    cmd = [sys.executable, "-m", "ae_lab.data.download", "--root", str(tmp_path / "m")]
    cmd += ["--categories", "grid", "--url-base", server.as_uri(), "--checksum", f"grid={digest}"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert is_present(tmp_path / "m", "grid") and "unpacked" in run.stdout
    bad = subprocess.run([*cmd[:5], "--categories", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "valid ones" in bad.stderr and "Traceback" not in bad.stderr
