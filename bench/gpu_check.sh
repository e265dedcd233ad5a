#!/usr/bin/env bash
# The GPU check of the fast configuration, in two runs of under 10 minutes each, from the checkout's root.
#
# Needs: the project installed with a CUDA build of torch, as the README's GPU section says
# (`pip install -e .` takes torch from PyPI, a CUDA build on Linux x86-64; for another CUDA version install torch
# from PyTorch's index first), and a clean working tree: the result JSONs record the commit (see bench/README.md).
#
#   bench/gpu_check.sh learn [SECONDS] [N_ENVS]  trained from scratch (default 480 s, at most 600; 64 envs),
#                                                then 10 full games at epsilon 0.05 (breakout-sb3 evaluate) and
#                                                the plot (~10 min)
#   bench/gpu_check.sh bench [N_ENVS ...]        throughput, vanilla and fast (default 16 64 128 envs), each
#                                                precision and layout variant (~3 min)
#   bench/gpu_check.sh --cpu-smoke               both, tiny, on the CPU: that the check runs, before renting a GPU
#                                                (~5 min on 2 cores; its JSONs are marked -dirty on a dirty tree)
#
# Everything it writes goes to $OUT (default logs/gpu_check, git-ignored): learning_<gpu>.json, learning_run.png,
# learn.log and the run folder learning_run/ for `learn`; throughput_<gpu>.json and bench.log for `bench`. To keep a
# result, copy its JSON into bench/results/ and the PNG into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: bench/gpu_check.sh learn [SECONDS] [N_ENVS] | bench [N_ENVS ...] | --cpu-smoke}
shift
OUT=${OUT:-logs/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$MODE" = "--cpu-smoke" ]; then
  DEVICE=cpu
  EXTRA=(--allow-dirty)
else
  DEVICE=cuda
  EXTRA=()
  nvidia-smi -L || true
fi
"$PY" -c "import sys, torch, ale_py, stable_baselines3, breakout_sb3.fast
print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      'sb3', stable_baselines3.__version__, 'ale-py', ale_py.__version__)
if sys.argv[1] == 'cuda' and not torch.cuda.is_available():
    sys.exit('bench/gpu_check.sh: error: torch ' + torch.__version__ + ' sees no CUDA device; install a CUDA build')
" "$DEVICE"
TAG=$("$PY" -c "import sys, torch; print('cpu' if sys.argv[1] == 'cpu' else
    torch.cuda.get_device_name().replace('NVIDIA ', '').split()[0].lower())" "$DEVICE")

learn() {  # SECONDS N_ENVS EPISODES
  local run="$OUT/learning_run"
  rm -rf "$run"
  "$PY" -m bench.learning_run --device "$DEVICE" --seconds "$1" --n-envs "$2" --episodes "$3" --out-dir "$run" \
    --json "$OUT/learning_$TAG.json" --plot "$OUT/learning_run.png" ${EXTRA[@]+"${EXTRA[@]}"} 2>&1 \
    | grep -v -e '^A.L.E' -e 'Powered by' | tee "$OUT/learn.log"
}

bench() {  # extra bench.throughput arguments
  "$PY" -m bench.throughput --device "$DEVICE" --json "$OUT/throughput_$TAG.json" ${EXTRA[@]+"${EXTRA[@]}"} "$@" 2>&1 \
    | grep -v -e '^A.L.E' -e 'Powered by' | tee "$OUT/bench.log"
}

case "$MODE" in
  learn)
    learn "${1:-480}" "${2:-64}" 10
    ;;
  bench)
    [ $# -gt 0 ] || set -- 16 64 128
    bench --n-envs "$@" --warmup 16384 --steps 65536 --vanilla-warmup 2048 --vanilla-steps 8192 \
      --variants contiguous channels-last bf16
    ;;
  --cpu-smoke)
    learn 60 4 1
    bench --n-envs 8 16 --warmup 64 --steps 256 --vanilla-warmup 32 --vanilla-steps 128 --ceiling-repeats 2 \
      --variants contiguous channels-last bf16
    ;;
  *)
    echo "bench/gpu_check.sh: error: unknown mode $MODE (learn, bench or --cpu-smoke)" >&2
    exit 2
    ;;
esac
ls -l "$OUT"
