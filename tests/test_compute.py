"""pipeline.compute: the CPU defaults change nothing, bf16 autocast computes in bfloat16 and still trains,
torch.compile gives the eager outputs, `device: cuda` without a GPU is a clear error; on a GPU (skipped here
without one) the loops train there and hand the model back on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.compute import CPU, KERNEL_PINS, Compute, resolve_compute
from pipeline.config.base import ConfigError
from pipeline.config.common import ComputeConfig
from pipeline.config.full import load_params
from pipeline.data.store import Split
from pipeline.datasets import image_batches
from pipeline.inference import predict
from pipeline.models import Architecture, build_classifier
from pipeline.runtime import LoopSetup, seed_everything
from pipeline.training.teacher import fit_teacher

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def brightness_classes(n_per_class: int = 8) -> tuple[np.ndarray, Split]:
    """Three classes a CNN separates in a few steps: dark, grey and light images with pixel noise."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n_per_class)
    images = (40 + 80 * labels[:, None, None, None] + rng.integers(-30, 31, (len(labels), 28, 28, 1))).astype(
        np.uint8
    )
    index = np.arange(len(labels))
    return images, Split(index=index, labels=labels, sha256=index.astype(str), paths=index.astype(str))


def train_teacher(compute: Compute) -> tuple[torch.nn.Module, np.ndarray, Split]:
    images, split = brightness_classes()
    seed_everything(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=3))
    cfg = PARAMS.teacher.model_copy(
        update={"min_steps": 40, "max_steps": 40, "batch_size": 12, "lr": 0.1, "freeze_encoder_below": 0}
    )
    setup = LoopSetup(image_size=28, seed=0, log=lambda metrics, step: None, compute=compute)
    fit_teacher(model=model, images=images, labeled=split, cfg=cfg, setup=setup)
    return model, images, split


def test_cpu_defaults_leave_batches_layouts_and_dtypes_as_they_are():
    x = torch.rand(2, 1, 28, 28)
    batch = (x, {"label": torch.tensor([0, 1])})
    assert CPU.to_device(batch) is batch  # not even a copy
    conv = torch.nn.Conv2d(1, 2, 3)
    with CPU.autocast():
        assert conv(x).dtype == torch.float32
    assert not CPU.pin_memory and CPU.compiled(conv) is conv


def test_bf16_autocast_convolves_in_bfloat16_and_keeps_float32_weights():
    conv, x = torch.nn.Conv2d(1, 2, 3), torch.rand(2, 1, 28, 28)
    with Compute(precision="bf16").autocast():
        y = conv(x)
        assert y.dtype == torch.bfloat16
    assert conv.weight.dtype == torch.float32


@pytest.mark.slow
def test_teacher_trained_under_bf16_learns_like_fp32_and_predicts_float32():
    fp32, images, split = train_teacher(CPU)
    bf16, _, _ = train_teacher(Compute(precision="bf16"))
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    logits32, _ = predict(fp32, images, split.index)
    logits16, features16 = predict(bf16, images, split.index, compute=Compute(precision="bf16"))
    assert logits16.dtype == np.float32 and features16.dtype == np.float32
    assert (logits32.argmax(1) == split.labels).mean() == 1.0
    assert (logits16.argmax(1) == split.labels).mean() == 1.0
    # The same weights, bf16 against fp32 inference: about 3 significant digits.
    plain, _ = predict(bf16, images, split.index)
    assert np.abs(logits16 - plain).max() < 0.05 * np.abs(plain).max()


@pytest.mark.slow
def test_compiled_model_gives_the_eager_outputs():
    torch.manual_seed(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=3)).eval()
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    compiled = Compute(compile=True).compiled(model)
    assert compiled is not model
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-5)


def test_seeding_requires_deterministic_kernels_without_importing_torchinductor():
    """Start-up: TorchInductor (about 1.5 s to import) is left to the stages that compile."""
    code = (
        "import sys, torch; from pipeline.runtime import seed_everything; seed_everything(0); "
        "print(torch.are_deterministic_algorithms_enabled(), 'torch._inductor' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False"]


def test_compiling_keeps_the_deterministic_flags_and_sets_torchinductors():
    code = (
        "import torch; from pipeline.compute import Compute; from pipeline.runtime import seed_everything; "
        "seed_everything(0); Compute(compile=True).compiled(torch.nn.Linear(2, 2)); "
        "import torch._inductor.config as c; print(torch.are_deterministic_algorithms_enabled(), "
        "torch.is_deterministic_algorithms_warn_only_enabled(), c.deterministic)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.split() == ["True", "False", "True"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu():
    with pytest.raises(ConfigError, match="compute.device: cuda, but torch sees no CUDA device"):
        resolve_compute(ComputeConfig(device="cuda", precision="fp32", compile=False, cpu_kernels="native"))
    auto = ComputeConfig(device="auto", precision="bf16", compile=False, cpu_kernels="native")
    assert resolve_compute(auto) == Compute(precision="bf16")


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_a_stage_asked_for_cuda_without_a_gpu_stops_before_writing(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  device: cpu ", "  device: cuda", 1)
    assert "device: cuda" in text
    (tmp_path / "params.yaml").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / "teacher.py")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: compute.device: cuda, but torch sees no CUDA device" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@GPU
def test_teacher_trains_on_the_gpu_in_bf16_and_comes_back_to_the_cpu():
    cfg = ComputeConfig(device="cuda", precision="bf16", compile=False, cpu_kernels="native")
    compute = resolve_compute(cfg)
    model, images, split = train_teacher(compute)
    assert all(p.device.type == "cpu" for p in model.parameters())
    logits, _ = predict(model, images, split.index, compute=compute)
    assert (logits.argmax(1) == split.labels).mean() == 1.0


@GPU
def test_batches_for_the_gpu_come_in_pinned_memory():
    images, split = brightness_classes()
    assert all(x.is_pinned() for x in image_batches(images, split.index, 8, pin_memory=True))


PIN_CHECK = """
import os, sys, torch
from pipeline.compute import pin_cpu_kernels
from pipeline.config.common import ComputeConfig
cfg = ComputeConfig(device="cpu", precision="fp32", compile=False, cpu_kernels=sys.argv[1])
pinned = pin_cpu_kernels(cfg)
torch.nn.Conv2d(4, 8, 3)(torch.ones(8, 4, 16, 16)).sum()  # oneDNN's first use
print(torch.backends.cpu.get_cpu_capability(), sorted(pinned), os.environ.get("ONEDNN_MAX_CPU_ISA", "-"))
"""


def cpu_pins(kernels: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in KERNEL_PINS}
    out = subprocess.run(
        [sys.executable, "-c", PIN_CHECK, kernels], capture_output=True, text=True, check=True, cwd=ROOT,
        env={**clean, **env, "ONEDNN_VERBOSE": "1"},
    )  # fmt: skip
    isa = next(line for line in out.stdout.splitlines() if ",info,cpu,isa:" in line)
    return [*out.stdout.splitlines()[-1].split(" ", 1), isa.rsplit(":", 1)[1]]


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"), reason="AVX2 or more")
def test_cpu_kernels_avx2_pins_pytorch_and_onednn_to_avx2_before_they_start_and_a_set_variable_wins():
    capability, pinned, isa = cpu_pins("avx2")
    assert capability == "AVX2" and isa == "Intel AVX2"
    assert pinned == "['ATEN_CPU_CAPABILITY', 'MKL_CBWR', 'ONEDNN_MAX_CPU_ISA'] AVX2"
    native, native_pins, native_isa = cpu_pins("native")
    assert native == torch.backends.cpu.get_cpu_capability() and native_pins == "[] -"  # nothing pinned
    capability, pinned, isa = cpu_pins("avx2", ATEN_CPU_CAPABILITY="default")  # the user's choice stays
    assert capability == "DEFAULT" and pinned.startswith("['MKL_CBWR', 'ONEDNN_MAX_CPU_ISA']")
    assert native_isa != "" and isa == "Intel AVX2"
