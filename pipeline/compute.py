"""Where and how the training and inference loops compute (params.yaml `compute`): the device, bf16 autocast
and torch.compile.

The defaults (`device: cpu`, `precision: fp32`, `compile: false`) leave every loop as it runs on the CPU: the
model is not moved, autocast is off and nothing is compiled, so the CPU numbers stay bit for bit the same.
On a GPU the batches come from pinned memory and are copied with `non_blocking=True`, the model keeps
channels_last, and `precision: bf16` runs convolutions and matmuls in bfloat16 under autocast while the
weights, the optimizer and the losses stay in float32 (no loss scaling is needed for bf16, unlike fp16).
Models always leave a loop on the CPU again, so saving, logging and the next stage never see a GPU tensor.
"""

from __future__ import annotations

import os
import platform
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.config.base import ConfigError
from pipeline.config.common import ComputeConfig


@dataclass(frozen=True)
class Compute:
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"  # "fp32" | "bf16"
    compile: bool = False

    @property
    def pin_memory(self) -> bool:
        """Page-locked batches, so the host-to-GPU copy can overlap the previous step."""
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """bf16 autocast on this device (a no-op for fp32): convolutions and matmuls in bfloat16. The teacher
        and student losses take float32 logits; the SSL losses run inside it, where CUDA's autocast keeps
        softmax, log-softmax and norms in float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def to_device(self, batch: Any) -> Any:
        """Tensors (also in dicts, lists and tuples) on this device; others as they are. On the CPU: the
        same objects."""
        if self.device.type == "cpu":
            return batch
        if isinstance(batch, torch.Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, list | tuple):
            return type(batch)(self.to_device(v) for v in batch)
        return batch

    def compiled(self, net: torch.nn.Module) -> torch.nn.Module:
        """torch.compile(net) when `compile` is on (the first steps then pay for the compilation), with
        TorchInductor's deterministic mode when deterministic kernels are required (seed_everything)."""
        if not self.compile:
            return net
        torch.use_deterministic_algorithms(
            torch.are_deterministic_algorithms_enabled(),
            warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        )  # the same flags again, now with TorchInductor's
        return torch.compile(net)


CPU = Compute()


def resolve_compute(cfg: ComputeConfig) -> Compute:
    """The Compute of params.yaml `compute` here. `device: cuda` needs a visible GPU (under torchrun
    each process takes GPU LOCAL_RANK); `auto` takes one when there is one. On CUDA, deterministic kernels
    (pipeline.runtime.seed_everything) need cuBLAS's fixed workspace, set here unless the user set it, and
    an op with no deterministic CUDA kernel warns instead of stopping the stage (call this after
    seed_everything)."""
    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("compute.device: cuda, but torch sees no CUDA device (use cpu or auto)")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        torch.use_deterministic_algorithms(True, warn_only=True)
        return Compute(torch.device("cuda", local_rank), cfg.precision, cfg.compile)
    return Compute(torch.device("cpu"), cfg.precision, cfg.compile)


AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
KERNEL_PINS = tuple(AVX2_KERNELS)  # what picks the CPU kernels of PyTorch, oneDNN and MKL


def pin_cpu_kernels(cfg: ComputeConfig) -> dict[str, str]:
    """`compute.cpu_kernels: avx2` on an x86-64 CPU: hold PyTorch's vectorised kernels, oneDNN's convolutions
    and MKL's BLAS to their AVX2 code (the variables of AVX2_KERNELS), so that a CPU with AVX-512 runs the
    kernels a CPU with only AVX2 runs. A variable already set in the environment wins; `native` sets none.
    Each library reads its variable at its first operation, so this runs before the stage computes anything
    (pipeline.stage.start); processes it starts inherit the pins. Returns the variables it set."""
    if cfg.cpu_kernels != "avx2" or platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    pinned = {name: value for name, value in AVX2_KERNELS.items() if name not in os.environ}
    os.environ.update(pinned)
    return pinned


def kernel_tags() -> dict[str, str]:
    """What chose this process's CPU kernels, as MLflow tags: PyTorch's CPU capability (AVX2, AVX512, …)
    and the environment variables that pin it ('' when unset). Two runs whose numbers differ on CPU
    usually differ here (README: Reproducibility)."""
    tags = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_version": torch.__version__}
    return {**tags, **{f"env.{name}": os.environ.get(name, "") for name in KERNEL_PINS}}
