#!/bin/sh
# Sorted training throughput of one run config three ways, on this machine's CPUs:
#   the TypeScript trainer (`sortednet train`), sortednet_torch.train in one process, and under
#   torchrun with N ranks (DDP, gloo). Prints samples/s over each run's steps (first step included).
# Usage (from the repository root, after `npm run build`):
#   sh python/benchmarks/scaleout.sh [STEPS] [RANKS]      # defaults 30 and 2
set -e
STEPS=${1:-30}
RANKS=${2:-2}
CORES=$(nproc)  # before OMP_NUM_THREADS is set below: nproc honours it
PY=/usr/bin/python3
OUT=$(mktemp -d)
cat > "$OUT/config.json" <<JSON
{ "model": "resnet-small", "data": { "name": "mnist" },
  "train": { "steps": $STEPS, "batchSize": 64, "gAcc": 4, "warmupSteps": 5, "seed": 1 } }
JSON
rate() { $PY -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1]) if '\"step\"' in l]; print(f\"{r[-1]['samplesPerSecond']:.0f}\")" "$1/log.jsonl"; }
node bin/sortednet.js train --run "$OUT/ts" --config "$OUT/config.json" --no-eval > /dev/null 2>&1
export PYTHONPATH="$PWD/python" OMP_NUM_THREADS=$(( CORES / RANKS > 0 ? CORES / RANKS : 1 ))
OMP_NUM_THREADS=$CORES $PY -m sortednet_torch.train --run "$OUT/py1" --config "$OUT/config.json" --calibrate-batches 0 --quiet
$PY -m sortednet_torch.torchrun --standalone --monitor_interval 0.1 --nproc_per_node "$RANKS" \
  -m sortednet_torch.train --run "$OUT/pyN" --config "$OUT/config.json" --calibrate-batches 0 --quiet 2> /dev/null
echo "resnet-small on MNIST, $STEPS steps x gAcc 4 x batch 64, $CORES CPU cores"
echo "| trainer | samples/s |"
echo "| --- | ---: |"
echo "| sortednet train (TypeScript, wasm + native addon) | $(rate "$OUT/ts") |"
echo "| sortednet_torch.train, 1 process | $(rate "$OUT/py1") |"
echo "| sortednet_torch.train, torchrun $RANKS ranks (DDP, gloo) | $(rate "$OUT/pyN") |"
rm -rf "$OUT"
