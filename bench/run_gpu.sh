#!/usr/bin/env bash
# GPU measurements through the device tool (carry `wheels`, made by bench/make_wheels.sh).
#   bash bench/run_gpu.sh                      # all, in priority order
#   bash bench/run_gpu.sh session stream       # a subset (one command has 10 minutes)
#   FlashAttention-4 (bench/make_wheels.sh flash4) takes two calls of one warm machine, back to back:
#   flash4-stage (carry .flash4/a), then flash4-install followed by any steps (carry .flash4/b); later calls
#   of that machine carry nothing
set -euo pipefail
[ ! -d wheels ] || python3 -m pip install --no-deps --no-index -q wheels/*.whl
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
# FlashAttention-4, once flash4-install put it there (CuTe DSL finds its packages through a .pth, which --target skips)
flash4_site() { [ ! -d .flash4_site ] || PYTHONPATH=$PWD/.flash4_site:$PWD/.flash4_site/nvidia_cutlass_dsl/dsl_packages:$PWD; }
flash4_site
OUT=${OUT:-.bench_out}
mkdir -p "$OUT"
STEPS=${*:-stream session decode}
clean() { grep -v "^\[transformers\]"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
for step in $STEPS; do
  case $step in
    stream)   # plain LongLive and Stream-T1 N=4 through the session path, side by side
      python3 bench/stream_bench.py --modes plain,scaled --chunks 6 --warmup 10 --rewards real --json "$OUT/stream.json" 2>&1 | clean | tee "$OUT/stream.txt" ;;
    fp8)      # bf16 speed, FP8 drift (each bf16 chunk's state re-run in FP8), then FP8 speed
      python3 bench/stream_bench.py --modes plain,scaled,scaled-fp8,plain-fp8 --chunks 6 --warmup 10 --drift 3 --progress --json "$OUT/fp8.json" 2>&1 | clean > "$OUT/fp8.txt"; grep -v "^  chunk" "$OUT/fp8.txt" | tail -25 ;;
    matmul)   # one FP8 Linear against bf16 at the transformer's sizes (quick)
      python3 bench/fp8_matmul_bench.py 2>&1 | tee "$OUT/matmul.txt" ;;
    reward)   # the reward models alone: eager vs compiled layers, group vs all-candidate batches
      python3 bench/reward_bench.py ${REWARD_ARGS:-} --json "$OUT/reward.json" 2>&1 | clean | tee "$OUT/reward.txt" ;;
    plain)    # plain LongLive alone (quick)
      python3 bench/stream_bench.py --modes plain --chunks 6 --warmup 10 --json "$OUT/plain.json" 2>&1 | clean | tee "$OUT/plain.txt" ;;
    session)  # overnight sessions: snapshots, continue start-up at head 40 and 400, disk per hour
      python3 bench/session_bench.py --heads 40,400 --every 40 --json "$OUT/session.json" 2>&1 | clean | tee "$OUT/session.txt" ;;
    parallel) # candidate-parallel Stream-T1 N=4 on 1, 2 and 4 GPUs of this machine, one after another
      n=$(nvidia-smi -L | wc -l)
      for g in ${PAR_GPUS:-1 2 4}; do
        [ "$g" -le "$n" ] || continue
        if [ "$g" = 1 ]; then launch=(python3); else launch=(python3 -m torch.distributed.run --standalone --nproc-per-node "$g"); fi
        timeout 280 "${launch[@]}" bench/parallel_bench.py --chunks ${PAR_CHUNKS:-8} --warmup 3 $PAR_ARGS --json "$OUT/parallel_$g$PAR_TAG.json" 2>&1 | clean > "$OUT/parallel_$g$PAR_TAG.txt"
        grep -v "^  chunk\|\*\*\*\|OMP_NUM" "$OUT/parallel_$g$PAR_TAG.txt"
      done ;;
    batch)    # prompt-parallel throughput: plain LongLive videos on 1 GPU, then on every GPU of this machine
      n=$(nvidia-smi -L | wc -l)
      timeout 250 python3 bench/batch_bench.py --videos ${BATCH_VIDEOS:-8} --chunks 10 --json "$OUT/batch_1.json" 2>&1 | clean | tee "$OUT/batch_1.txt" | grep -v "^rank"
      timeout 250 python3 -m torch.distributed.run --standalone --nproc-per-node "$n" bench/batch_bench.py --videos ${BATCH_VIDEOS:-8} --chunks 10 --json "$OUT/batch_$n.json" 2>&1 | clean | tee "$OUT/batch_$n.txt" | grep -v "^rank\|\*\*\*\|OMP_NUM" ;;
    flash4-stage)    # call 1 of 2 (carry .flash4/a): install its wheels, keep the first piece of CuTe DSL on this machine
      python3 -m pip install --no-deps --no-index -q .flash4/a/*.whl
      mkdir -p .flash4_staged && cp .flash4/a/part.* .flash4_staged/ && ls -l .flash4_staged ;;
    flash4-install)  # call 2 of 2 (carry .flash4/b): join the pieces, install FlashAttention-4 into .flash4_site
      cat .flash4_staged/part.* .flash4/b/part.* > /tmp/cutlass-dsl-libs.tar.xz
      echo "$(cat .flash4/b/cutlass-dsl-libs.sha256)  /tmp/cutlass-dsl-libs.tar.xz" | sha256sum -c -
      python3 -m pip install --no-deps --no-index -q .flash4/b/imageio_ffmpeg-*.whl
      python3 -m pip install --no-deps --no-index -q --target .flash4_site $(ls .flash4/b/*.whl | grep -v imageio_ffmpeg)
      tar -xJf /tmp/cutlass-dsl-libs.tar.xz -C .flash4_site  # the compiler wheel's files, as pip would place them
      flash4_site
      python3 -c "import flash_attn.cute, cutlass; print('flash_attn.cute', flash_attn.cute.__version__, 'cutlass', cutlass.__version__)" ;;
    attention)  # the transformer's attention alone: SDPA (cuDNN, flash) vs FlashAttention-4 at a chunk's shapes
      python3 bench/attention_bench.py --json "$OUT/attention.json" 2>&1 | tee "$OUT/attention.txt" ;;
    flash4-cap)  # Stream-T1 with the sink at its cap, SDPA vs FlashAttention-4 side by side, then profiled
      python3 bench/stream_bench.py --modes scaled,scaled-flash4 --full-sink --chunks 6 --warmup 10 --progress --profile 2 --json "$OUT/flash4_cap.json" 2>&1 | clean > "$OUT/flash4_cap.txt"
      grep -v "^  chunk" "$OUT/flash4_cap.txt" | grep -A12 "^ *recache\|^--- profile" ;;
    flash4)   # Stream-T1 with the sink at its cap, then plain LongLive, SDPA vs FlashAttention-4 side by side (~7 min;
              # FLASH4_MODES=scaled,scaled-flash4 for the cap alone)
      python3 bench/stream_bench.py --modes ${FLASH4_MODES:-scaled,scaled-flash4,plain,plain-flash4} --full-sink --chunks 4 --warmup 10 --progress --json "$OUT/flash4.json" 2>&1 | clean > "$OUT/flash4.txt"
      grep -v "^  chunk" "$OUT/flash4.txt" | tail -12 ;;
    decode)   # the VAE alone: cuDNN 3D convs vs 2D convs per time tap
      python3 bench/decode_bench.py --json "$OUT/decode.json" 2>&1 | clean | tee "$OUT/decode.txt" ;;
    *) echo "unknown step $step" >&2; exit 2 ;;
  esac
done
