#!/usr/bin/env bash
# Unpack vLLM's wheels for compare_helpers.py, outside the repository and outside any venv:
# vLLM pins its own torch, so it is never installed; its Python modules are imported from
# the unpacked wheel (compiled ops left out: the token-count helpers need none) with the
# few pure-Python packages they import at module level, installed --no-deps beside them.
#
#   bash benchmarks/comparison/setup_vllm.sh [DIR]      (default /work/vllm-target)
#
# then run compare_helpers.py with the --vllm arguments this prints.
set -euo pipefail
DIR=${1:-/work/vllm-target}
PIP=${PIP:-pip}
mkdir -p "$DIR/wheels"
unpack() {  # VERSION FOLDER
    "$PIP" download "vllm==$1" --no-deps -d "$DIR/wheels" -q
    mkdir -p "$DIR/$2"
    unzip -q -o "$DIR"/wheels/vllm-"$1"-*.whl -x '*.so' -d "$DIR/$2"
}
unpack 0.34.0 v34
unpack 0.19.1 v19
# what vllm.model_executor.models.{qwen2_vl,qwen2_5_vl,qwen3_vl,idefics3,smolvlm} import
# that the project's venv lacks (found by importing them one missing module at a time)
"$PIP" install -q --no-deps --target "$DIR/deps" pyzmq aiohttp multidict yarl propcache \
    aiohappyeyeballs aiosignal frozenlist cbor2 einops pybase64 msgspec cloudpickle uvloop \
    prometheus_client llguidance xgrammar apache-tvm-ffi==0.1.11
"$PIP" install -q --no-deps --target "$DIR/deps19" gguf
echo "--vllm 0.34.0=$DIR/v34:$DIR/deps --vllm 0.19.1=$DIR/v19:$DIR/deps19:$DIR/deps"
