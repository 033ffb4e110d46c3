#!/usr/bin/env bash
# docs/results.md: on Fashion-MNIST, same model, same steps, sorted vs full-only vs sandwich over a
# 16-sub-model grid; then 160 sub-models trained at once. (Sorted vs individual, which needs an equal
# per-sub-model budget, is bench/equal_budget.sh.)
#   bash bench/sorted_experiments.sh [OUT=runs/exp]
set -euo pipefail
OUT=${1:-runs/exp}
STEPS=${STEPS:-250}
COMMON="--data fashion-mnist --model resnet-small --steps $STEPS --batch-size 32 --gacc 4 --test-subset 5000"
for s in sorted full-only sandwich; do
  [ -f "$OUT/$s/eval.json" ] || node bin/sortednet.js train --run "$OUT/$s" --strategy "$s" $COMMON
done
node bin/sortednet.js compare --runs "$OUT/sorted,$OUT/full-only,$OUT/sandwich" --out "$OUT/strategies.svg"
[ -f "$OUT/mlp160/eval.json" ] || node bin/sortednet.js train --run "$OUT/mlp160" --data fashion-mnist --model mlp-160 --steps 600 --batch-size 64 --gacc 4 --test-subset 5000
[ -f "$OUT/mlp-full/eval.json" ] || node bin/sortednet.js train --run "$OUT/mlp-full" --data fashion-mnist --model mlp-160 --strategy full-only --steps 600 --batch-size 64 --gacc 4 --test-subset 5000
node bin/sortednet.js compare --runs "$OUT/mlp160,$OUT/mlp-full" --out docs/fashion_160.svg
