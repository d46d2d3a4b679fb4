#!/usr/bin/env bash
# Every GPU figure issues 4 and 5 ask for, in one run on a lent H100/H200 (about 5-6 minutes):
#   1. Grad-CAM + Faith: pytorch-grad-cam one by one and batched (64, fp32) vs the fused bf16 engine, at 224 px;
#   2. the paper protocol through the real training (5 architectures, 1 seed, ~714 images at 224 px): EPOCHS
#      epochs each (default 6), projected to PROJECT (default 50) from the first epoch (cuDNN's kernel search)
#      and the later ones' rate; EPOCHS=50 PROJECT= runs the whole protocol (on an H200, 2026-11-26,
#      ResNet-50 took 67 s and ResNet-101 81 s, and DenseNet-161 alone needs about 220 s);
#      COMPILE=1 trains through torch.compile (`train --compile`), the next lever to measure;
#   3. end-to-end precompute with those checkpoints on a larger phantom set, beside the engine's rate for each.
# Prepare here:   bash benchmarks/device_deps.sh
# Device call:    run(command="bash benchmarks/device_check.sh", carry=[".gpudeps"], timeout_s=600)
#                 STEPS=1,2 then STEPS=3 splits it over two calls on the same warm machine (.gpuwork/ stays there).
# CPU dry run:    DEV=cpu IMG=32 EPOCHS=2 N=16 PATIENTS=12 E2E_PATIENTS=20 ARCHS=resnet10t,tinynet_e \
#                 PY=.venv/bin/python bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${DEV:-cuda} IMG=${IMG:-224} EPOCHS=${EPOCHS:-6} N=${N:-512} PY=${PY:-python3} STEPS=${STEPS:-1,2,3}
PATIENTS=${PATIENTS:-119} E2E_PATIENTS=${E2E_PATIENTS:-300} PROJECT=${PROJECT-50}
# Caps per step (s), so one slow step cannot starve the next inside a 10-minute device call.
CAP1=${CAP1:-110} CAP2=${CAP2:-320} CAP3=${CAP3:-140}
ARCHS=${ARCHS:-resnet50,resnet101,densenet161,efficientnet_b0,vit_base_patch16_224}
LOGDIR=${OUT:-.gpuwork}
WORK=.gpuwork
mkdir -p "$WORK" "$LOGDIR"
grep -qxF '/.gpuwork/' .git/info/exclude 2>/dev/null || echo '/.gpuwork/' >> .git/info/exclude
export PYTHONPATH="$PWD/.gpudeps:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
step() { echo; echo "== $* ($(date +%T))"; }
want() { [[ ",$STEPS," == *",$1,"* ]]; }
phantoms() {  # patients, folder: 10 slices each at 256 px, as IQ-OTH/NCCD's 1,190 slices are stored
  [ -f "$2/manifest.csv" ] || $PY -c "import sys; from pathlib import Path
from gradfaith_tui.data.phantom import PhantomConfig, write_dataset
print('phantoms:', write_dataset(PhantomConfig(n_patients=int(sys.argv[1]), slices_per_patient=10, size=256), Path(sys.argv[2])))" "$1" "$2"
}
{
  step "setup, steps $STEPS"
  nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, timm, pytorch_grad_cam; print('torch', torch.__version__, '· timm', timm.__version__)" || exit 1
  # The phantoms are drawn on the host's CPUs while step 1 keeps the GPU busy.
  PH=; PH_E2E=
  want 2 && { phantoms "$PATIENTS" "$WORK/ph" > "$WORK/ph.log" 2>&1 & PH=$!; }
  want 3 && { phantoms "$E2E_PATIENTS" "$WORK/ph-e2e" > "$WORK/ph-e2e.log" 2>&1 & PH_E2E=$!; }
  if want 1; then
    step "1. Grad-CAM + Faith, images/s"
    timeout "$CAP1" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --n "$N" --batch-size 64 --archs "$ARCHS"
  fi
  if want 2; then
    step "2. paper protocol, real training"
    [ -n "$PH" ] && wait "$PH"; cat "$WORK/ph.log" 2>/dev/null
    phantoms "$PATIENTS" "$WORK/ph" || exit 1
    rm -rf "$WORK/ck"
    timeout "$CAP2" $PY benchmarks/train_speed.py --protocol "$WORK/ph" --checkpoints "$WORK/ck" --device "$DEV" --img-size "$IMG" \
        --epochs "$EPOCHS" --archs "$ARCHS" ${PROJECT:+--project "$PROJECT"} ${COMPILE:+--compile}
  fi
  if want 3; then
    step "3. end-to-end precompute"
    [ -n "$PH_E2E" ] && wait "$PH_E2E"; cat "$WORK/ph-e2e.log" 2>/dev/null
    phantoms "$E2E_PATIENTS" "$WORK/ph-e2e" || exit 1
    timeout "$CAP3" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --archs "" --batch-size 64 --e2e "$WORK/ph-e2e" "$WORK/ck"
  fi
  step done
} 2>&1 | tee -a "$LOGDIR/device_check.log"
