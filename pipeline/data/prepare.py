"""The `prepare` step: scan image folders into a manifest and decode pixels once into a uint8 array store.

Manifest columns (one row per file found):
    path      relative to its split folder (posix)      split    labeled | unlabeled | test
    sha256    content hash of the file bytes            label    class name ('' for unlabeled)
    width, height, mode   of the original image         status   ok | error | duplicate | leak | hidden
    reason    why a row is not used ('' when ok)        index    row in images.npy, -1 when not stored
    first_version   data version (DVC hash of the split folder) in which these bytes first appeared

Rules: a file that cannot be decoded is listed with the reason and skipped; an unlabeled file whose bytes
repeat an earlier unlabeled or labeled file counts once; a labeled or unlabeled file whose bytes also appear
in test is excluded from training (leakage). Nothing under the data folders is ever modified.

Incremental: the previous store in the output folder is a decode cache keyed by content hash. Files whose
bytes it holds are not decoded again (renamed and moved files included); removed files simply drop out. The
cache is used only when it was made by the same decoder code at the same size and mode, so the new store is
exactly what a prepare from scratch would write.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import PIL
from PIL import Image
from tqdm import tqdm

from pipeline.data.store import ImageFile
from pipeline.files import atomic_write

SPLITS = ("labeled", "unlabeled", "test")
MANIFEST_COLUMNS = [
    "split",
    "path",
    "label",
    "sha256",
    "width",
    "height",
    "mode",
    "status",
    "reason",
    "index",
    "first_version",
]
# Refuse decompression bombs: far above any training image, far below what would exhaust memory.
Image.MAX_IMAGE_PIXELS = 64_000_000


class DataError(ValueError):
    """The data folders cannot make a training set (no classes, an empty class, a test class not labeled…)."""


@dataclass(frozen=True, slots=True)  # slots: a million of these is a list, not a million dicts
class ScannedFile:
    split: str
    path: str  # relative to the split folder
    label: str
    full: str  # the file on disk
    valid_name: bool = True  # False: the name is not valid UTF-8 (`path` shows its bytes escaped)

    @property
    def full_path(self) -> Path:
        return Path(self.full)

    def read_bytes(self) -> bytes:
        with open(self.full, "rb") as f:
            return f.read()


def scan_folder(root: Path, split: str) -> list[ScannedFile]:
    """List files under a split folder in sorted order; labeled/test take the class from the first folder.

    Plain strings rather than pathlib per file: scanning is a large share of an incremental prepare.
    """
    if not root.is_dir():
        raise DataError(f"{split} folder not found: {root}")
    files = []
    top = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        # unlabeled has no classes; a file directly in labeled/ or test/ has none either (an error later)
        label = "" if split == "unlabeled" or not rel_dir else rel_dir.split("/", 1)[0]
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if _utf8(rel):
                files.append(ScannedFile(split, rel, label, full))
            else:  # shown with its bytes escaped; quarantined by prepare
                files.append(ScannedFile(split, _shown(rel), "", full, valid_name=False))
    return files


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os functions give undecodable bytes of a name as lone surrogates
        return False


def _shown(name: str) -> str:
    """A name with undecodable bytes, printable: those bytes as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def decode_image(raw: bytes, image_size: int, channels: int) -> tuple[np.ndarray, tuple[int, int], str]:
    """Decode bytes to (H, W, C) uint8 at `image_size`, converted to L or RGB; returns pixels, size, mode."""
    import io
    import warnings

    with warnings.catch_warnings():  # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse both
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(raw))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(f"image too large: {err}") from None
    with img:
        img.load()
        size, mode = img.size, img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: rescale to 8 bits, not clip
            arr = np.asarray(img, dtype=np.float64)
            hi = arr.max() or 1.0
            img = Image.fromarray((arr / hi * 255).round().astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")  # composite transparency on white rather than on black garbage
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, channels)
    return pixels, size, mode


def decode_error_reason(err: Exception) -> str:
    """The reason for the manifest, the same in every run: PIL's messages name a buffer by its address."""
    message = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "<bytes>", str(err))
    return f"cannot decode: {type(err).__name__}: {message}"[:300]


def decoder_id(image_size: int, channels: int) -> str:
    """What stored pixels were made with: the decoder's code, Pillow and NumPy versions, size and channels."""
    source = inspect.getsource(decode_image)
    key = f"{source}|{PIL.__version__}|{np.__version__}|{image_size}|{channels}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _sibling(out_dir: Path, kind: str) -> Path:
    return out_dir.with_name(f".{out_dir.name}.{kind}")


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """Write a folder's new contents into a staging folder, then swap it in with two renames.

    Killed while writing: `out_dir` is untouched. Killed between the renames: only `.<name>.old` is left
    (the next prepare reads it as its decode cache). Never a mix of old and new files.
    """
    staging, old = _sibling(out_dir, "partial"), _sibling(out_dir, "old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except Exception:  # refused (DataError) or failed: nothing of this run is left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


class KnownHashes:
    """The sha256 of each file the last prepare read, with its size, mtime and ctime (ns), in `path`.

    A file whose stat is unchanged is not read again: the check git and DVC use. The table stays out of the
    store, which is a DVC output, because stat times differ between clones; without it, every file is read.
    """

    def __init__(self, path: Path | None):
        self.path, self.known, self.seen = path, {}, []
        try:
            frame = pd.read_parquet(path)
            columns = [frame[c].tolist() for c in ("split", "path", "size", "mtime_ns", "ctime_ns", "sha256")]
            self.known = {(split, path): tuple(rest) for split, path, *rest in zip(*columns, strict=True)}
        except (OSError, ValueError, AttributeError, TypeError):
            pass  # no table (or an unreadable one): read every file

    def stat(self, f: ScannedFile) -> tuple[int, int, int] | None:
        """(size, mtime, ctime) of `f`, or None when unreadable or when no table is kept."""
        if self.path is None:
            return None
        try:
            st = os.stat(f.full)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def digest(self, f: ScannedFile, stat: tuple[int, int, int] | None) -> str | None:
        entry = self.known.get((f.split, f.path))
        return entry[3] if stat is not None and entry is not None and entry[:3] == stat else None

    def record(self, f: ScannedFile, stat: tuple[int, int, int] | None, digest: str) -> None:
        if stat is not None:
            self.seen.append((f.split, f.path, *stat, digest))

    def save(self) -> None:
        if self.path is not None:
            columns = ["split", "path", "size", "mtime_ns", "ctime_ns", "sha256"]
            frame = pd.DataFrame(self.seen, columns=columns)
            atomic_write(self.path, lambda p: frame.to_parquet(p, index=False))


class DecodeCache:
    """The previous store in `out_dir` by content hash: pixels (if made by `decoder`), first versions."""

    def __init__(self, out_dir: Path, decoder: str):
        self.rows: dict[str, tuple] = {}  # sha256 -> (index, width, height, mode)
        self.first_version: dict[str, str] = {}
        self.images: ImageFile | None = None
        try:
            manifest = pd.read_parquet(out_dir / "manifest.parquet")
            same_decoder = json.loads((out_dir / "decoder.json").read_text())["decoder"] == decoder
            images = ImageFile(out_dir / "images.npy")
        except (OSError, ValueError, KeyError):
            return  # no previous store (or an unreadable one): decode everything
        if "first_version" in manifest:  # a real version only; the first row of repeated bytes wins
            known = manifest[(manifest["sha256"] != "") & ~manifest["first_version"].isin(["", "untracked"])]
            known = known.drop_duplicates("sha256")
            self.first_version = dict(zip(known["sha256"], known["first_version"], strict=True))
        if same_decoder:
            stored = manifest[manifest["index"] >= 0].drop_duplicates("sha256")
            columns = [stored[c].tolist() for c in ("sha256", "index", "width", "height", "mode")]
            self.rows = {sha: tuple(rest) for sha, *rest in zip(*columns, strict=True)}
            self.images = images

    def get(self, sha256: str) -> tuple[np.ndarray, tuple[int, int], str] | None:
        row = self.rows.get(sha256)
        if row is None or self.images is None:
            return None
        index, width, height, mode = row
        return self.images[index], (width, height), mode


class StoreWriter:
    """Appends decoded images to `images.npy` in `folder` by plain file writes, a chunk at a time.

    Memory stays flat in the number of images: the pixels go to the file, not to a list, nor through a
    memory map (whose written pages would count as the process's own). For the channel statistics it keeps,
    per image, the per-channel sum and sum of squares of the pixel values as exact integers.
    """

    def __init__(self, folder: Path, image_size: int, channels: int, chunk: int = 4096):
        self.path, self.shape = folder / "images.npy", (image_size, image_size, channels)
        self.raw = open(folder / ".images.raw", "wb")  # noqa: SIM115 - closed in finish()
        self.buffer = np.empty((chunk, *self.shape), np.uint8)
        self.buffer_sums = np.empty((chunk, 2, channels), np.int64)  # per image: sum, sum of squares
        self.filled, self.count = 0, 0
        self.sums: list[np.ndarray] = []  # (chunk, 2, C) blocks, not a small array per image

    def append(self, pixels: np.ndarray) -> int:
        """Store one (H, W, C) uint8 image; returns its row in images.npy."""
        values = pixels.reshape(-1, pixels.shape[-1]).astype(np.int64)
        self.buffer[self.filled] = pixels
        self.buffer_sums[self.filled] = values.sum(axis=0), (values * values).sum(axis=0)
        self.filled += 1
        if self.filled == len(self.buffer):
            self._flush()
        self.count += 1
        return self.count - 1

    def _flush(self) -> None:
        self.raw.write(self.buffer[: self.filled].tobytes())
        self.sums.append(self.buffer_sums[: self.filled].copy())
        self.filled = 0

    def finish(self) -> None:
        """Write images.npy: its header, then the appended bytes."""
        self._flush()
        self.raw.close()
        shape = (self.count, *self.shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=shape)
        offset = header.offset
        del header  # only the header was written; the pixels go in below, by plain writes
        with open(self.raw.name, "rb") as src, open(self.path, "r+b") as dst:
            dst.seek(offset)
            shutil.copyfileobj(src, dst, 16 * 2**20)
        os.unlink(self.raw.name)

    def channel_stats(self, rows: np.ndarray) -> dict[str, list[float]]:
        """Mean and std per channel, in [0, 1], over the images at `rows`, from exact integer sums:
        mean = S / (255 n), std = sqrt(n Q - S^2) / (255 n), with S and Q the sums of values and squares."""
        if len(rows) == 0:
            raise DataError("no usable labeled or unlabeled image: nothing to train on")
        n = len(rows) * self.shape[0] * self.shape[1]  # pixels per channel
        sums = np.concatenate(self.sums)[rows].sum(axis=0)  # (2, C) int64: exact
        total, squares = ([int(x) for x in row] for row in sums)
        mean = [t / (255 * n) for t in total]
        std = [(n * q - t * t) ** 0.5 / (255 * n) for t, q in zip(total, squares, strict=True)]
        return {"mean": mean, "std": [max(s, 1e-3) for s in std]}


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
    files = [f for split in SPLITS for f in scan_folder(roots[split], split)]
    classes = sorted({f.label for f in files if f.split == "labeled" and f.label})
    if not classes:
        raise DataError(f"no class folders with images found in {roots['labeled']}")
    folders = [d.name for d in roots["labeled"].iterdir() if d.is_dir() and not d.name.startswith(".")]
    bad_names = sorted(_shown(n) for n in folders if not _utf8(n))
    if bad_names:
        raise DataError(
            f"class folder name(s) in {roots['labeled']} not valid UTF-8: {bad_names}; rename them"
        )
    empty = sorted(set(folders) - set(classes))
    if empty:
        raise DataError(f"empty class folder(s) in {roots['labeled']}: {empty}; add images or remove them")
    test_classes = sorted({f.label for f in files if f.split == "test" and f.label})
    unknown = sorted(set(test_classes) - set(classes))
    if unknown:
        raise DataError(f"test classes not in labeled: {unknown} (labeled has {classes})")

    decoder = decoder_id(image_size, channels)
    previous = out_dir if out_dir.is_dir() else _sibling(out_dir, "old")  # "old": a swap was interrupted
    cache, versions = DecodeCache(previous, decoder), versions or {}
    known = KnownHashes(file_hashes)
    columns: dict[str, list] = {c: [] for c in MANIFEST_COLUMNS}  # a million rows: lists, not dicts
    decoded = 0
    # a reader sees the old store or the new one, never a mix; refused (DataError): nothing is left
    with staged_directory(out_dir) as staging:
        store = StoreWriter(staging, image_size, channels)
        for f in tqdm(files, desc="prepare", unit="img", disable=not progress, mininterval=1.0):
            row, pixels = _read_file(f, known, cache, versions, image_size, channels)
            if pixels is not None:
                decoded += row["decoded"]
                row["index"] = store.append(pixels)
            for column, values in columns.items():
                values.append(row[column])
        store.finish()
        del cache  # close the previous store's file before it is replaced

        manifest = pd.DataFrame(columns, columns=MANIFEST_COLUMNS)
        del columns
        _mark_duplicates_and_leaks(manifest)
        usable = manifest[(manifest["split"] == "labeled") & (manifest["status"] == "ok")]["label"]
        unusable = sorted(set(classes) - set(usable))
        if unusable:
            raise DataError(
                f"class(es) {unusable} have no usable labeled image (each needs at least one; see the "
                f"reasons: {manifest[manifest['label'].isin(unusable)]['reason'].unique().tolist()[:3]})"
            )
        train = manifest[(manifest["status"] == "ok") & manifest["split"].isin(["labeled", "unlabeled"])]
        stats = store.channel_stats(train["index"].to_numpy())
        manifest.to_parquet(staging / "manifest.parquet", index=False)
        (staging / "decoder.json").write_text(json.dumps({"decoder": decoder}) + "\n")
        (staging / "classes.json").write_text(json.dumps(classes, indent=1) + "\n")
        (staging / "stats.json").write_text(json.dumps(stats, indent=1) + "\n")
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
        except OSError as err:
            return {**row, "status": "error", "reason": f"unreadable: {err.strerror or err}"}, None
        digest = hashlib.sha256(raw).hexdigest()
        cached = cache.get(digest)
    known.record(f, stat, digest)
    row.update(sha256=digest, first_version=cache.first_version.get(digest, versions.get(f.split, "")))
    if cached is not None:
        pixels, (w, h), mode = cached
    else:
        try:
            pixels, (w, h), mode = decode_image(raw, image_size, channels)
        except Exception as err:  # noqa: BLE001 - any decoder failure is a per-file error, not a crash
            return {**row, "status": "error", "reason": decode_error_reason(err)}, None
    return {**row, "width": w, "height": h, "mode": mode, "decoded": cached is None}, pixels


def _mark_duplicates_and_leaks(manifest: pd.DataFrame) -> None:
    ok = manifest["status"] == "ok"
    test_hashes = set(manifest.loc[ok & (manifest["split"] == "test"), "sha256"])
    train = ok & manifest["split"].isin(["labeled", "unlabeled"])
    leak = train & manifest["sha256"].isin(test_hashes)
    manifest.loc[leak, ["status", "reason"]] = ["leak", "same bytes as a test image"]
    # Labeled rows come first, so an unlabeled copy of a labeled image is also a duplicate.
    ok = manifest["status"] == "ok"
    train = ok & manifest["split"].isin(["labeled", "unlabeled"])
    dup = train & manifest.loc[train].duplicated("sha256", keep="first").reindex(
        manifest.index, fill_value=False
    )
    first = manifest.loc[train].drop_duplicates("sha256").set_index("sha256")
    for i in manifest.index[dup]:
        orig = first.loc[manifest.at[i, "sha256"]]
        manifest.loc[i, ["status", "reason"]] = ["duplicate", f"same bytes as {orig['split']}/{orig['path']}"]
