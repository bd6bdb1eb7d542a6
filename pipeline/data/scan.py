"""List the files of a data split folder, in sorted order, with the class each one is filed under.

labeled/ and test/ take the class from the first folder under them; unlabeled/ has none. Names are read
as the OS gives them: a name that is not valid UTF-8 is kept, shown with its bytes escaped and marked,
so that `prepare` can list it as an error instead of failing on it. Only regular files (or links to them) are
ever read: a FIFO, a socket or a device file is refused unopened (`read_regular`), since reading a FIFO blocks
until someone writes to it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """The data folders cannot make a training set (no classes, an empty class, a test class not labeled…)."""


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a socket, a device file): never read."""


SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"),
)  # fmt: skip


def special_kind(mode: int) -> str | None:
    """What a file of this `st_mode` is when it is not a regular file ("a FIFO (named pipe)", ...); None
    for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in SPECIAL_KINDS if test(mode)), "not a regular file")


def read_regular(path: str | os.PathLike) -> bytes:
    """The bytes of the regular file at `path` (links followed). Anything else raises NotRegularFile before
    it is opened; the file is opened non-blocking and checked again, so it cannot turn into a FIFO between
    the check and the read."""
    kind = special_kind(os.stat(path).st_mode)
    if kind is None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            kind = special_kind(os.fstat(f.fileno()).st_mode)
            if kind is None:
                return f.read()
    raise NotRegularFile(f"not a regular file: {kind}; skipped, never read")


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
        return read_regular(self.full)


def scan_folder(root: Path, split: str) -> Iterator[ScannedFile]:
    """The files under a split folder in sorted order, as the walk finds them; labeled/test take the class
    from the first folder. A missing folder is an error at once, before any file is listed.

    Plain strings rather than pathlib per file: scanning is a large share of an incremental prepare.
    """
    if not root.is_dir():
        raise DataError(f"{split} folder not found: {root}")
    return _walk(os.fspath(root), split)


def _walk(top: str, split: str) -> Iterator[ScannedFile]:
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        # unlabeled has no classes; a file directly in labeled/ or test/ has none either (an error later)
        label = "" if split == "unlabeled" or not rel_dir else rel_dir.split("/", 1)[0]
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            full = os.path.join(dirpath, name)
            if is_utf8(rel):
                yield ScannedFile(split, rel, label, full)
            else:  # shown with its bytes escaped; quarantined by prepare
                yield ScannedFile(split, shown_name(rel), "", full, valid_name=False)


def is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:  # os functions give undecodable bytes of a name as lone surrogates
        return False


def shown_name(name: str) -> str:
    """A name with undecodable bytes, printable: those bytes as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")
