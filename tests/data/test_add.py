import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pipeline.data.add import add_unlabeled, known_hashes

ROOT = Path(__file__).resolve().parents[2]


def png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8), mode="L").save(path)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.fixture
def data(tmp_path):
    png(tmp_path / "data/labeled/a/l.png", 10)
    png(tmp_path / "data/unlabeled/u.png", 20)
    png(tmp_path / "data/test/a/t.png", 30)
    src = tmp_path / "new"
    png(src / "fresh.png", 40)
    png(src / "sub/fresh_too.png", 50)
    shutil.copy(src / "sub/fresh_too.png", src / "sub/fresh_again.png")  # same bytes twice in one batch
    shutil.copy(tmp_path / "data/unlabeled/u.png", src / "already.png")
    shutil.copy(tmp_path / "data/test/a/t.png", src / "from_test.png")
    (src / "broken.png").write_text("not an image")
    (src / ".DS_Store").write_bytes(b"\x00\x01")
    return tmp_path, src


def test_add_copies_only_new_decodable_images_and_leaves_sources_alone(data):
    root, src = data
    before = tree_digest(src)
    known = known_hashes([root / "data/labeled", root / "data/unlabeled", root / "data/test"])
    report = add_unlabeled([src], root / "data/unlabeled", known, into="batch1")
    assert sorted(report.copied) == ["batch1/new/fresh.png", "batch1/new/sub/fresh_again.png"]
    assert sorted(Path(p).name for p, _ in report.duplicates) == [
        "already.png",
        "fresh_too.png",
        "from_test.png",
    ]
    assert dict((Path(p).name, why) for p, why in report.duplicates)["fresh_too.png"].startswith("same bytes")
    assert [Path(p).name for p, _ in report.invalid] == ["broken.png"] and "cannot decode" in report.invalid[
        0
    ][1]
    assert [Path(p).name for p in report.hidden] == [".DS_Store"]
    copied = root / "data/unlabeled/batch1/new/fresh.png"
    assert copied.read_bytes() == (src / "fresh.png").read_bytes()
    assert tree_digest(src) == before  # nothing under the sources changed
    with pytest.raises(FileExistsError, match="batch1 already exists"):
        add_unlabeled([src], root / "data/unlabeled", known, into="batch1")


@pytest.mark.slow
def test_cli_tracks_the_new_images_with_dvc(data):
    root, src = data
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["dvc", "add", "-q", "data/unlabeled"]):
        subprocess.run(cmd, cwd=root, env=env, check=True)
    before = yaml.safe_load((root / "data/unlabeled.dvc").read_text())["outs"][0]
    out = subprocess.run(
        [sys.executable, "-m", "pipeline", "add-unlabeled", str(src), "--into", "b1"],
        cwd=root, env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "2 copied" in out and "3 duplicates" in out and "1 invalid" in out
    after = yaml.safe_load((root / "data/unlabeled.dvc").read_text())["outs"][0]
    assert after["nfiles"] == before["nfiles"] + 2 and after["md5"] != before["md5"]


def test_two_sources_with_one_name_are_refused_before_anything_is_copied(tmp_path):
    a, b = png(tmp_path / "cam1/day1/x.png", 1), png(tmp_path / "cam2/day1/x.png", 2)
    with pytest.raises(FileExistsError, match="would both be copied to day1/x.png"):
        add_unlabeled([a.parent, b.parent], tmp_path / "unlabeled", set(), into="b")
    assert not (tmp_path / "unlabeled").exists()
