#!/usr/bin/env bash
# Sorted vs individual at an EQUAL per-sub-model budget (docs/results.md): Fashion-MNIST, the
# resnet-small preset at full depth with 4 widths. Sorted draws gAcc=4 of the 4 sub-models per step,
# so over STEPS steps each sub-model sees STEPS batches on average; individual trains each sub-model
# alone for STEPS steps of one batch (gAcc 1): the same batches per sub-model, the same total work.
#   bash bench/equal_budget.sh [OUT=runs/equal-budget]   (defaults: SEEDS="1 2" STEPS=400 BATCH=64)
set -euo pipefail
OUT=${1:-runs/equal-budget}
STEPS=${STEPS:-400}
SEEDS=${SEEDS:-"1 2"}
mkdir -p "$OUT"
echo '{"grid": {"depth": [6], "width": [0.25, 0.5, 0.75, 1]}}' > "$OUT/grid.json"
COMMON="--data fashion-mnist --model resnet-small --config $OUT/grid.json --steps $STEPS --batch-size ${BATCH:-64}"
for seed in $SEEDS; do
  [ -f "$OUT/sorted-$seed/eval.json" ] || node bin/sortednet.js train --run "$OUT/sorted-$seed" --strategy sorted --gacc 4 --seed "$seed" $COMMON
  [ -f "$OUT/individual-$seed/eval.json" ] || node bin/sortednet.js train --run "$OUT/individual-$seed" --strategy individual --gacc 1 --seed "$seed" $COMMON
  node bin/sortednet.js compare --runs "$OUT/sorted-$seed,$OUT/individual-$seed" --out "$OUT/compare-$seed.svg"
done
