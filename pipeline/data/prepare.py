"""The `prepare` step: scan image folders into a manifest and decode pixels once into a uint8 array store.

Manifest columns (one row per file found):
    path      relative to its split folder (posix)      split    labeled | unlabeled | test
    sha256    content hash of the file bytes            label    class name ('' for unlabeled)
    width, height, mode   of the original image         status   ok | error | duplicate | leak | hidden
                                                                 | special (a FIFO, socket or device: unread)
    reason    why a row is not used ('' when ok)        index    row in images.npy, -1 when not stored
    first_version   data version (DVC hash of the split folder) in which these bytes first appeared

Rules: a file that cannot be decoded is listed with the reason and skipped; an unlabeled file whose bytes
repeat an earlier unlabeled or labeled file counts once; a labeled or unlabeled file whose bytes also appear
in test is excluded from training (leakage). Nothing under the data folders is ever modified.

Incremental: the previous store in the output folder is a decode cache keyed by content hash, used only when
made by the same decoder, so the new store is exactly what a prepare from scratch would write (cache.py).
The parts: scan.py lists the files, decode.py decodes them, writer.py writes the store and swaps it in.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from pipeline.data.cache import DecodeCache, KnownHashes
from pipeline.data.columns import Columns, StringLookup
from pipeline.data.decode import decode_error_reason, decode_image, decoder_id
from pipeline.data.scan import DataError, NotRegularFile, ScannedFile, is_utf8, scan_folder, shown_name
from pipeline.data.store import CLASSES, DECODER, MANIFEST, STATS
from pipeline.data.writer import StoreWriter, sibling_dir, staged_directory

SPLITS = ("labeled", "unlabeled", "test")
MANIFEST_SCHEMA = {
    "split": pa.string(), "path": pa.string(), "label": pa.string(), "sha256": pa.string(),
    "width": pa.int64(), "height": pa.int64(), "mode": pa.string(), "status": pa.string(),
    "reason": pa.string(), "index": pa.int64(), "first_version": pa.string(),
}  # fmt: skip
MANIFEST_COLUMNS = list(MANIFEST_SCHEMA)


@dataclass(frozen=True)
class PrepareResult:
    manifest: pd.DataFrame
    counts: dict[str, int]  # for the metrics file: the same whatever was cached
    decoded: int  # images decoded in this run
    reused: int  # images taken from the previous store


def prepare(
    roots: dict[str, Path],
    out_dir: Path,
    image_size: int,
    channels: int,
    progress: bool = True,
    versions: dict[str, str] | None = None,
    file_hashes: Path | None = None,
) -> PrepareResult:
    """Scan the three split folders, decode every new image once, and write the store under `out_dir`.

    Writes manifest.parquet, images.npy (N, H, W, C) uint8, classes.json (from labeled/ folder names),
    stats.json (per-channel mean and std of the training images, in [0, 1], which the models normalize with)
    and decoder.json. `versions` ({split: DVC hash of its folder}) fills `first_version` for bytes the
    previous store did not know. `file_hashes`: where to keep the file-stat cache (KnownHashes), if anywhere.
    """
    # the unlabeled pool is walked while it is read (a million files are never all in memory at once)
    labeled, unlabeled, test = (scan_folder(roots[split], split) for split in SPLITS)
    labeled, test = list(labeled), list(test)
    classes = sorted({f.label for f in labeled if f.label})
    if not classes:
        raise DataError(f"no class folders with images found in {roots['labeled']}")
    folders = [d.name for d in roots["labeled"].iterdir() if d.is_dir() and not d.name.startswith(".")]
    bad_names = sorted(shown_name(n) for n in folders if not is_utf8(n))
    if bad_names:
        raise DataError(
            f"class folder name(s) in {roots['labeled']} not valid UTF-8: {bad_names}; rename them"
        )
    empty = sorted(set(folders) - set(classes))
    if empty:
        raise DataError(f"empty class folder(s) in {roots['labeled']}: {empty}; add images or remove them")
    test_classes = sorted({f.label for f in test if f.label})
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"test classes not in labeled: {unknown} (labeled has {classes})")

    decoder = decoder_id(image_size, channels)
    previous = out_dir if out_dir.is_dir() else sibling_dir(out_dir, "old")  # "old": a swap was interrupted
    cache, versions = DecodeCache(previous, decoder), versions or {}
    known = KnownHashes(file_hashes)
    columns = Columns(MANIFEST_SCHEMA)
    decoded = 0
    # a reader sees the old store or the new one, never a mix; refused (DataError): nothing is left
    with staged_directory(out_dir) as staging:
        store = StoreWriter(staging, image_size, channels)
        files = itertools.chain(labeled, unlabeled, test)
        for f in tqdm(files, desc="prepare", unit="img", disable=not progress, mininterval=1.0):
            row, pixels = _read_file(f, known, cache, versions, image_size, channels)
            if pixels is not None:
                decoded += row["decoded"]
                row["index"] = store.append(pixels)
            columns.append(row)
        store.finish()
        del cache  # close the previous store's file before it is replaced

        manifest = columns.frame()
        del columns
        _mark_duplicates_and_leaks(manifest)
        usable = manifest[(manifest["split"] == "labeled") & (manifest["status"] == "ok")]["label"]
        unusable = sorted(set(classes) - set(usable))
        if unusable:
            raise DataError(
                f"class(es) {unusable} have no usable labeled image (each needs at least one; see the "
                f"reasons: {manifest[manifest['label'].isin(unusable)]['reason'].unique().tolist()[:3]})"
            )
        train = (manifest["status"] == "ok") & manifest["split"].isin(["labeled", "unlabeled"])
        if not train.any():
            raise DataError("no usable labeled or unlabeled image: nothing to train on")
        stats = store.channel_stats(manifest.loc[train, "index"].to_numpy())
        manifest.to_parquet(staging / MANIFEST, index=False)
        (staging / DECODER).write_text(json.dumps({"decoder": decoder}) + "\n")
        (staging / CLASSES).write_text(json.dumps(classes, indent=1) + "\n")
        (staging / STATS).write_text(json.dumps(stats, indent=1) + "\n")
    known.save()

    counts = {f"{split}_{status}": 0 for split in SPLITS for status in ("ok", "excluded")}
    for (split, status), n in manifest.groupby(["split", "status"]).size().items():
        counts[f"{split}_{'ok' if status == 'ok' else 'excluded'}"] += int(n)
    for status, n in manifest["status"].value_counts().items():
        counts[f"status_{status}"] = int(n)
    counts["classes"] = len(classes)
    return PrepareResult(manifest, counts, decoded=decoded, reused=store.count - decoded)


def _read_file(
    f: ScannedFile,
    known: KnownHashes,
    cache: DecodeCache,
    versions: dict[str, str],
    image_size: int,
    channels: int,
) -> tuple[dict, np.ndarray | None]:
    """One file's manifest row and its pixels (None when it is not stored; the row says why).

    The pixels come from the previous store when it holds these bytes; row["decoded"] says whether they
    were decoded now.
    """
    row = {"split": f.split, "path": f.path, "label": f.label, "sha256": "", "width": -1, "height": -1,
           "mode": "", "status": "ok", "reason": "", "index": -1, "first_version": ""}  # fmt: skip
    if f.path.rsplit("/", 1)[-1].startswith("."):
        return {**row, "status": "hidden", "reason": "hidden file"}, None
    if not f.valid_name:
        return {**row, "status": "error", "reason": "file name is not valid UTF-8: rename the file"}, None
    if f.split != "unlabeled" and not f.label:
        reason = f"file directly in {f.split}/, not in a class folder"
        return {**row, "status": "error", "reason": reason}, None
    stat = known.stat(f)
    digest = known.digest(f, stat)  # an unchanged file with its pixels in the cache is not read again
    cached = cache.get(digest) if digest else None
    if cached is None:
        try:
            raw = f.read_bytes()
        except NotRegularFile as err:
            return {**row, "status": "special", "reason": str(err)}, None
        except OSError as err:
            return {**row, "status": "error", "reason": f"unreadable: {err.strerror or err}"}, None
        digest = hashlib.sha256(raw).hexdigest()
        cached = cache.get(digest)
    known.record(f, stat, digest)
    row.update(sha256=digest, first_version=cache.first_version(digest, versions.get(f.split, "")))
    if cached is not None:
        pixels, (w, h), mode = cached
    else:
        try:
            pixels, (w, h), mode = decode_image(raw, image_size, channels)
        except Exception as err:  # noqa: BLE001 - any decoder failure is a per-file error, not a crash
            return {**row, "status": "error", "reason": decode_error_reason(err)}, None
    return {**row, "width": w, "height": h, "mode": mode, "decoded": cached is None}, pixels


def _mark_duplicates_and_leaks(manifest: pd.DataFrame) -> None:
    """Mark training rows whose bytes are a test image's (leak) or an earlier training row's (duplicate).

    Column by column, never a copy of the frame: at a million rows each copy would cost hundreds of MB.
    """
    sha, split = manifest["sha256"], manifest["split"]
    ok = manifest["status"] == "ok"
    train = ok & split.isin(["labeled", "unlabeled"])
    leak = train & sha.isin(sha[ok & (split == "test")].unique())
    manifest.loc[leak, ["status", "reason"]] = ["leak", "same bytes as a test image"]
    # Labeled rows come first, so an unlabeled copy of a labeled image is also a duplicate.
    train &= ~leak
    train_sha = sha[train]
    first = StringLookup(train_sha).first_rows()  # 8 bytes a row, where a hash index costs over 100
    repeated = first != np.arange(len(first))
    if not repeated.any():
        return
    rows = train_sha.index.to_numpy()
    dup, orig = rows[repeated], rows[first[repeated]]
    shown = (split[orig] + "/" + manifest["path"][orig]).to_numpy(object)
    manifest.loc[dup, "status"] = "duplicate"
    manifest.loc[dup, "reason"] = [f"same bytes as {name}" for name in shown]


def print_report(result: PrepareResult, shown: int = 10) -> None:
    """What prepare did, in a few lines: images stored, decoded and reused, and the first excluded files."""
    manifest = result.manifest
    problems = manifest[manifest["status"] != "ok"]
    print(
        f"prepare: {len(manifest) - len(problems)} images stored ({result.decoded} decoded, "
        f"{result.reused} unchanged from the last run), {len(problems)} excluded "
        f"({problems['status'].value_counts().to_dict()})"
    )
    for row in problems.head(shown).itertuples():
        print(f"  {row.split}/{row.path}: {row.status}: {row.reason}")
