"""Atomic file writes: a temp file in the same folder, then a rename, so a reader (or a later stage after a
kill) sees the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd


def _file_mode() -> int:
    """What open() gives a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


def atomic_write(path: Path, write) -> None:
    """Write via `write(tmp_path)` then rename, so a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(Path(tmp))
        except OSError as err:  # a failed write names no file: name the output (a full disk, say)
            if err.filename is None:
                raise OSError(err.errno, err.strerror, str(path)) from err
            raise
        os.chmod(tmp, _FILE_MODE)  # mkstemp makes the file private (0600); give it the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, data: Any) -> None:
    atomic_write(Path(path), lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(Path(path), lambda p: frame.to_csv(p, index=False))


def write_parquet(path: Path, frame: pd.DataFrame) -> Path:
    """`frame` as a parquet file at `path`, written atomically; returns `path`."""
    atomic_write(Path(path), lambda p: frame.to_parquet(p, index=False))
    return Path(path)


def file_md5(path: Path) -> str:
    """The md5 of a file's bytes (hex), as DVC records a file output."""
    return hashlib.md5(Path(path).read_bytes()).hexdigest()
