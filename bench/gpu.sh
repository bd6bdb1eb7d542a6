#!/usr/bin/env bash
# The GPU checks, as one prepared script for the short time a GPU machine is lent (see README "On a GPU"):
# the GPU tests, then each backbone's training speed in bf16 with torch.compile. Writes under $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
PY=${PY:-.venv/bin/python}
test -x "$PY" || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'; }
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
"$PY" -m pytest -q tests/test_compute.py 2>&1 | tail -5 | tee "$OUT/tests.txt"
"$PY" bench/backbones.py --device cuda --precision bf16 --compile --steps 20 --labeled 64 --unlabeled 448 \
  --doc "$OUT/backbones_gpu.md" 2>&1 | tail -12
cp "$OUT/backbones_gpu.md" docs/ 2>/dev/null || true
