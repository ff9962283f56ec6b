#!/usr/bin/env bash
# Every GPU measurement in one call of the device tool (carry `wheels`, made by bench/make_wheels.sh).
set -euo pipefail
python3 -m pip install --no-deps --no-index -q wheels/*.whl
export PYTHONPATH=$PWD
OUT=${OUT:-.bench_out}
mkdir -p "$OUT"
clean() { grep -v "^W1\|^\[transformers\]"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
# Base streaming (issue 2): eager + serial decode vs compiled + overlapped decode, and the VAE alone.
python3 bench/stream_bench.py --chunks 12 --warmup 2 --no-overlap --json "$OUT/base_eager.json" 2>&1 | clean | tee "$OUT/base_eager.txt"
python3 bench/stream_bench.py --chunks 12 --warmup 4 --compile --json "$OUT/base_compiled.json" 2>&1 | clean | tee "$OUT/base_compiled.txt"
python3 bench/decode_bench.py 2>&1 | clean | tee "$OUT/decode.txt"
# Stream-T1 N=4 vs plain LongLive, same models, same process (issue 3).
python3 bench/tts_bench.py --chunks 12 --warmup 4 --rewards real --json "$OUT/tts.json" 2>&1 | clean | tee "$OUT/tts.txt"
# Sessions at real size: disk, commit overlap, replay cost and exactness (issue 4).
python3 bench/session_bench.py --chunks 6 --dir /tmp/bench_session 2>&1 | clean | tee "$OUT/session.txt"
