"""`python -m pipeline add-unlabeled SRC...`: bring new unlabeled images into data/unlabeled safely.

Each source file is read once: a file whose bytes are already known (anywhere under the data folders, or
earlier in this batch) is skipped as a duplicate, a file that does not decode is skipped with the reason,
hidden files are ignored, and a FIFO, socket or device file is skipped unread (reading a FIFO would block);
the rest are copied, bytes unchanged, under data/unlabeled/<into>/. Sources are
never modified or moved. The caller then runs `dvc add` on the unlabeled folder.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from pipeline.data.decode import decode_error_reason, decode_image
from pipeline.data.scan import NotRegularFile, read_regular, scan_folder


@dataclass
class AddReport:
    copied: list[str] = field(default_factory=list)  # paths relative to the unlabeled folder
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (source, why)
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    hidden: list[str] = field(default_factory=list)
    special: list[tuple[str, str]] = field(default_factory=list)  # (source, what it is): never read


def known_hashes(roots: list[Path]) -> set[str]:
    """sha256 of every file under the given data folders (those that exist)."""
    hashes = set()
    for root in roots:
        if root.is_dir():
            for f in scan_folder(root, "unlabeled"):
                try:
                    hashes.add(hashlib.sha256(f.read_bytes()).hexdigest())
                except NotRegularFile:  # prepare lists it; its bytes cannot be an image's
                    continue
    return hashes


def source_files(sources: list[Path]) -> list[tuple[Path, Path]]:
    """(file, path to copy it to, relative to the batch folder): a folder keeps its name and inner layout."""
    out = []
    for src in sources:
        if src.is_dir():
            out += [(f.full_path, Path(src.name) / f.path) for f in scan_folder(src, "unlabeled")]
        elif src.exists():  # a file; add_unlabeled skips it unread if it is not a regular one
            out.append((src, Path(src.name)))
        else:
            raise FileNotFoundError(f"source not found: {src}")
    first: dict[Path, Path] = {}
    for path, rel in out:  # two sources with one name would overwrite each other's copy
        if rel in first:
            raise FileExistsError(
                f"{first[rel]} and {path} would both be copied to {rel}; add them in separate --into batches"
            )
        first[rel] = path
    return out


def add_unlabeled(sources: list[Path], unlabeled: Path, known: set[str], into: str) -> AddReport:
    """Copy the new, decodable, not-yet-known images among `sources` to `unlabeled/into/`."""
    target = unlabeled / into
    if target.exists():
        raise FileExistsError(f"{target} already exists; choose another --into name")
    report, seen = AddReport(), set(known)
    for path, rel in tqdm(source_files(sources), desc="add-unlabeled", unit="img", mininterval=1.0):
        if any(part.startswith(".") for part in rel.parts):
            report.hidden.append(str(path))
            continue
        try:
            raw = read_regular(path)
        except NotRegularFile as err:
            report.special.append((str(path), str(err)))
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest in seen:
            why = "already in the data folders" if digest in known else "same bytes as an earlier source file"
            report.duplicates.append((str(path), why))
            continue
        try:
            decode_image(raw, image_size=8, channels=1)  # decodability only; prepare decodes for real
        except Exception as err:  # noqa: BLE001 - any decoder failure is a per-file rejection
            report.invalid.append((str(path), decode_error_reason(err)))
            continue
        seen.add(digest)
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / rel)
        report.copied.append((Path(into) / rel).as_posix())
    return report
