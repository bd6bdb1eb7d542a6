"""Checkpoints that carry their architecture, classes, config and step; written atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from pipeline.files import atomic_write
from pipeline.models import Architecture, Classifier, Encoder, build_classifier, build_encoder


def save_model(path: Path, model: torch.nn.Module, arch: Architecture, **extra: Any) -> None:
    payload = {"arch": arch.to_dict(), "state_dict": model.state_dict(), **extra}
    # Serialize in memory: torch.save names the zip records after the file, and a random temp-file name
    # would make two identical checkpoints differ byte for byte (and DVC see a changed output).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(Path(path), lambda p: p.write_bytes(buffer.getvalue()))


def _load(path: Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Everything a checkpoint holds: weights, architecture, and what its stage saved with them."""
    return _load(path)


def read_architecture(path: Path) -> Architecture:
    """The architecture a checkpoint holds, without building the model (which draws random numbers)."""
    return Architecture(**_load(path)["arch"])


def load_encoder(path: Path) -> tuple[Encoder, dict[str, Any]]:
    ckpt = _load(path)
    encoder = build_encoder(Architecture(**ckpt["arch"]))
    encoder.load_state_dict(ckpt["state_dict"])
    return encoder, ckpt


def load_classifier(path: Path) -> tuple[Classifier, dict[str, Any]]:
    ckpt = _load(path)
    model = build_classifier(Architecture(**ckpt["arch"]))
    model.load_state_dict(ckpt["state_dict"])
    return model, ckpt


def save_round_model(
    path: Path, model: Classifier, arch: Architecture, classes: list[str], round_name: str, config: dict,
    **extra: Any,
) -> None:  # fmt: skip
    """Save a teacher or student (pipeline.artifacts.round_model) with its classes, round and config (and
    `extra`: the teacher's `selection`)."""
    save_model(path, model, arch, classes=classes, round=round_name, config=config, **extra)
