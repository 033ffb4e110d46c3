#!/usr/bin/env bash
# Sorted fine-tuning (SoFT) of a language model, end to end (docs/pretrained.md, "Sorted fine-tuning
# of a language model"):
#   1. a LLaMA-style decoder with grouped-query attention, initialised as a Hugging Face folder by
#      the PyTorch package and pre-trained on `sotu` full-only (only the last exit trained);
#   2. written as a Hugging Face folder (LlamaForCausalLM) by the PyTorch package;
#   3. imported with `sortednet import --hf`;
#   4. sorted fine-tuning: every exit trained through the shared final norm and head;
#   5. control: the same fine-tuning budget spent on the full model only;
#   6. perplexity per exit, and self-speculative greedy decoding (draft = an early exit) against
#      KV-cached greedy, before and after SoFT.
# Usage: bench/pretrained_lm.sh [OUT_DIR]   (from the repository root, after `npm ci`)
# Env: PRE_STEPS (400), SOFT_STEPS (100), SOFT_WITH (torch: the PyTorch package, as measured in
#      docs/pretrained.md; cli: `sortednet train --init-from`), PYTHON (/usr/bin/python3, Debian's
#      python3-torch).
set -euo pipefail
OUT=${1:-runs/pretrained-lm}
PRE_STEPS=${PRE_STEPS:-400}
SOFT_STEPS=${SOFT_STEPS:-100}
PYTHON=${PYTHON:-/usr/bin/python3}
SOFT_WITH=${SOFT_WITH:-torch}
export PYTHONPATH=$PWD/python OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
CLI="node bin/sortednet.js"
mkdir -p "$OUT"
say() { echo "== $(date -u +%H:%M:%S) $* (load: $(cut -d' ' -f1-3 /proc/loadavg))"; }

say "tokenizer: byte-level BPE, 1024 tokens, trained on the sotu training split"
[ -f "$OUT/tokenizer.json" ] || node --input-type=module -e "
  const { loadTextCorpus, trainBpe } = await import('$PWD/dist/src/node.js');
  const tok = trainBpe(loadTextCorpus('sotu').train, { vocabSize: 1024 });
  (await import('node:fs')).writeFileSync('$OUT/tokenizer.json', tok.toHuggingFaceJson());"

say "model: LLaMA-style, 6 layers x d 96, 4 heads of 24 sharing 2 key/value heads, SwiGLU 256, context 64"
cat > "$OUT/model.json" <<JSON
{ "task": "lm", "arch": "llama", "vocab": 1024, "dim": 96, "heads": 4, "kvHeads": 2, "headDim": 24,
  "ffn": 256, "layers": 6, "maxLen": 64, "ropeBase": 10000, "normEps": 1e-6 }
JSON
rm -rf "$OUT/hf-init" "$OUT/pre" "$OUT/hf" "$OUT/imported" "$OUT/soft" "$OUT/full"
$PYTHON -m sortednet_torch.hf_export --new "$OUT/model.json" --tokenizer "$OUT/tokenizer.json" --seed 1 --out "$OUT/hf-init"

say "pre-training full-only in PyTorch: $PRE_STEPS steps x 32 windows of 64 tokens"
cat > "$OUT/pre.json" <<JSON
{ "train": { "strategy": "full-only", "steps": $PRE_STEPS, "batchSize": 32, "gAcc": 1, "warmupSteps": 30,
  "optimizer": { "kind": "adamw", "lr": 0.003, "weightDecay": 0.01 }, "checkpointEvery": 0, "seed": 1 } }
JSON
$PYTHON -m sortednet_torch.train --run "$OUT/pre" --init-from "$OUT/hf-init" --data sotu --config "$OUT/pre.json" --quiet

say "Hugging Face folder written by the PyTorch package, imported by sortednet"
$PYTHON -m sortednet_torch.hf_export --run "$OUT/pre" --out "$OUT/hf"
$CLI import --hf "$OUT/hf" --out "$OUT/imported"

say "perplexity per exit before SoFT"
node dist/bench/lm_exits.js --run "$OUT/imported" --windows 128 --out "$OUT/exits-before.json" | tee "$OUT/exits-before.txt"

say "sorted fine-tuning (every exit): $SOFT_STEPS steps x 2 exits x 32 windows"
cat > "$OUT/soft.json" <<JSON
{ "train": { "strategy": "sorted", "steps": $SOFT_STEPS, "batchSize": 32, "gAcc": 2, "warmupSteps": 10,
  "optimizer": { "kind": "adamw", "lr": 0.001, "weightDecay": 0.01 }, "checkpointEvery": 0, "seed": 1 } }
JSON
if [ "$SOFT_WITH" = cli ]; then
  $CLI train --init-from "$OUT/imported" --config "$OUT/soft.json" --run "$OUT/soft"
else
  $PYTHON -m sortednet_torch.train --run "$OUT/soft" --init-from "$OUT/imported" --config "$OUT/soft.json" --quiet
fi
echo "SoFT ran with: $SOFT_WITH"

say "perplexity per exit after SoFT"
node dist/bench/lm_exits.js --run "$OUT/soft" --windows 128 --out "$OUT/exits-after.json" | tee "$OUT/exits-after.txt"

say "control: the same budget spent on the full model only (full-only), in PyTorch"
$PYTHON -m sortednet_torch.train --run "$OUT/full" --init-from "$OUT/imported" --config "$OUT/soft.json" --strategy full-only --quiet
node dist/bench/lm_exits.js --run "$OUT/full" --windows 128 --out "$OUT/exits-full.json" | tee "$OUT/exits-full.txt"

for r in imported soft; do
  say "decoding speed, $r: KV-cached greedy vs self-speculative greedy (drafts: the first 1, 2, 3 layers)"
  node dist/bench/decode.js --run "$OUT/$r" --prompts 6 --tokens 40 --repeats 3 --draft-depths 1,2,3 \
    --greedy-only --early-exit "2:0.8" --prompt-tokens 16 --out "$OUT/decode-$r.json" | tee "$OUT/decode-$r.txt"
done
say "done"
