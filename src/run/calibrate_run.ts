/**
 * `sortednet calibrate-exit`: early-exit thresholds for a wanted agreement with the full model,
 * computed on a text file (or the run corpus' held-out split), printed with the agreement they
 * reach there and the `--early-exit` value that uses them.
 */
import { readFileSync } from 'node:fs';
import { loadLm } from '../infer/load_lm.js';
import { calibrateEarlyExit, type Calibration } from '../infer/calibrate.js';
import { loadTextCorpus } from '../data/text.js';
import { readRunJson } from './run_folder.js';

export interface CalibrateFlags {
  run: string;
  /** A UTF-8 text file (default: the run corpus' validation split). */
  text?: string;
  agreement: number;
  exits?: number[];
  source?: 'text' | 'greedy';
  windows?: number;
  window?: number;
  checkCost?: number;
  measure?: 'probability' | 'margin';
  json?: boolean;
}

/** The early-exit flag value of a calibration: DEPTH:THRESHOLD,… ('' when no exit pays). */
export function earlyExitFlag(c: Pick<Calibration, 'exits' | 'thresholds'>): string {
  return c.exits.map((d, i) => `${d}:${c.thresholds[i]}`).join(',');
}

/** The generate flags that decode with a calibration. */
export function earlyExitFlags(c: Pick<Calibration, 'exits' | 'thresholds' | 'measure'>): string {
  return `--early-exit ${earlyExitFlag(c)}${c.measure === 'margin' ? ' --exit-measure margin' : ''}`;
}

function readText(path: string): string {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`calibrate-exit: cannot read --text ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new Error(`calibrate-exit: --text ${path} is not valid UTF-8 text`, { cause: e });
  }
}

export async function runCalibrateExit(
  f: CalibrateFlags,
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<Calibration> {
  const { model, tokenizer } = await loadLm(f.run);
  const text =
    f.text !== undefined
      ? readText(f.text)
      : loadTextCorpus(readRunJson(f.run).data.name).validation.join('\n');
  const where = f.text ?? `the validation split of ${readRunJson(f.run).data.name}`;
  const stream = tokenizer.encode(text);
  const c = calibrateEarlyExit(model, stream, {
    agreement: f.agreement,
    exits: f.exits,
    source: f.source,
    windows: f.windows,
    window: f.window,
    checkCost: f.checkCost,
    measure: f.measure,
  });
  if (f.json) {
    out(JSON.stringify({ ...c, earlyExit: earlyExitFlag(c), flags: earlyExitFlags(c) }, null, 2) + '\n');
    return c;
  }
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const L = model.config.layers;
  out(
    `${c.positions} positions of ${f.source === 'text' ? 'the text' : "the full model's greedy continuations of prompts from the text"} (${where}): agreement with the full model ${pct(c.agreement)} (wanted ${pct(f.agreement)})\n`,
  );
  const shares = Object.entries(c.exitShare)
    .map(([d, s]) => `${Number(d) === L ? 'full depth' : `depth ${d}`} ${pct(s)}`)
    .join(', ');
  out(
    `tokens leaving at ${shares}; mean exit depth ${c.meanExitDepth.toFixed(2)} of ${L}; estimated compute ${c.relativeCost.toFixed(2)}× full decoding\n`,
  );
  out(
    c.exits.length === 0
      ? 'no exit reaches the agreement cheaper than the full model: decode without --early-exit\n'
      : `use: sortednet generate --run ${f.run} ${earlyExitFlags(c)} …\n`,
  );
  return c;
}
