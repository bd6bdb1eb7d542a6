"""A FIFO, a socket or a device file among the images is skipped with a reason by `prepare` and
`add-unlabeled`, never opened (reading a FIFO blocks until someone writes to it); a phone photo's EXIF
orientation is applied by the one decoder."""

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.add import add_unlabeled, known_hashes
from pipeline.data.decode import decode_image, decoder_id
from pipeline.data.prepare import prepare
from pipeline.data.scan import NotRegularFile, read_regular

ROOT = Path(__file__).resolve().parents[2]
SPECIAL = {"fifo.png": "FIFO", "socket.png": "socket", "device.png": "character device"}


def png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(path)
    return path


def special_files(folder: Path) -> socket.socket:
    """A FIFO, a bound Unix socket and a link to /dev/null (a character device) in `folder`, named like
    images; returns the socket, which the caller closes."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "fifo.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket.png"))
    (folder / "device.png").symlink_to("/dev/null")
    return server


@pytest.fixture
def data(tmp_path):
    png(tmp_path / "data/labeled/a/l.png", 10)
    png(tmp_path / "data/labeled/b/l.png", 90)
    png(tmp_path / "data/unlabeled/u.png", 20)
    png(tmp_path / "data/test/a/t.png", 30)
    png(tmp_path / "data/test/b/t.png", 70)
    sockets = [special_files(tmp_path / "data/unlabeled/odd"), special_files(tmp_path / "new")]
    png(tmp_path / "new/fresh.png", 40)
    yield tmp_path
    for s in sockets:
        s.close()


@pytest.mark.timeout(60)
def test_read_regular_refuses_special_files_unopened(data):
    for name, kind in SPECIAL.items():
        with pytest.raises(NotRegularFile, match=kind):
            read_regular(data / "new" / name)
    assert read_regular(data / "new/fresh.png")[:4] == b"\x89PNG"


@pytest.mark.timeout(60)
def test_prepare_lists_special_files_and_stores_the_images(data):
    roots = {s: data / "data" / s for s in ("labeled", "unlabeled", "test")}
    result = prepare(roots, data / "prepared", image_size=8, channels=1, progress=False)
    rows = result.manifest.set_index("path")
    for name, kind in SPECIAL.items():
        assert rows.loc[f"odd/{name}", "status"] == "special" and kind in rows.loc[f"odd/{name}", "reason"]
    assert rows.loc["u.png", "status"] == "ok" and result.counts["status_special"] == 3


@pytest.mark.timeout(60)
def test_add_unlabeled_skips_special_files_in_sources_and_data(data):
    known = known_hashes([data / "data/labeled", data / "data/unlabeled", data / "data/test"])  # FIFO there
    report = add_unlabeled([data / "new"], data / "data/unlabeled", known, into="b1")
    assert report.copied == ["b1/new/fresh.png"]
    assert sorted(Path(p).name for p, _ in report.special) == sorted(SPECIAL)
    assert all("never read" in why for _, why in report.special)
    assert not (data / "data/unlabeled/b1/new/fifo.png").exists()


@pytest.mark.slow
def test_the_cli_reports_special_files_without_blocking(data):
    (data / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "add-unlabeled", "new", "--into", "b1", "--no-dvc"],
        cwd=data, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "1 copied" in out and "3 special files (FIFO, socket, device) skipped unread" in out
    assert "special    " in out and "fifo.png: not a regular file: a FIFO" in out


def exif_rotated_jpeg(orientation: int) -> bytes:
    """A 16x8 JPEG, left half black and right half white, with EXIF `orientation`."""
    pixels = np.zeros((8, 16), dtype=np.uint8)
    pixels[:, 8:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=95, exif=exif)
    return buf.getvalue()


def test_exif_orientation_is_applied_by_the_decoder():
    """Orientation 6: the camera was turned, viewers rotate the stored image 90 degrees clockwise, so the
    stored right half (white) becomes the bottom."""
    pixels, size, _ = decode_image(exif_rotated_jpeg(6), image_size=8, channels=1)
    assert size == (8, 16)  # upright: 8 wide, 16 high
    top, bottom = pixels[:3, :, 0].mean(), pixels[5:, :, 0].mean()
    assert top < 40 and bottom > 215
    plain, size, _ = decode_image(exif_rotated_jpeg(1), image_size=8, channels=1)
    assert size == (16, 8) and plain[:, :3, 0].mean() < 40 and plain[:, 5:, 0].mean() > 215
    assert len(decoder_id(8, 1)) == 16
