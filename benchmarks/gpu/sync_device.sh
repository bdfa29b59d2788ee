#!/bin/sh
# Copy what a device run needs into /work/main/.device (git-ignored, carried by `run`):
# the package, the benchmarks, the GPU tests and the model folders (config + processor
# files only, ~11 MB). Wheels for packages the device lacks are fetched separately into
# .device/wheels. Usage: benchmarks/gpu/sync_device.sh [worktree] [target]
set -eu
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
dst=${2:-/work/main/.device}
mkdir -p "$dst/models" "$dst/tests"
rm -rf "$dst/pytest_tokenguard" "$dst/benchmarks" "$dst/tests/gpu"
mkdir -p "$dst/benchmarks"
cp -r "$src/pytest_tokenguard" "$dst/"
# only the GPU harness: benchmarks/ also holds large CPU results the device does not need
cp -r "$src/benchmarks/__init__.py" "$src/benchmarks/gpu" "$dst/benchmarks/"
cp -r "$src/tests/gpu" "$dst/tests/gpu"
cp "$src/tests/__init__.py" "$src/tests/helpers.py" "$dst/tests/"
[ -d "$dst/models/HuggingFaceTB" ] || cp -r "${TOKENGUARD_MODELS_DIR:-/work/shared/models}/HuggingFaceTB" "$dst/models/"
printf '[pytest]\nmarkers =\n    gpu: needs a CUDA device\n' > "$dst/pytest.ini"
find "$dst" -name __pycache__ -prune -exec rm -rf {} +
du -sh "$dst"
