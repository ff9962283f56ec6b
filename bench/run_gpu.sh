#!/usr/bin/env bash
# Every GPU measurement in one call of the device tool (carry `wheels`, made by bench/make_wheels.sh).
set -euo pipefail
python3 -m pip install --no-deps --no-index -q wheels/*.whl
export PYTHONPATH=$PWD
OUT=${OUT:-.bench_out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 bench/decode_bench.py 2>&1 | tee "$OUT/decode.txt"
python3 bench/stream_bench.py --chunks 12 --warmup 2 --json "$OUT/stream_eager.json" 2>&1 | tee "$OUT/stream_eager.txt"
python3 bench/stream_bench.py --chunks 12 --warmup 3 --compile --json "$OUT/stream_compile.json" 2>&1 | tee "$OUT/stream_compile.txt"
