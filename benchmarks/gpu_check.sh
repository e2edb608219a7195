#!/usr/bin/env bash
# The attack engine on a GPU machine as we can borrow one, without the federation, in under 5 minutes.
#
# Those machines have Python 3.12 with torch 2.11, torchvision 0.26, scikit-image and scipy; no flwr,
# no ray, no scikit-learn, nothing to download, at most 64 MiB brought along. The attack code needs
# none of the missing ones: the data set is faces (scikit-image's LFW subset), the project runs from
# its source tree. Printed, in one run: the device; Inverting Gradients on K = 1, 16, 256 updates,
# batched and compiled (CUDA graphs), with the GPU's busy share; one `auto` round on 16 updates
# (attack seconds per update, its worst case beside each attack alone).
#
#   bash benchmarks/gpu_check.sh              # DEVICE=cpu KS="1 4" ITERATIONS=10: a dry run on a CPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD:$PWD/benchmarks"
DEVICE="${DEVICE:-cuda}"
ITERATIONS="${ITERATIONS:-200}"
KS="${KS:-1 16 256}"
python - <<'PY'
import sys, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {gpu}")
PY
# shellcheck disable=SC2086  # KS is a list of numbers
timeout 140 python benchmarks/attack_throughput.py --dataset faces --devices "$DEVICE" --ks $KS \
    --modes batched compiled --iterations "$ITERATIONS"
timeout 140 python benchmarks/worst_case.py --datasets faces --clients 16 --iterations "$ITERATIONS" \
    --set attack.device="$DEVICE"
