#!/usr/bin/env bash
# The vision study of docs/pretrained.md: a torchvision ResNet-18 trained in PyTorch on
# Fashion-MNIST (the "pre-trained model"), imported, evaluated per sub-model as sliced, then
# sorted-fine-tuned (SoFT) with a quarter of its training budget, against the same sorted grid
# trained from scratch with the pre-training + SoFT budget.
#
#   bash bench/pretrained_vision.sh [OUT_DIR] [SEED]          (all stages)
#   STAGES="scratch" bash bench/pretrained_vision.sh runs/pv 1  (some stages)
#   ARCH=mobilenet_v2 GRID='depth=9,13,17;width=0.5,1' bash bench/pretrained_vision.sh runs/pv-mb
#                                                               (another torchvision architecture)
#
# Budgets, in training examples (one forward + backward of one sub-model or of the full model):
#   pre-training  300 steps × batch 64                 = 19,200 (PyTorch, full model only)
#   SoFT           19 steps × 4 sub-models × batch 64  =  4,864 (a quarter of it)
#   scratch        94 steps × 4 sub-models × batch 64  = 24,064 (pre-training + SoFT)
set -euo pipefail
OUT=${1:-runs/pretrained-vision}
SEED=${2:-1}
STAGES=${STAGES:-"pretrain import sliced soft scratch"}
PY=${PYTHON:-/usr/bin/python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SN="node $ROOT/bin/sortednet.js"
ARCH=${ARCH:-resnet18}
GRID=${GRID:-'depth=4,6,8;width=0.5,1'}
DATA=(--train-subset 10000 --test-subset 2000)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has pretrain; then
  (cd "$ROOT/python" && "$PY" -m sortednet_torch.pretrain_vision --arch "$ARCH" --train-subset 10000 \
    --test-subset 2000 --steps 300 --batch-size 64 --lr 2e-3 --seed "$SEED" --mkldnn \
    --out "$OUT/$ARCH.safetensors")
fi
if has import; then
  $SN import --torchvision "$ARCH" --weights "$OUT/$ARCH.safetensors" --data fashion-mnist \
    --grid "$GRID" --test-subset 2000 --out "$OUT/imported"
fi
if has sliced; then
  $SN eval --run "$OUT/imported" # every sub-model sliced from the pre-trained weights, BN calibrated
fi
if has soft; then
  $SN train --init-from "$OUT/imported" --run "$OUT/soft" --strategy sorted --steps 19 --lr 1e-3 \
    --seed "$SEED" "${DATA[@]}"
fi
if has scratch; then
  # The same model and grid from random weights: the spec the import wrote, as a config file.
  node -e "const fs=require('fs'); const r=JSON.parse(fs.readFileSync('$OUT/imported/run.json','utf8')); fs.writeFileSync('$OUT/scratch.json', JSON.stringify({model:r.model, grid:r.grid}))"
  $SN train --config "$OUT/scratch.json" --data fashion-mnist --run "$OUT/scratch" --strategy sorted \
    --steps 94 --lr 2e-3 --seed "$SEED" "${DATA[@]}"
fi
