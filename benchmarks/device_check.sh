#!/usr/bin/env bash
# Every GPU figure issues 4 and 5 ask for, on a lent H100/H200 (steps 1, 2, 4, 5 took 5 minutes on an H200):
#   1. Grad-CAM + Faith: pytorch-grad-cam one by one and batched (64, fp32) vs the fused bf16 engine, at 224 px,
#      the engine with and without its CUDA graphs (CAM_ARCHS: other architectures than ARCHS); SEARCH_ARCHS=a,b
#      repeats it for those with cuDNN's kernel search, COMPILE_ARCHS=a,b with the trunk through torch.compile
#      too (precompute --compile; compiling takes about a minute per model, so give CAP1 room); WIDER=128,192
#      adds the engine at those batch sizes (what the three edits' one wide pass in precompute is worth);
#   2. bare training steps (batch 32, 224 px) per architecture: eager vs replayed from CUDA graphs, the first
#      step's time (cuDNN's kernel search), and how busy the GPU is (torch.profiler);
#   3. the same with cuDNN's heuristics instead of its search (NOBENCH=1 also trains step 4 so);
#   4. the paper protocol through the real training (5 architectures, 1 seed, ~714 images at 224 px): EPOCHS
#      epochs each (default 3), projected to PROJECT (default 50) from the first epoch (cuDNN's kernel search,
#      the graphs' recording) and the later ones' rate; EPOCHS=50 PROJECT= runs the whole protocol;
#      COMPILE=1 trains through torch.compile (`train --compile`) instead of graphs;
#   5. end-to-end precompute with those checkpoints on a larger phantom set, beside the engine's rate for each;
#      PROFILE_ARCHS=a,b runs it again for those under torch.profiler (operators by device and host time).
# Prepare here:   bash benchmarks/device_deps.sh
# Device call:    run(command="STEPS=1,2,4,5 bash benchmarks/device_check.sh", carry=[".gpudeps"], timeout_s=560)
#                 (all five steps' caps add up to more than one 10-minute call; STEPS=3 can follow on the warm machine,
#                 whose .gpuwork/ stays there). What issues 4 and 5 still need, in two calls on one machine:
#                 STEPS=4,5 EPOCHS=50 PROJECT= CAP4=400 CAP5=150   (the whole 50-epoch protocol, then end to end on
#                 its checkpoints; on an H200 the four CNNs took 213 s, ViT-B/16 over a minute), then
#                 STEPS=1,3 CAM_ARCHS=densenet161,resnet50 COMPILE_ARCHS=densenet161 WIDER=192 CAP1=240
#                 (DenseNet-161's engine, 4.5x of the 5x target on an H200, compiled; wider batches; training
#                 steps with cuDNN's heuristics, as its kernel search took 11-29 s of each CNN's first epoch)
#                 Still open after the tenth session (H200): ViT-B/16's end to end is 0.27x of its engine, with both
#                 the host and the device near 60 ms a batch where 4 passes should take ~32 ms. Diagnose with
#                 STEPS=4,5 EPOCHS=1 ARCHS=resnet50,vit_base_patch16_224 E2E_PATIENTS=300 PROFILE_ARCHS=vit_base_patch16_224
#                 (about 3 minutes; the cam/metric columns split the host's time, the device's own ms per batch
#                 (timing events) say which side sets the pace, the profile names the operators). On the CPU, ViT-B/16
#                 queues 432 operators a batch outside its graphed blocks, ResNet-50 321: launching alone cannot
#                 account for ViT's extra ~33 ms of host time, so look for a wait inside a CUDA call (allocator, queue):
#                 step 5 now prints the allocator's cudaMalloc/cudaFree counts over the steady batches (any at all
#                 there stall the host until the device drains, which would explain host and device both at ~60 ms).
# CPU dry run:    DEV=cpu IMG=32 EPOCHS=2 N=16 PATIENTS=12 E2E_PATIENTS=20 ARCHS=resnet10t,tinynet_e \
#                 PY=.venv/bin/python bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${DEV:-cuda} IMG=${IMG:-224} EPOCHS=${EPOCHS:-3} N=${N:-512} PY=${PY:-python3} STEPS=${STEPS:-1,2,3,4,5}
PATIENTS=${PATIENTS:-119} E2E_PATIENTS=${E2E_PATIENTS:-500} PROJECT=${PROJECT-50}
# Caps per step (s), so one slow step cannot starve the next inside a 10-minute device call.
CAP1=${CAP1:-110} CAP2=${CAP2:-120} CAP3=${CAP3:-60} CAP4=${CAP4:-200} CAP5=${CAP5:-120}
BARE_STEPS=${BARE_STEPS:-10}
ARCHS=${ARCHS:-resnet50,resnet101,densenet161,efficientnet_b0,vit_base_patch16_224} CAM_ARCHS=${CAM_ARCHS:-}
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
  want 4 && { phantoms "$PATIENTS" "$WORK/ph" > "$WORK/ph.log" 2>&1 & PH=$!; }
  want 5 && { phantoms "$E2E_PATIENTS" "$WORK/ph-e2e" > "$WORK/ph-e2e.log" 2>&1 & PH_E2E=$!; }
  if want 1; then
    step "1. Grad-CAM + Faith, images/s"
    timeout "$CAP1" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --n "$N" --batch-size 64 --archs "${CAM_ARCHS:-$ARCHS}" \
        ${WIDER:+--wider "$WIDER"}
    if [ -n "${SEARCH_ARCHS:-}" ]; then  # the same with cuDNN's per-shape kernel search, in a fresh process
      timeout "$CAP1" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --n "$N" --batch-size 64 \
          --archs "$SEARCH_ARCHS" --cudnn-benchmark
    fi
    if [ -n "${COMPILE_ARCHS:-}" ]; then  # DenseNet-161's memory-bound norms, ReLUs and concatenations, fused
      timeout "$CAP1" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --n "$N" --batch-size 64 \
          --archs "$COMPILE_ARCHS" --compile
    fi
  fi
  if want 2; then
    step "2. bare training steps, eager vs CUDA graphs"
    timeout "$CAP2" $PY benchmarks/train_speed.py --device "$DEV" --img-size "$IMG" --steps "$BARE_STEPS" --archs "$ARCHS"
  fi
  if want 3; then  # a fresh process: cuDNN keeps the kernels it searched for, heuristics or not
    step "3. bare training steps, cuDNN heuristics (no kernel search)"
    timeout "$CAP3" $PY benchmarks/train_speed.py --device "$DEV" --img-size "$IMG" --steps "$BARE_STEPS" --archs "$ARCHS" \
        --no-benchmark
  fi
  if want 4; then
    step "4. paper protocol, real training"
    [ -n "$PH" ] && wait "$PH"; cat "$WORK/ph.log" 2>/dev/null
    phantoms "$PATIENTS" "$WORK/ph" || exit 1
    rm -rf "$WORK/ck"
    timeout "$CAP4" $PY benchmarks/train_speed.py --protocol "$WORK/ph" --checkpoints "$WORK/ck" --device "$DEV" --img-size "$IMG" \
        --epochs "$EPOCHS" --archs "$ARCHS" ${PROJECT:+--project "$PROJECT"} ${COMPILE:+--compile} ${NOBENCH:+--no-benchmark}
  fi
  if want 5; then
    step "5. end-to-end precompute"
    [ -n "$PH_E2E" ] && wait "$PH_E2E"; cat "$WORK/ph-e2e.log" 2>/dev/null
    phantoms "$E2E_PATIENTS" "$WORK/ph-e2e" || exit 1
    timeout "$CAP5" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --archs "" --batch-size 64 --e2e "$WORK/ph-e2e" "$WORK/ck"
    if [ -n "${PROFILE_ARCHS:-}" ]; then  # the same again under torch.profiler, for these only: where the time goes
      timeout "$CAP5" $PY benchmarks/cam_speed.py --device "$DEV" --img-size "$IMG" --archs "" --batch-size 64 \
          --e2e "$WORK/ph-e2e" "$WORK/ck" --e2e-archs "$PROFILE_ARCHS" --profile
    fi
  fi
  step done
} 2>&1 | tee -a "$LOGDIR/device_check.log"
