/**
 * Logits processors, as Hugging Face `generate` applies them before temperature / top-k / top-p:
 * repetition penalty (CTRL, Keskar et al. 2019), no-repeat n-grams, and the minimum length
 * (stop tokens forbidden until `minNewTokens` tokens were generated). Each works on the
 * sequence so far (prompt + new tokens), so a speculative draft and its verification process
 * every position with exactly the context plain decoding would have had.
 */

export interface ProcessOptions {
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
  minNewTokens?: number;
  stopTokens?: readonly number[];
}

export type Processor = (
  logits: Float32Array,
  sequence: readonly number[],
  generated: number,
) => Float32Array;

/** HF `RepetitionPenaltyLogitsProcessor`: every token seen so far has its logit divided by the penalty when positive, multiplied when negative. In place. */
export function applyRepetitionPenalty(logits: Float32Array, seen: readonly number[], penalty: number): void {
  const done = new Set<number>();
  for (const t of seen) {
    if (done.has(t)) continue;
    done.add(t);
    const x = logits[t];
    logits[t] = x < 0 ? x * penalty : x / penalty;
  }
}

/** Tokens that would repeat an n-gram of `sequence` (HF `NoRepeatNGramLogitsProcessor`). */
export function bannedNgramTokens(sequence: readonly number[], n: number): number[] {
  const T = sequence.length;
  if (n < 1 || T + 1 < n) return [];
  if (n === 1) return [...new Set(sequence)];
  const banned: number[] = [];
  // The last n−1 tokens are the prefix of the n-gram the next token would complete.
  for (let i = 0; i + n - 1 < T; i++) {
    let same = true;
    for (let j = 0; j < n - 1 && same; j++) same = sequence[i + j] === sequence[T - n + 1 + j];
    if (same) banned.push(sequence[i + n - 1]);
  }
  return banned;
}

/** The processors the options ask for, as one function (null when none is active). */
export function makeProcessor(o: ProcessOptions): Processor | null {
  const penalty = o.repetitionPenalty ?? 1;
  const n = o.noRepeatNgramSize ?? 0;
  const min = o.minNewTokens ?? 0;
  const stops = o.stopTokens ?? [];
  if (penalty === 1 && n === 0 && (min === 0 || stops.length === 0)) return null;
  return (raw, sequence, generated) => {
    const logits = Float32Array.from(raw);
    if (penalty !== 1) applyRepetitionPenalty(logits, sequence, penalty);
    if (n > 0) for (const t of bannedNgramTokens(sequence, n)) logits[t] = -Infinity;
    if (generated < min) for (const t of stops) logits[t] = -Infinity;
    return logits;
  };
}

/** log p(token) under softmax(logits / T) (T = 1 for greedy). */
export function logProbability(logits: ArrayLike<number>, token: number, temperature: number): number {
  const t = temperature > 0 ? temperature : 1;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp((logits[i] - max) / t);
  return (logits[token] - max) / t - Math.log(sum);
}
