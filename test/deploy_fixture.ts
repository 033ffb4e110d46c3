/** Quick trained runs for the deployment tests: real data, real training, seconds. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { main } from '../src/cli/main.js';
import { createRng } from '../src/data/random.js';

/** Runs the CLI with console.log captured; returns the exit code and what it printed. */
export async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const log = console.log;
  const lines: string[] = [];
  console.log = (...a: unknown[]) => lines.push(a.join(' '));
  try {
    return { code: await main(args), out: lines.join('\n') };
  } finally {
    console.log = log;
  }
}

/** Runs the CLI with console.log and console.error captured. */
export async function cliErr(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const error = console.error;
  const lines: string[] = [];
  console.error = (...a: unknown[]) => lines.push(a.join(' '));
  try {
    return { ...(await cli(args)), err: lines.join('\n') };
  } finally {
    console.error = error;
  }
}

/** A sorted MLP on MNIST (16 sub-models), 60 steps on 6000 images, evaluated on 500. */
export async function trainMnistMlp(runDir: string): Promise<void> {
  const args = ['train', '--run', runDir, '--model', 'mlp', '--data', 'mnist', '--steps', '60'];
  args.push('--batch-size', '64', '--gacc', '2', '--train-subset', '6000', '--test-subset', '500');
  assert.equal((await cli(args)).code, 0);
}

/**
 * A CSV of 5 measurements on very different scales and a label column named `Grade` (three classes
 * that the features separate), with an R-style quoted header.
 */
export function writePlantCsv(path: string, rows = 600, seed = 0): void {
  const rng = createRng(seed);
  const grades = ['low', 'mid', 'high'];
  const lines = ['"Temp (C)",pressure,noise,"flow, l/s",rand,Grade'];
  for (let i = 0; i < rows; i++) {
    const c = i % 3;
    const f = [
      c * 1.5 + rng.normal(),
      (rng.normal() - c) * 10,
      rng.normal(),
      (c + 0.7 * rng.normal()) * 100,
      rng.next(),
    ];
    lines.push([...f.map((v) => v.toFixed(4)), grades[c]].join(','));
  }
  writeFileSync(path, lines.join('\n') + '\n');
}
