#!/usr/bin/env bash
# Run HERE, before a GPU device call (README "On a GPU"): fills .whl/ (git-ignored) with what bench/gpu.sh
# needs on the GPU machine and cannot fetch there, since it has no internet:
#   - the wheels of the packages our code imports at run time that its image lacks (its own torch,
#     torchvision, numpy, pandas, pyarrow, opencv, scipy, pyyaml, psutil, rich... are used as they are),
#     for its Python 3.12 on x86-64, at the versions of this checkout's .venv;
#   - .whl/fashion-mnist/: the four Fashion-MNIST IDX files the demo data is exported from (the image has
#     no Debian dataset package), about 31 MB.
# The device call then names `.whl` in `carry` (the working tree and it travel together, 64 MiB at most).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/pip}               # whose installed versions the wheels pin
PYTHON_VERSION=${PYTHON_VERSION:-3.12}  # the GPU machine's python3; another value only for a local check
DEST=${DEST:-.whl}
IDX_DIR=${IDX_DIR:-/usr/share/datasets/fashion-mnist}

# Installed with --no-deps there, so each package's own needs are listed too, less what the image has.
# mlflow-skinny holds all of MLflow's Python code (the SQLite tracking store and model registry,
# mlflow.pytorch); the full `mlflow` adds the UI's JavaScript (~30 MB) and server extras we never run there,
# and mlflow-tracing (which it requires) only files that mlflow-skinny holds too.
NAMES=(
  pydantic pydantic-core annotated-types typing-inspection              # pipeline/config
  albumentations albucore simsimd stringzilla                            # views, weak augmentation
  mlflow-skinny opentelemetry-api opentelemetry-sdk opentelemetry-proto  # tracking, registry, log_model
  opentelemetry-semantic-conventions cachetools importlib-metadata sqlparse
  sqlalchemy alembic mako cryptography cffi pycparser                    # mlflow's SQLite store
  fastapi starlette databricks-sdk       # `import mlflow` imports them (mlflow.gateway, mlflow.genai)
  typing-extensions                      # pydantic 2.14 needs >= 4.16: newer than torch's image may hold
)

versions=$("$PIP" freeze --all 2>/dev/null)
pins=()
for name in "${NAMES[@]}"; do
  # freeze spells names its own way (SQLAlchemy, pydantic_core): compare them normalised (PEP 503)
  line=$(awk -F'==' -v n="$name" '{k=tolower($1); gsub(/[_.]/, "-", k)} k==n {print; exit}' <<<"$versions")
  [[ -n $line ]] || { echo "error: $name is not installed in $PIP's environment" >&2; exit 1; }
  pins+=("$line")
done

rm -rf "$DEST" && mkdir -p "$DEST"
# pip matches manylinux_2_N tags exactly, so each N is named. None above 2_28: the image's torch is a
# manylinux_2_28 wheel, so its glibc is at least 2.28, and nothing newer is known of it.
platforms=()
for n in 1 2010 2014 _2_17 _2_24 _2_27 _2_28; do
  platforms+=(--platform "manylinux${n}_x86_64")
done
# (this machine's pip.conf adds local file:// indexes that lack most of these: their warnings are dropped)
"$PIP" download -q --no-deps --only-binary=:all: --implementation cp --python-version "$PYTHON_VERSION" \
  "${platforms[@]}" -d "$DEST" "${pins[@]}" 2> >(grep -v "is neither a file nor a directory" >&2)

mkdir -p "$DEST/fashion-mnist"
cp "$IDX_DIR"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$DEST/fashion-mnist/"

ls -s --block-size=K "$DEST"/*.whl | sed "s|$DEST/||"
# What travels (tracked and untracked-not-ignored files, and the carried .whl/) must stay under 64 MiB.
bytes() { du -cb --files0-from=- 2>/dev/null | tail -n 1 | cut -f 1; }
wheels=$(printf '%s\0' "$DEST"/*.whl | bytes)
idx=$(printf '%s\0' "$DEST"/fashion-mnist/* | bytes)
tree=$({ git ls-files -z; git ls-files -z --others --exclude-standard; } | bytes)
awk -v w="$wheels" -v i="$idx" -v t="$tree" 'BEGIN {
  m = 1048576; printf "wheels %.1f MiB, IDX files %.1f MiB, working tree %.1f MiB: %.1f MiB travel\n",
    w / m, i / m, t / m, (w + i + t) / m; exit (w + i + t > 64 * m) }' ||
  { echo "error: over the device call's 64 MiB" >&2; exit 1; }
echo "The device call: carry [\".whl\"], command \"bash bench/gpu.sh\" (README: On a GPU)."
