/** Parsers for option values: each names the option and the value it could not read. */
import { InvalidArgumentError } from 'commander';

export function intArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n))
    throw new InvalidArgumentError(`'${value}' is not an integer`);
  return n;
}

export function numArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError(`'${value}' is not a number`);
  return n;
}

/** A required option's value, with the command named in the error. */
export function need<T>(value: T | undefined, flag: string, command: string): T {
  if (value === undefined || value === '')
    throw new Error(`${command} needs ${flag}; see 'sortednet ${command} --help'`);
  return value;
}

export function positiveIntArg(value: string): number {
  const n = intArg(value);
  if (n < 1) throw new InvalidArgumentError(`'${value}' must be at least 1`);
  return n;
}

export function nonNegativeIntArg(value: string): number {
  const n = intArg(value);
  if (n < 0) throw new InvalidArgumentError(`'${value}' must be 0 or more`);
  return n;
}

/** Seeds are hashed to 32 bits (src/data/random.ts); an integer a double cannot hold exactly would be a different seed. */
export function seedArg(value: string): number {
  const n = intArg(value);
  if (!Number.isSafeInteger(n))
    throw new InvalidArgumentError(
      `'${value}' cannot be represented exactly; give an integer up to ±${Number.MAX_SAFE_INTEGER}`,
    );
  return n;
}

/** A comma-separated list, each item read by `item`: listArg(numArg) reads "0.5,1,2". */
export function listArg<T>(item: (value: string) => T): (value: string) => T[] {
  return (value) => value.split(',').map((v) => item(v.trim()));
}

/** An early-exit confidence measure: margin or probability. */
export function measureArg(value: string): 'probability' | 'margin' {
  if (value !== 'probability' && value !== 'margin')
    throw new InvalidArgumentError(
      `'${value}' is not a confidence measure; use margin (top-1 − top-2 logit gap) or probability (top softmax probability)`,
    );
  return value;
}

/** "2:0.9,4:0.8" → exits [2, 4] with thresholds [0.9, 0.8]. */
export function earlyExitArg(value: string): { exits: number[]; thresholds: number[] } {
  const pairs = value.split(',').map((p) => p.trim().split(':'));
  const exits: number[] = [];
  const thresholds: number[] = [];
  for (const p of pairs) {
    const d = Number(p[0]);
    const t = Number(p[1]);
    if (p.length !== 2 || !Number.isInteger(d) || p[1].trim() === '' || !Number.isFinite(t))
      throw new InvalidArgumentError(
        `'${value}' is not a list of DEPTH:THRESHOLD pairs (e.g. 2:0.9,4:0.8: leave at depth 2 when the confidence > 0.9, else at 4 when > 0.8, else at full depth)`,
      );
    exits.push(d);
    thresholds.push(t);
  }
  return { exits, thresholds };
}
