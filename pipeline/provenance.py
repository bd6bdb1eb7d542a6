"""Where a run's inputs came from: the git commit of the code and the DVC hash of each data folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml


def git_commit(root: Path) -> str:
    try:
        cmd = ["git", "rev-parse", "HEAD"]
        out = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_data_hash(folder: str | Path) -> str:
    """The md5 DVC recorded for a `dvc add`-ed folder (from `<folder>.dvc`), or 'untracked'."""
    dvc_file = Path(f"{Path(folder)}.dvc")
    if not dvc_file.is_file():
        return "untracked"
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "untracked"))
