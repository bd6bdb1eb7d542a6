import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.data.prepare import prepare
from pipeline.data.scan import ScannedFile
from pipeline.data.store import load_prepared
from pipeline.data.writer import StoreWriter, staged_directory


def roots(data: Path) -> dict[str, Path]:
    return {s: data / s for s in ("labeled", "unlabeled", "test")}


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_prepare_fixture_lists_corrupt_duplicate_and_hidden_files(fixture_data, tmp_path):
    before = tree_digest(fixture_data)
    result = prepare(roots(fixture_data), tmp_path / "prepared", image_size=28, channels=1, progress=False)
    manifest, counts = result.manifest, result.counts

    by_path = manifest.set_index(["split", "path"])
    broken = by_path.loc[("unlabeled", "shard_000/broken.png")]
    assert broken["status"] == "error" and "cannot decode" in broken["reason"] and broken["index"] == -1
    assert "0x" not in broken["reason"]  # no memory address: the manifest is the same in every run
    copy = by_path.loc[("unlabeled", "shard_000/copy_of_first.png")]
    pair = manifest[manifest["sha256"] == copy["sha256"]]
    assert sorted(pair["status"]) == ["duplicate", "ok"]  # counted once; the first in path order is kept
    kept, dropped = pair[pair["status"] == "ok"].iloc[0], pair[pair["status"] == "duplicate"].iloc[0]
    assert dropped["reason"] == f"same bytes as unlabeled/{kept['path']}" and dropped["index"] >= 0
    assert by_path.loc[("unlabeled", ".DS_Store"), "status"] == "hidden"
    assert counts == {
        **counts,
        "labeled_ok": 30,
        "unlabeled_ok": 200,
        "test_ok": 100,
        "unlabeled_excluded": 3,
        "classes": 10,
    }
    assert tree_digest(fixture_data) == before  # nothing under data/ was touched

    store = load_prepared(tmp_path / "prepared")
    # 330 usable images + the decoded duplicate (kept in the store, excluded by its status)
    assert store.images.shape == (331, 28, 28, 1) and store.images.dtype == np.uint8
    assert len(store.classes) == 10 and store.classes == sorted(store.classes)
    labeled = store.split("labeled")
    assert len(labeled.index) == 30 and set(labeled.labels) == set(range(10))
    row = manifest[manifest["status"] == "ok"].iloc[0]
    original = np.asarray(Image.open(fixture_data / row["split"] / row["path"]))
    assert np.array_equal(store.images[row["index"], :, :, 0], original)  # 28x28 stays pixel-exact
    assert 0 < store.stats["mean"][0] < 1 and json.loads((tmp_path / "prepared/classes.json").read_text())


def test_store_writer_appends_in_chunks_and_its_channel_stats_equal_numpy(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (20, 5, 5, 3), dtype=np.uint8)
    writer = StoreWriter(tmp_path, image_size=5, channels=3, chunk=7)  # 20 images: two full chunks + 6
    assert [writer.append(image) for image in images] == list(range(20))
    writer.finish()
    assert np.array_equal(np.load(tmp_path / "images.npy"), images)
    assert [p.name for p in tmp_path.iterdir()] == ["images.npy"]  # the raw chunk file is gone

    rows = np.array([0, 3, 4, 11, 19])  # the training images among them
    pixels = images[rows].reshape(-1, 3).astype(np.float64) / 255
    stats = writer.channel_stats(rows)
    assert stats["mean"] == pytest.approx(pixels.mean(axis=0).tolist(), rel=1e-12)
    assert stats["std"] == pytest.approx(pixels.std(axis=0).tolist(), rel=1e-12)


def test_leak_into_test_is_excluded_and_colour_images_are_converted(fixture_data, tmp_path):
    first_test = sorted((fixture_data / "test").rglob("*.png"))[0]
    (fixture_data / "unlabeled" / "leaked.png").write_bytes(first_test.read_bytes())
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 128))
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    (fixture_data / "unlabeled" / "big_colour.png").write_bytes(buf.getvalue())

    manifest = prepare(
        roots(fixture_data), tmp_path / "p", image_size=28, channels=3, progress=False
    ).manifest
    rows = manifest.set_index("path")
    assert rows.loc["leaked.png", "status"] == "leak"
    colour = rows.loc["big_colour.png"]
    assert colour["status"] == "ok" and (colour["width"], colour["height"], colour["mode"]) == (
        40,
        30,
        "RGBA",
    )
    store = load_prepared(tmp_path / "p")
    assert store.images.shape[1:] == (28, 28, 3)
    assert isinstance(pd.read_parquet(tmp_path / "p/manifest.parquet"), pd.DataFrame)


def test_incremental_prepare_decodes_only_new_bytes_and_equals_a_fresh_prepare(fixture_data, tmp_path):
    out, v1 = tmp_path / "prepared", dict.fromkeys(("labeled", "unlabeled", "test"), "v1")
    first = prepare(roots(fixture_data), out, image_size=28, channels=1, progress=False, versions=v1)
    assert first.reused == 0 and first.decoded == (first.manifest["index"] >= 0).sum() == 331

    shard = fixture_data / "unlabeled" / "shard_000"
    Image.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(shard / "new.png")
    (shard / "train_00881.png").unlink()
    (shard / "train_00960.png").rename(fixture_data / "unlabeled" / "moved.png")
    v2 = {**v1, "unlabeled": "v2"}
    second = prepare(roots(fixture_data), out, image_size=28, channels=1, progress=False, versions=v2)
    assert second.decoded == 1 and second.reused == 330  # only new.png; the corrupt file fails again

    fresh = prepare(roots(fixture_data), tmp_path / "fresh", image_size=28, channels=1, progress=False)
    assert np.array_equal(load_prepared(out).images, load_prepared(tmp_path / "fresh").images)
    columns = [c for c in second.manifest.columns if c != "first_version"]
    pd.testing.assert_frame_equal(second.manifest[columns], fresh.manifest[columns])
    first_version = second.manifest.set_index("path")["first_version"]
    assert first_version["shard_000/new.png"] == "v2" and first_version["moved.png"] == "v1"
    assert "shard_000/train_00881.png" not in first_version

    other_size = prepare(roots(fixture_data), out, image_size=16, channels=1, progress=False)
    assert other_size.reused == 0  # pixels made at another size are never reused


def test_an_interrupted_store_write_leaves_the_old_store_or_a_readable_cache(fixture_data, tmp_path):
    out = tmp_path / "prepared"
    prepare(roots(fixture_data), out, image_size=28, channels=1, progress=False)
    before = tree_digest(out)
    try:  # killed while writing the new store: the old one is untouched, the staging folder is not read
        with staged_directory(out) as staging:
            (staging / "manifest.parquet").write_bytes(b"half a file")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert tree_digest(out) == before

    out.rename(tmp_path / ".prepared.old")  # killed between the two renames of the swap
    again = prepare(roots(fixture_data), out, image_size=28, channels=1, progress=False)
    assert again.decoded == 0 and again.reused == 331  # the old store served as the decode cache
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".prepared")) == []


def test_unchanged_files_are_not_read_again_and_a_changed_file_is(fixture_data, tmp_path, monkeypatch):
    hashes = tmp_path / "local" / "file_hashes.parquet"
    prepare(roots(fixture_data), tmp_path / "prepared", 28, 1, progress=False, file_hashes=hashes)
    changed = sorted((fixture_data / "unlabeled").rglob("*.png"))[5]
    Image.fromarray(np.full((28, 28), 7, np.uint8)).save(changed)  # new bytes under the same name

    reads = []
    read_bytes = ScannedFile.read_bytes
    monkeypatch.setattr(ScannedFile, "read_bytes", lambda f: reads.append(f.path) or read_bytes(f))
    again = prepare(roots(fixture_data), tmp_path / "prepared", 28, 1, progress=False, file_hashes=hashes)
    rel = str(changed.relative_to(fixture_data / "unlabeled"))
    assert sorted(reads) == sorted([rel, "shard_000/broken.png"])  # the broken file has no stored pixels
    assert again.decoded == 1
    monkeypatch.undo()
    prepare(roots(fixture_data), tmp_path / "scratch", 28, 1, progress=False)
    assert tree_digest(tmp_path / "prepared") == tree_digest(tmp_path / "scratch")


def test_damaged_rows_of_the_last_run_are_read_again_and_the_store_equals_a_fresh_one(fixture_data, tmp_path):
    hashes, out = tmp_path / "local" / "file_hashes.parquet", tmp_path / "prepared"
    prepare(roots(fixture_data), out, 28, 1, progress=False, file_hashes=hashes)
    table = pd.read_parquet(hashes).astype({"sha256": object})
    table.loc[0, "sha256"] = None  # a null hash: the file is read again, not looked up by NaN
    table.to_parquet(hashes, index=False)
    manifest = pd.read_parquet(out / "manifest.parquet").astype({"width": float, "mode": object})
    stored = manifest.index[manifest["index"] >= 0]
    manifest.loc[stored[0], "width"] = np.nan  # would have become -2**63 in the new manifest
    manifest.loc[stored[1], "mode"] = None
    manifest.loc[stored[2], "first_version"] = None
    manifest.to_parquet(out / "manifest.parquet", index=False)

    again = prepare(roots(fixture_data), out, 28, 1, progress=False, file_hashes=hashes)
    assert again.decoded == 2  # the rows without width or mode; a missing first version is only a version
    prepare(roots(fixture_data), tmp_path / "scratch", 28, 1, progress=False)
    assert tree_digest(out) == tree_digest(tmp_path / "scratch")


def test_a_split_reads_its_usable_rows_in_manifest_order_and_a_manifest_missing_a_column_is_named(
    fixture_data, tmp_path
):
    manifest = prepare(
        roots(fixture_data), tmp_path / "prepared", image_size=28, channels=1, progress=False
    ).manifest
    store = load_prepared(tmp_path / "prepared")
    for name in ("labeled", "unlabeled", "test"):
        rows = manifest[(manifest["split"] == name) & (manifest["status"] == "ok")]
        split = store.split(name)
        assert split.index.tolist() == rows["index"].tolist() and list(split.paths) == rows["path"].tolist()
        assert list(split.sha256) == rows["sha256"].tolist()
        assert [store.classes[c] if c >= 0 else None for c in split.labels] == [
            label if name != "unlabeled" else None for label in rows["label"]
        ]
    manifest.drop(columns=["sha256"]).to_parquet(tmp_path / "prepared" / "manifest.parquet")
    with pytest.raises(ValueError, match=r"manifest.parquet lacks the column\(s\) \['sha256'\]"):
        load_prepared(tmp_path / "prepared")
