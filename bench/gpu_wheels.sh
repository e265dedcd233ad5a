#!/usr/bin/env bash
# The Python packages this project needs beyond those of a GPU machine's PyTorch image (bench/device_sim lists what
# such an image has), as wheels for its Python 3.12 on x86-64, into .whl/ (git-ignored through .git/info/exclude):
# run once, on a machine with internet access, and copy .whl/ to the GPU machine along with the checkout;
# bench/gpu_check.sh installs them there. Versions: those of this checkout's virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PACKAGES=(
  ale-py==0.12.1 gymnasium==1.4.0 farama-notifications==0.0.6
  stable-baselines3==2.9.2 sb3-contrib==2.9.2 rl-zoo3==2.9.2 sb3-team-hf-integration==3.2 wasabi==1.1.3
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 zstandard==0.25.0
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLATFORMS[@]}" \
  -d .whl "${PACKAGES[@]}"
ls -l .whl
du -sh .whl
