#!/usr/bin/env bash
# The GPU checks, as one prepared script for the short time a GPU machine is lent (README "On a GPU").
# First, here: `bash bench/gpu_wheels.sh` (fills .whl/); then the device call carries `.whl` and runs
# `bash bench/gpu.sh`. That machine has no internet and its python3 holds its own torch, so the carried
# wheels (pydantic, albumentations, MLflow's client and SQLite store, ...) go into that python3, none over a
# package it holds as new, and the repository goes on PYTHONPATH. Then, each step time-boxed
# and going on past a failed one, under one overall budget (GPU_BUDGET_S):
#   1. tests/test_compute.py: its GPU tests run only where torch sees a GPU;
#   2. the demo without DVC (absent there): the Fashion-MNIST export from the carried IDX files, then each
#      dvc.yaml stage's command in its order, on a copy of params.yaml with compute: cuda, bf16, compile;
#   3. bench/speed.py and bench/backbones.py on the GPU in bf16.
# $OUT gets summary.txt (versions, each step's exit status and wall seconds, the rounds table), the last
# lines of each step in checks.log, demo.log and bench.log, eval.json and the benchmarks' docs: 8 files, the
# most the device tool returns. GPU_STEPS picks steps for a rerun (default "tests demo speed backbones").
# GPU_DRYRUN=1: the install, the versions and an import and MLflow check only, for a machine without a GPU
# (there, PY names a python3 that stands in for the image's, WHEELS its wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1 TQDM_DISABLE=1  # no progress bars in the logs
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export PIPELINE_ID=gpu-$(date +%s)  # one MLflow parent run for all stages, as under one `dvc repro`
OUT=${OUT:-/tmp/gpu-out}
PY=${PY:-python3}
WHEELS=${WHEELS:-.whl}
IDX_DIR=${IDX_DIR:-$WHEELS/fashion-mnist}
BUDGET=${GPU_BUDGET_S:-470}  # seconds for the whole script: a lease is 15 minutes, start and a rerun included
mkdir -p "$OUT"
SUMMARY=$OUT/summary.txt
START=$EPOCHREALTIME

# step NAME LIMIT_S LOG CMD...: run CMD, at most LIMIT_S seconds and never past the budget; its output's last
# lines go to $OUT/LOG; a line with its exit status and seconds to the summary. Returns CMD's status.
step() {
  local name=$1 limit=$2 log=$OUT/$3 rc=0 t0=$EPOCHREALTIME
  shift 3
  local left
  left=$(awk -v s="$START" -v n="$EPOCHREALTIME" -v b="$BUDGET" 'BEGIN {printf "%d", b - (n - s)}')
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    printf '%-20s skipped: the budget (%ss) is spent\n' "$name" "$BUDGET" | tee -a "$SUMMARY"
    return 124
  fi
  local tmp
  tmp=$(mktemp)
  timeout -k 10 "$limit" "$@" >"$tmp" 2>&1 || rc=$?
  { echo "=== $name: $* (exit $rc)"; tail -n 120 "$tmp"; } >>"$log"
  tail -n 4 "$tmp"
  rm -f "$tmp"
  local note=""
  ((rc == 124 || rc == 137)) && note=" (stopped at ${limit}s)"
  awk -v n="$name" -v rc="$rc" -v a="$t0" -v b="$EPOCHREALTIME" -v note="$note" \
    'BEGIN {printf "%-20s exit %-3d %7.1f s%s\n", n, rc, b - a, note}' | tee -a "$SUMMARY"
  return "$rc"
}

: >"$SUMMARY"
# The carried wheels into the image's python3 (no index there), each as "name>=its version": a package the
# image holds as new already (typing-extensions, say) stays as it is, like its torch, numpy, pandas...
wanted=()
for wheel in "$WHEELS"/*.whl; do
  IFS=- read -r name version _ <<<"${wheel##*/}"
  wanted+=("$name>=$version")
done
step install 120 checks.log "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps --no-compile \
  --root-user-action=ignore "${wanted[@]}" || { echo "the install failed: see $OUT/checks.log"; exit 1; }

{
  echo "--- versions"
  command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" - <<'EOF'
import platform, torch, torchvision, pydantic, albumentations, mlflow, sqlalchemy
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"torchvision {torchvision.__version__}, {gpu}")
print(f"pydantic {pydantic.VERSION}, albumentations {albumentations.__version__}, "
      f"mlflow {mlflow.__version__}, sqlalchemy {sqlalchemy.__version__}")
EOF
} 2>&1 | tee -a "$SUMMARY"

# Every pipeline module imports (a missing wheel shows here, in seconds, rather than in a stage).
step imports 120 checks.log "$PY" -c "
import importlib, pkgutil, pipeline, mlflow.pytorch, mlflow.store.tracking.sqlalchemy_store
for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.'):
    importlib.import_module(m.name)
print('every pipeline module imports')"

if [[ ${GPU_DRYRUN:-0} == 1 ]]; then
  # MLflow as the stages use it, on a throwaway SQLite store: a model logged, registered and loaded back.
  tmp=$(mktemp -d)
  step mlflow 180 checks.log env MLFLOW_TRACKING_URI="sqlite:///$tmp/mlflow.db" DRYRUN_DIR="$tmp" "$PY" -c "
import os, mlflow, numpy as np, torch
from pipeline.serving import load_registered
from pipeline.tracking import StageRun, register_model
art = 'file://' + os.environ['DRYRUN_DIR'] + '/mlartifacts'
mlflow.set_experiment(experiment_id=mlflow.create_experiment('dryrun', artifact_location=art))
with mlflow.start_run() as run:
    mlflow.log_params({'compute.device': 'cuda'})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    meta = {'classes': ['a', 'b'], 'image_size': 2, 'channels': 1}
    uri = StageRun(run.info.run_id, {}, None, 0).log_model(model, np.zeros((1, 1, 2, 2), np.float32), meta)
print('registered version', register_model(uri, 'dryrun', 'final', {'round': 'r1'}))
loaded, meta = load_registered('dryrun@final')
print('loaded back:', type(loaded).__name__, meta)"
  rm -rf "$tmp"
  echo "dry run: done ($OUT)"
  exit 0
fi

want() { [[ " ${GPU_STEPS:-tests demo speed backbones} " == *" $1 "* ]]; }  # e.g. GPU_STEPS=speed

# 1. The GPU tests (tests/test_compute.py's @GPU tests; the file's CPU tests run too, as in CI).
want tests && step tests 150 checks.log "$PY" -m pytest -q -p no:cacheprovider tests/test_compute.py

# 2. The demo, stage by stage in dvc.yaml's order, on params.yaml with the GPU's compute settings.
params=bench_out/gpu/params.yaml
mkdir -p "$(dirname "$params")"
"$PY" - "$params" <<'EOF2'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
params["compute"].update(device="cuda", precision="bf16", compile=True)
open(sys.argv[1], "w").write(yaml.safe_dump(params, sort_keys=False))
EOF2
demo=ok
stage() {  # stage NAME LIMIT_S [--round R]: one dvc.yaml stage, unless an earlier one failed
  local name=$1 limit=$2
  shift 2
  if [[ $demo != ok ]]; then
    printf '%-20s skipped: an earlier stage failed\n' "$name${1:+ $2}" | tee -a "$SUMMARY"
    return
  fi
  step "$name${1:+ $2}" "$limit" demo.log "$PY" "stages/$name.py" --params "$params" "$@" || demo=failed
}
if want demo || { want speed && [[ ! -f prepared/manifest.parquet ]]; }; then  # speed reads prepare's store
  if [[ ! -d data/labeled ]]; then  # data/ is git-ignored: exported here, from the carried IDX files
    step demo-data 90 demo.log "$PY" -m pipeline demo-data --out data --idx-dir "$IDX_DIR" || demo=failed
  fi
  stage prepare 60
fi
if want demo; then
  stage pretrain 150
  stage teacher 150
  for r in $("$PY" -c 'import sys, yaml; print(*yaml.safe_load(open(sys.argv[1]))["rounds"])' "$params"); do
    stage pseudolabel 45 --round "$r"
    stage student 90 --round "$r"
  done
  stage evaluate 60
  if [[ $demo == ok ]]; then
    cp metrics/eval.json "$OUT/eval.json"
    "$PY" -m pipeline summary --params "$params" 2>&1 | tee -a "$SUMMARY"
  fi
fi

# 3. Speed on the GPU: the pipeline's loops against bare ones, then every backbone (compiled).
want speed && step speed 120 bench.log "$PY" bench/speed.py --device cuda --precision bf16 --steps 20 \
  --infer 5000 --doc "$OUT/speed_gpu.md"
if want backbones; then
  step backbones 150 bench.log "$PY" bench/backbones.py --device cuda --precision bf16 --compile --steps 20 \
    --labeled 64 --unlabeled 448 --doc docs/backbones_gpu.md
  cp docs/backbones_gpu.md docs/backbones_cuda.json "$OUT/" 2>/dev/null
fi

awk -v s="$START" -v n="$EPOCHREALTIME" 'BEGIN {printf "total %.0f s\n", n - s}' | tee -a "$SUMMARY"
