"""A corpus of awkward files, built here: each is used correctly or quarantined with a reason, never a crash,
and no original file is touched."""

import io
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.data.prepare import prepare

SIZE = 28
ROOT = Path(__file__).resolve().parents[2]


def png_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with a tiny (wrong) data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def build_corpus(folder: Path) -> dict[str, str]:
    """Files under `folder`, by name -> expected status ('ok' or 'error' or 'hidden')."""
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8))
    rgb = Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    jpeg = io.BytesIO()
    rgb.save(jpeg, format="JPEG")
    expected = {}

    def put(name: str, data: bytes, status: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = status

    put("zero_bytes.png", b"", "error")
    put("truncated.png", png_bytes(rgb)[:60], "error")
    put("truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 2], "error")
    put("text.jpg", b"this is not an image\n", "error")
    put("gray16.png", png_bytes(Image.fromarray((rng.random((SIZE, SIZE)) * 65535).astype(np.uint16))), "ok")
    palette = gray.convert("P")
    put("palette_transparent.png", png_bytes(palette, transparency=0), "ok")
    cmyk = io.BytesIO()
    rgb.convert("CMYK").save(cmyk, format="JPEG")
    put("cmyk.jpg", cmyk.getvalue(), "ok")
    put("rgba.png", png_bytes(rgb.convert("RGBA")), "ok")
    gif = io.BytesIO()
    frames = [gray.convert("P"), Image.fromarray(255 - np.asarray(gray)).convert("P")]
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", gif.getvalue(), "ok")
    put("bomb.png", bomb_png(20_000, 20_000), "error")
    put("large_header.png", bomb_png(9_000, 9_000), "error")  # 81 Mpx: above the limit, below PIL's own error
    os.symlink(folder / "does_not_exist.png", folder / "dangling_link.png")
    expected["dangling_link.png"] = "error"
    put(".DS_Store", b"\0\0\0\1Bud1", "hidden")
    unreadable = folder / "no_permission.png"
    unreadable.write_bytes(png_bytes(gray.rotate(90)))
    unreadable.chmod(0)
    expected["no_permission.png"] = "ok" if os.geteuid() == 0 else "error"  # root reads it anyway
    bad_name = os.fsencode(folder) + b"/latin1_\xe9t\xe9.png"
    with open(bad_name, "wb") as f:
        f.write(png_bytes(gray.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    expected["latin1_\\xe9t\\xe9.png"] = "error"
    return expected


def snapshot(folder: Path) -> dict[bytes, tuple]:
    """Every entry of the folder (by raw name): size, modification time and mode, links not followed."""
    out = {}
    for entry in os.scandir(os.fsencode(folder)):
        st = os.lstat(entry.path)
        out[entry.name] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def test_awkward_files_are_used_or_quarantined_and_never_modified(fixture_data, tmp_path):
    weird = fixture_data / "unlabeled" / "weird"
    weird.mkdir()
    expected = build_corpus(weird)
    before = snapshot(weird)
    try:
        result = prepare(
            {s: fixture_data / s for s in ("labeled", "unlabeled", "test")},
            tmp_path / "prepared",
            image_size=SIZE,
            channels=1,
            progress=False,
        )
    finally:
        after = snapshot(weird)
        (weird / "no_permission.png").chmod(0o644)
    assert after == before  # nothing modified, nothing deleted

    rows = result.manifest[result.manifest["path"].str.startswith("weird/")].set_index("path")
    got = {path.removeprefix("weird/"): status for path, status in rows["status"].items()}
    assert got == expected
    for path, row in rows.iterrows():
        assert (row["status"] == "ok") == (row["reason"] == ""), path
    reasons = rows["reason"].to_dict()
    assert "too large" in reasons["weird/bomb.png"] and "too large" in reasons["weird/large_header.png"]
    assert "not valid UTF-8" in reasons["weird/latin1_\\xe9t\\xe9.png"]
    assert "unreadable" in reasons["weird/dangling_link.png"]
    ok = rows[rows["status"] == "ok"]
    assert set(ok["mode"]) >= {"I;16", "P", "CMYK", "RGBA"}
    errors = sum(s == "error" for s in expected.values())
    assert result.counts["status_error"] == errors + 1  # + the fixture's broken.png

    from pipeline.data.store import load_prepared

    store = load_prepared(tmp_path / "prepared")
    assert store.images.shape[1:] == (SIZE, SIZE, 1)  # every mode converted to the pipeline's


def run_prepare_stage(workdir: Path) -> subprocess.CompletedProcess:
    """stages/prepare.py in `workdir` (the project's params.yaml, relative paths resolve there)."""
    shutil.copy(ROOT / "params.yaml", workdir / "params.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    return subprocess.run(
        [sys.executable, str(ROOT / "stages" / "prepare.py")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.slow  # each case runs prepare in a subprocess
@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("empty_class", "empty class folder(s) in data/labeled: ['zebra']"),
        ("test_class_not_labeled", "test classes not in labeled: ['zebra']"),
        ("class_without_usable_image", "class(es) ['bag'] have no usable labeled image"),
        ("class_name_not_utf8", "class folder name(s) in data/labeled not valid UTF-8: ['caf\\\\xe9']"),
    ],
)
def test_bad_data_stops_prepare_with_a_clear_message_and_writes_nothing(fixture_data, breakage, message):
    workdir = fixture_data.parent
    if breakage == "empty_class":
        (fixture_data / "labeled" / "zebra").mkdir()
    elif breakage == "test_class_not_labeled":
        (fixture_data / "test" / "zebra").mkdir()
        shutil.copy(
            next((fixture_data / "test" / "bag").iterdir()), fixture_data / "test" / "zebra" / "z.png"
        )
    elif breakage == "class_name_not_utf8":
        os.rename(
            os.fsencode(fixture_data / "labeled" / "bag"), os.fsencode(fixture_data / "labeled") + b"/caf\xe9"
        )
    else:
        for image in (fixture_data / "labeled" / "bag").iterdir():
            image.write_bytes(b"not an image any more")
    proc = run_prepare_stage(workdir)
    assert proc.returncode != 0
    assert f"error: {message}" in proc.stderr and "Traceback" not in proc.stderr
    assert not (workdir / "prepared").exists() and not (workdir / "metrics").exists()
    assert list(workdir.glob(".prepared*")) == []  # nor a half-made store beside it
