#!/usr/bin/env bash
# The GPU check of the fast configuration, in two runs of under 10 minutes each. For a GPU machine without internet
# access, run bench/gpu_wheels.sh first on a machine with it and copy .whl/ along with the checkout.
#
#   bench/gpu_check.sh learn [SECONDS] [N_ENVS]  trained from scratch (default 480 s, at most 600; 64 envs),
#                                                then 10 full games at epsilon 0.05 (breakout-sb3 evaluate) and
#                                                the plot (~10 min)
#   bench/gpu_check.sh bench [N_ENVS ...]        throughput, vanilla and fast (default 16 64 128 envs) (~3 min)
#   bench/gpu_check.sh --cpu-smoke               both, tiny, on this machine's CPU, importing only what the GPU
#                                                machine has (bench/device_sim) (~5 min on 2 cores)
#
# Everything it writes goes to $OUT (default /tmp/gpu_check_out): learning_<gpu>.json, learning_run.png, learn.log,
# training_stats.csv, 0.monitor.csv, eval.json for `learn`; throughput_<gpu>.json, bench.log for `bench`. Then, in
# the checkout: copy the JSON into bench/results/ and the PNG into docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: bench/gpu_check.sh learn [SECONDS] [N_ENVS] | bench [N_ENVS ...] | --cpu-smoke}
shift
OUT=${OUT:-/tmp/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if [ "$MODE" = "--cpu-smoke" ]; then
  PY=${PYTHON:-python3}
  export PYTHONPATH="$PWD/bench/device_sim:$PWD" BREAKOUT_SB3_DEVICE_SIM=1
  DEVICE=cpu
else
  PY=python3
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site:$PWD"
  else
    export PYTHONPATH="$PWD"
  fi
  DEVICE=cuda
  nvidia-smi -L || true
fi
"$PY" -c "import torch, ale_py, gymnasium, stable_baselines3, rl_zoo3, breakout_sb3.fast, breakout_sb3.evaluate
print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      'sb3', stable_baselines3.__version__, 'ale-py', ale_py.__version__)"
TAG=$("$PY" -c "import sys, torch; print('cpu' if sys.argv[1] == 'cpu' else
    torch.cuda.get_device_name().replace('NVIDIA ', '').split()[0].lower())" "$DEVICE")

learn() {  # SECONDS N_ENVS EPISODES
  local run=/tmp/gpu_check_learning
  rm -rf "$run"
  "$PY" bench/learning_run.py --device "$DEVICE" --seconds "$1" --n-envs "$2" --episodes "$3" --out-dir "$run" \
    --json "$OUT/learning_$TAG.json" --plot "$OUT/learning_run.png" 2>&1 | grep -v -e '^A.L.E' -e 'Powered by' \
    | tee "$OUT/learn.log"
  cp "$run/training_stats.csv" "$run/0.monitor.csv" "$run/eval.json" "$OUT/"
}

bench() {  # extra throughput.py arguments
  "$PY" bench/throughput.py --device "$DEVICE" --json "$OUT/throughput_$TAG.json" "$@" 2>&1 \
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
    echo "unknown mode $MODE" >&2
    exit 2
    ;;
esac
ls -l "$OUT"
