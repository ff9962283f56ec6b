#!/usr/bin/env bash
# Every GPU measurement in one call of the device tool (carry `wheels`, made by bench/make_wheels.sh).
set -euo pipefail
python3 -m pip install --no-deps --no-index -q wheels/*.whl
export PYTHONPATH=$PWD
OUT=${OUT:-.bench_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
run() { name=$1; shift; python3 bench/stream_bench.py --chunks 12 "$@" --json "$OUT/$name.json" 2>&1 | grep -v "^W1" | tee "$OUT/$name.txt"; }
run base_eager_serial --warmup 2 --no-overlap
run base_compile_overlap --warmup 4 --compile
python3 bench/decode_bench.py 2>&1 | tee "$OUT/decode.txt"
