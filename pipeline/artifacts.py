"""The files of the pipeline's artifacts, named once. Folders come from params.yaml `paths` (and
`checkpoints`); the store's own files are named in pipeline.data.store."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.common import CheckpointsConfig, Paths
from pipeline.data import store


def manifest(paths: Paths) -> Path:
    """prepare's per-file table (the store's index)."""
    return Path(paths.prepared) / store.MANIFEST


def encoder(paths: Paths) -> Path:
    """The SSL-pretrained encoder."""
    return Path(paths.encoder) / "encoder.pt"


def round_model(paths: Paths, round_name: str) -> Path:
    """The model of a round: r0 the teacher, r1... the students."""
    return Path(paths.rounds) / round_name / "model.pt"


def pseudo_labels(paths: Paths, round_name: str) -> Path:
    """A round's per-image pseudo-label table."""
    return Path(paths.pseudolabels) / f"{round_name}.parquet"


def metrics(paths: Paths, stage: str) -> Path:
    return Path(paths.metrics) / f"{stage}.json"


def plot(paths: Paths, name: str) -> Path:
    return Path(paths.plots) / f"{name}.csv"


def prepare_file_hashes(checkpoints: CheckpointsConfig) -> Path:
    """prepare's table of file hashes (local state, not a DVC output)."""
    return Path(checkpoints.dir) / "prepare_file_hashes.parquet"
