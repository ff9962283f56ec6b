#!/usr/bin/env bash
# Every GPU measurement in one call of the device tool (carry `wheels`, made by bench/make_wheels.sh).
#   bash bench/run_gpu.sh                      # all, in priority order
#   bash bench/run_gpu.sh decode stream tts    # a subset (when device time is short)
set -euo pipefail
python3 -m pip install --no-deps --no-index -q wheels/*.whl
export PYTHONPATH=$PWD
OUT=${OUT:-.bench_out}
mkdir -p "$OUT"
STEPS=${*:-decode stream tts eager session}
clean() { grep -v "^\[transformers\]"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for step in $STEPS; do
  case $step in
    decode)  # the VAE alone: cuDNN 3D convs vs 2D convs per time tap
      python3 bench/decode_bench.py --json "$OUT/decode.json" 2>&1 | clean | tee "$OUT/decode.txt" ;;
    stream)  # base streaming (issue 2): compiled blocks + overlapped decode
      python3 bench/stream_bench.py --chunks 12 --warmup 4 --compile --json "$OUT/base_compiled.json" 2>&1 | clean | tee "$OUT/base_compiled.txt" ;;
    tts)     # Stream-T1 N=4 vs plain LongLive, same models, same process (issue 3)
      python3 bench/tts_bench.py --chunks 10 --warmup 3 --rewards real --json "$OUT/tts.json" 2>&1 | clean | tee "$OUT/tts.txt" ;;
    eager)   # the eager, serial-decode baseline of issue 2's table
      python3 bench/stream_bench.py --chunks 12 --warmup 2 --no-overlap --json "$OUT/base_eager.json" 2>&1 | clean | tee "$OUT/base_eager.txt" ;;
    session) # sessions at real size: disk, commit overlap, replay cost and exactness (issue 4)
      python3 bench/session_bench.py --chunks 6 --dir /tmp/bench_session 2>&1 | clean | tee "$OUT/session.txt" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
