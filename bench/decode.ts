/**
 * Decoding speed of a trained sorted LM, every mode in ONE harness: the same prompts (windows of
 * the run's validation text), the same number of new tokens, a warm-up run of every mode first,
 * modes interleaved prompt by prompt within each repeat, and the median over repeats of new tokens per second of
 * decoding (prefill excluded, identical for all modes). The baseline is KV-cached greedy (and
 * KV-cached sampling for the sampling modes) of the full model. Batched greedy decodes all the
 * prompts as one batch (one forward per step) against greedy one prompt at a time. The table
 * gives the median and the spread (min–max over repeats), the median of the per-repeat ratios to the baseline
 * with their range, and the machine's load average.
 *
 *   node dist/bench/decode.js --run DIR [--prompts 8] [--prompt-tokens 32] [--tokens 64] [--repeats 3]
 *        [--draft-depths 1,2] [--k 4] [--confidence 0.5] [--width-draft ffn=0.5]
 *        [--early-exit '1:0.9,3:0.8;2:0.8'] [--calibrate 0.999,1] [--temperature 1 --top-k 50]
 *        [--out FILE.json] [--greedy-only] [--portable]
 *
 * The table of docs/lm.md, one command per model (after `npm run build`; each prints the
 * markdown table, the load average before and after, and a greedy sample):
 *
 *   sortednet train --model lm-tiny --data sotu --run runs/lm-tiny --steps 150
 *   node dist/bench/decode.js --run runs/lm-tiny --prompts 8 --tokens 32 --repeats 5 \
 *        --draft-depths 1,2 --confidence 0.3 --width-draft ffn=0.5 --calibrate 0.999,1
 *   sortednet train --model lm-small --data sotu --run runs/lm-small --steps 700 --checkpoint-every 50
 *   node dist/bench/decode.js --run runs/lm-small --prompts 8 --tokens 64 --repeats 5 \
 *        --draft-depths 1,2,3 --confidence 0.3 --width-draft ffn=0.5 --calibrate 0.999,1
 *
 * Without the addon (the path a browser takes):
 *
 *   node dist/bench/decode.js --run runs/lm-small --portable --greedy-only --draft-depths 1 \
 *        --prompts 4 --tokens 32 --repeats 3
 *
 * Timings are wall-clock: on a shared machine run it when `uptime` is low, or compare only rows
 * of one run (modes are interleaved, so a slow moment hits every mode).
 */
import { Option } from 'commander';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { initEngine } from '../src/engine/backend.js';
import { loadLm } from '../src/run/lm_run.js';
import { readRunJson } from '../src/run/run_folder.js';
import { loadTextCorpus } from '../src/data/text.js';
import { generate, type GenerateOptions, type GenerateResult } from '../src/infer/generate.js';
import { generateBatch } from '../src/infer/batch.js';
import { calibrateEarlyExit } from '../src/infer/calibrate.js';
import { parseSubModel, type SubModel } from '../src/sorted/submodel.js';
import { earlyExitArg, intArg, listArg, numArg, positiveIntArg } from '../src/cli/args.js';
import { keepTransposedOperands } from '../src/engine/kernels/batch_mat_mul_wasm.js';
import { benchCommand, parseBench } from './cli.js';

const a = parseBench<{
  run: string;
  prompts: number;
  promptTokens: number;
  tokens: number;
  repeats: number;
  draftDepths: number[];
  k: number;
  confidence?: number;
  widthDraft?: SubModel;
  earlyExit?: ReturnType<typeof earlyExitArg>[];
  calibrate?: number[];
  temperature: number;
  topK: number;
  out?: string;
  greedyOnly?: boolean;
  portable?: boolean;
}>(
  benchCommand('decode', 'decoding speed of a trained sorted LM, every mode in one harness')
    .requiredOption('--run <dir>', 'an LM run folder (required)')
    .option('--prompts <n>', 'prompts; also the batch size', positiveIntArg, 8)
    .option('--prompt-tokens <n>', 'tokens per prompt', positiveIntArg, 32)
    .option('--tokens <n>', 'new tokens per prompt', positiveIntArg, 64)
    .option('--repeats <n>', 'timed repeats (the median is reported)', positiveIntArg, 3)
    .addOption(
      new Option('--draft-depths <list>', 'draft depths of speculative decoding')
        .argParser(listArg(positiveIntArg))
        .default([1, 2], '1,2'),
    )
    .option('--k <n>', 'draft tokens per round', positiveIntArg, 4)
    .option(
      '--confidence <p>',
      'also: speculative greedy whose drafts end below this top probability',
      numArg,
    )
    .option(
      '--width-draft <spec>',
      'also: speculative greedy with this narrower draft, e.g. ffn=0.5',
      (v: string) => parseSubModel(v, '--width-draft'),
    )
    .option(
      '--early-exit <modes>',
      "early-exit modes, ';' between modes, DEPTH:THRESHOLD,… each (default: H:0.9;H:0.7;1:0.9,H:0.8, H = half the layers)",
      (v: string) => v.split(';').map(earlyExitArg),
    )
    .addOption(
      new Option(
        '--calibrate <agreements>',
        "also: early exit with thresholds calibrated for these agreements (e.g. 0.97,0.99) on the full model's greedy continuations of training-split prompts",
      ).argParser(listArg(numArg)),
    )
    .option('--temperature <t>', 'temperature of the sampling modes', numArg, 1)
    .option('--top-k <k>', 'top-k of the sampling modes', intArg, 50)
    .option('--out <file>', 'also write the results as JSON')
    .option('--greedy-only', 'only the single-sequence greedy modes (no batched greedy, no sampling)')
    .option(
      '--portable',
      'decode without the native addon (the wasm path of a browser), with one more row: greedy with the transposed weights copied every step instead of kept',
    ),
);
const { prompts: nPrompts, promptTokens, tokens: newTokens, repeats, k, draftDepths, temperature, topK } = a;

await initEngine('wasm', { native: !a.portable });
const { model, tokenizer } = await loadLm(a.run);
const L = model.config.layers;
const earlyExits = a.earlyExit ?? defaultEarlyExits(L).split(';').map(earlyExitArg);

function defaultEarlyExits(layers: number): string {
  const half = Math.max(1, Math.floor(layers / 2));
  // Two exits only when there is a depth between 1 and half.
  return [`${half}:0.9`, `${half}:0.7`, ...(half > 1 ? [`1:0.9,${half}:0.8`] : [])].join(';');
}

// Prompts: windows spread over the validation text, so every mode continues the same real text.
const corpus = loadTextCorpus(readRunJson(a.run).data.name);
// Calibration (CALM-style) on text the prompts do not come from: the training split.
const calibrated = (a.calibrate ?? []).map((agreement) => {
  const t0 = performance.now();
  const c = calibrateEarlyExit(model, tokenizer.encode(corpus.train.slice(0, 60).join('\n')), {
    agreement,
    windows: 64,
  });
  console.log(
    `calibrated for ${agreement}: ${c.exits.map((d, i) => `${d}:${c.thresholds[i]}`).join(',') || 'no exit'}; agreement ${c.agreement.toFixed(4)} on ${c.positions} positions, shares ${JSON.stringify(c.exitShare)}, estimated cost ${c.relativeCost.toFixed(2)} (${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  return { agreement, earlyExit: { exits: c.exits, thresholds: c.thresholds, measure: c.measure } };
});
const stream = tokenizer.encode(corpus.validation.join('\n'));
const stride = Math.floor((stream.length - promptTokens) / nPrompts);
const prompts = Array.from({ length: nPrompts }, (_, i) =>
  stream.slice(i * stride, i * stride + promptTokens),
);

interface Mode {
  name: string;
  group: 'greedy' | 'sampling';
  options: Omit<GenerateOptions, 'maxNewTokens' | 'onToken' | 'stopWhen'>;
  /** All prompts as one batch (one forward per step). */
  batched?: boolean;
  /** false: the portable matmul copies transposed weights every step (keepTransposedOperands). */
  keepTransposes?: boolean;
}
const sampling = { temperature, topK };
const allModes: Mode[] = [
  { name: 'greedy (KV cache, full depth)', group: 'greedy', options: { temperature: 0 } },
  ...(a.portable
    ? [
        {
          name: 'greedy, transposed weights copied every step',
          group: 'greedy',
          options: { temperature: 0 },
          keepTransposes: false,
        } as Mode,
      ]
    : []),
  ...earlyExits.map((e): Mode => ({
    name: `early exit ${e.exits.map((d, i) => `${d}:${e.thresholds[i]}`).join(',')}`,
    group: 'greedy',
    options: { temperature: 0, earlyExit: e },
  })),
  ...calibrated
    .filter((c) => c.earlyExit.exits.length > 0)
    .map((c): Mode => ({
      name: `early exit calibrated for ${100 * c.agreement} % (${c.earlyExit.measure} ${c.earlyExit.exits.map((d, i) => `${d}:${c.earlyExit.thresholds[i]}`).join(',')})`,
      group: 'greedy',
      options: { temperature: 0, earlyExit: c.earlyExit },
    })),
  ...draftDepths.map((d): Mode => ({
    name: `speculative greedy, draft depth ${d}, k ${k}`,
    group: 'greedy',
    options: { temperature: 0, speculative: { draftDepth: d, k } },
  })),
  ...(a.confidence === undefined
    ? []
    : draftDepths.map((d): Mode => ({
        name: `speculative greedy, draft depth ${d}, k ${k}, confidence ${a.confidence}`,
        group: 'greedy',
        options: { temperature: 0, speculative: { draftDepth: d, k, confidenceThreshold: a.confidence } },
      }))),
  ...(a.widthDraft === undefined
    ? []
    : [
        {
          name: `speculative greedy, draft ${JSON.stringify(a.widthDraft)}, k ${k}`,
          group: 'greedy',
          options: { temperature: 0, speculative: { draft: { ...a.widthDraft }, k } },
        } as Mode,
      ]),
  { name: `batched greedy (${nPrompts} prompts in one batch)`, group: 'greedy', options: {}, batched: true },
  {
    name: `sampling (T ${temperature}, top-k ${topK}, KV cache, full depth)`,
    group: 'sampling',
    options: { ...sampling },
  },
  ...draftDepths.map((d): Mode => ({
    name: `speculative sampling, draft depth ${d}, k ${k}`,
    group: 'sampling',
    options: { ...sampling, speculative: { draftDepth: d, k } },
  })),
];
const modes = a.greedyOnly ? allModes.filter((m) => m.group === 'greedy' && !m.batched) : allModes;

function run(m: Mode, prompt: number[], seed: number): GenerateResult {
  keepTransposedOperands(m.keepTransposes ?? true);
  try {
    return generate(model, prompt, { ...m.options, maxNewTokens: newTokens, seed });
  } finally {
    keepTransposedOperands(true);
  }
}

type Result = Pick<GenerateResult, 'tokens' | 'proposed' | 'accepted' | 'meanExitDepth'>[];

/** Batched greedy: all prompts as one batch; new tokens per second and the tokens. */
function batchedRun(m: Mode, seedBase: number): { tps: number; results: Result } {
  const b = generateBatch(model, prompts, { ...m.options, maxNewTokens: newTokens, seed: seedBase });
  return {
    tps: b.tokensPerSecond,
    results: b.sequences.map((s) => ({ tokens: s.tokens, proposed: 0, accepted: 0, meanExitDepth: L })),
  };
}

/**
 * One repeat of every mode. Interleaved per prompt: each prompt goes through every mode (in an order that
 * rotates with the prompt and the repeat) before the next prompt, so a slow moment of the machine, or of the
 * process (it has phases of a few seconds), falls on all modes alike instead of on the ones that ran then.
 * Batched modes run once, at a rotating point of the repeat.
 */
function repeatAll(r: number): Map<string, { tps: number; results: Result }> {
  const single = modes.filter((m) => !m.batched);
  const acc = new Map(single.map((m) => [m.name, { tokens: 0, ms: 0, results: [] as Result }]));
  const out = new Map<string, { tps: number; results: Result }>();
  const batchedAt = r % nPrompts;
  prompts.forEach((p, i) => {
    if (i === batchedAt)
      for (const m of modes.filter((x) => x.batched)) out.set(m.name, batchedRun(m, 1000 * r));
    const shift = (r * nPrompts + i) % single.length;
    for (const m of [...single.slice(shift), ...single.slice(0, shift)]) {
      const g = run(m, p, 1000 * r + i);
      const a = acc.get(m.name)!;
      a.tokens += g.tokens.length;
      a.ms += g.decodeMs;
      a.results[i] = g;
    }
  });
  for (const [name, a] of acc) out.set(name, { tps: (1000 * a.tokens) / a.ms, results: a.results });
  return out;
}

const loadBefore = loadavg();
console.log(
  `${a.run}: ${L} layers, vocab ${model.config.vocab}; ${nPrompts} prompts × ${promptTokens} tokens, ${newTokens} new tokens each, ${repeats} repeats (median), warm-up first; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`,
);
// Warm-up: every mode over every prompt once, untimed (kernels compiled, tables built, JIT warm).
repeatAll(0);

const perRepeat = new Map<string, number[]>(modes.map((m) => [m.name, []]));
const ratios = new Map<string, number[]>(modes.map((m) => [m.name, []]));
const last = new Map<string, Result>();
const samplingBaseName = modes.find((m) => m.group === 'sampling')?.name;
for (let r = 0; r < repeats; r++) {
  const got = repeatAll(r);
  for (const m of modes) {
    const { tps, results } = got.get(m.name)!;
    perRepeat.get(m.name)!.push(tps);
    last.set(m.name, results);
    // Against the baseline of the same repeat: the two ran side by side.
    const base = got.get(m.group === 'greedy' ? modes[0].name : samplingBaseName!)!.tps;
    ratios.get(m.name)!.push(tps / base);
  }
}
const loadAfter = loadavg();

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
const greedyRuns = last.get(modes[0].name)!;
const rows = modes.map((m) => {
  const rs = last.get(m.name)!;
  const tps = median(perRepeat.get(m.name)!);
  const proposed = rs.reduce((s, x) => s + x.proposed, 0);
  const agree =
    rs.reduce((s, x, i) => s + x.tokens.filter((t, j) => t === greedyRuns[i].tokens[j]).length, 0) /
    (nPrompts * newTokens);
  return {
    mode: m.name,
    tokensPerSecond: tps,
    // The median of the per-repeat ratios: each against the baseline run beside it.
    speedup: median(ratios.get(m.name)!),
    speedupRange: [Math.min(...ratios.get(m.name)!), Math.max(...ratios.get(m.name)!)],
    baseline: m.group === 'greedy' ? 'greedy' : 'sampling',
    meanExitDepth: rs.reduce((s, x) => s + x.meanExitDepth, 0) / rs.length,
    acceptance: proposed > 0 ? rs.reduce((s, x) => s + x.accepted, 0) / proposed : null,
    agreementWithGreedy: m.group === 'greedy' ? agree : null,
    identicalToGreedy:
      m.group === 'greedy' ? rs.every((x, i) => x.tokens.join() === greedyRuns[i].tokens.join()) : null,
    repeats: perRepeat.get(m.name)!,
  };
});

console.log(
  '\n| mode | tokens/s (median) | spread (min–max) | × baseline | mean exit depth | draft acceptance | same tokens as greedy |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows)
  console.log(
    `| ${r.mode} | ${r.tokensPerSecond.toFixed(1)} | ${Math.min(...r.repeats).toFixed(0)}–${Math.max(...r.repeats).toFixed(0)} | ${r.speedup.toFixed(2)}× (${r.speedupRange.map((x) => x.toFixed(2)).join('–')}, ${r.baseline}) | ${r.meanExitDepth.toFixed(2)} | ${r.acceptance === null ? '—' : `${(100 * r.acceptance).toFixed(0)}%`} | ${r.agreementWithGreedy === null ? '—' : `${(100 * r.agreementWithGreedy).toFixed(0)}%${r.identicalToGreedy ? ' (identical)' : ''}`} |`,
  );
console.log(
  `\nload average (1, 5, 15 min) before ${loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${loadAfter.map((x) => x.toFixed(2)).join(' ')}`,
);
const sample = tokenizer.decode([...prompts[0], ...greedyRuns[0].tokens]);
console.log(`\ngreedy sample: ${JSON.stringify(sample)}`);
if (a.out) {
  writeFileSync(
    a.out,
    JSON.stringify(
      {
        run: a.run,
        prompts: nPrompts,
        promptTokens,
        newTokens,
        repeats,
        load: { before: loadBefore, after: loadAfter },
        rows,
        sample,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`wrote ${a.out}`);
}
