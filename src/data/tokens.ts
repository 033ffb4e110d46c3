/**
 * A token stream cut into fixed windows for language modelling: window i is
 * tokens[i·T … i·T + T] as input and the same shifted by one as target.
 */
import { encodeBytes, BYTE_VOCAB_SIZE } from './text.js';
import { createRng, permutation } from './random.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import { END_OF_TEXT } from '../tokenizer/bpe.js';
import type { TextCorpus } from './text.js';

export interface TokenDataset {
  name: string;
  tokens: Int32Array;
  seqLen: number;
  vocab: number;
  /** Number of windows. */
  n: number;
}

export interface TokenBatch {
  /** [size, seqLen] inputs. */
  x: Int32Array;
  /** [size, seqLen] next-token targets. */
  y: Int32Array;
  size: number;
}

export function tokenDataset(name: string, tokens: Int32Array, seqLen: number, vocab: number): TokenDataset {
  if (!Number.isInteger(seqLen) || seqLen < 2)
    throw new Error(`${name}: sequence length ${seqLen} must be an integer ≥ 2`);
  const n = Math.floor((tokens.length - 1) / seqLen);
  if (n < 1) throw new Error(`${name}: ${tokens.length} tokens are too few for one window of ${seqLen}`);
  return { name, tokens, seqLen, vocab, n };
}

/** Byte-level tokens of a text (vocab 257: byte + 1, 0 = padding), split into train/test by position. */
export function byteTokenSplit(
  name: string,
  text: string,
  seqLen: number,
  testFraction = 0.1,
): { train: TokenDataset; test: TokenDataset } {
  const tokens = encodeBytes(text, Buffer.byteLength(text, 'utf8'));
  const cut = Math.floor(tokens.length * (1 - testFraction));
  return {
    train: tokenDataset(`${name}/train`, tokens.subarray(0, cut), seqLen, BYTE_VOCAB_SIZE),
    test: tokenDataset(`${name}/test`, tokens.subarray(cut), seqLen, BYTE_VOCAB_SIZE),
  };
}

/** Documents as one token stream, each followed by <|endoftext|> so the model learns where texts end. */
export function encodeDocuments(tokenizer: BpeTokenizer, docs: readonly string[]): Int32Array {
  const eot = tokenizer.specials.get(END_OF_TEXT);
  const parts = docs.map((d) => {
    const ids = tokenizer.encode(d);
    if (eot !== undefined) ids.push(eot);
    return ids;
  });
  const out = new Int32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A corpus tokenized with `tokenizer` into train and validation windows of seqLen tokens. */
export function bpeTokenSplit(
  corpus: TextCorpus,
  tokenizer: BpeTokenizer,
  seqLen: number,
): { train: TokenDataset; test: TokenDataset } {
  return {
    train: tokenDataset(
      `${corpus.name}/train`,
      encodeDocuments(tokenizer, corpus.train),
      seqLen,
      tokenizer.vocabSize,
    ),
    test: tokenDataset(
      `${corpus.name}/validation`,
      encodeDocuments(tokenizer, corpus.validation),
      seqLen,
      tokenizer.vocabSize,
    ),
  };
}

export function tokenBatch(ds: TokenDataset, windows: ArrayLike<number>): TokenBatch {
  const T = ds.seqLen;
  const x = new Int32Array(windows.length * T);
  const y = new Int32Array(windows.length * T);
  for (let b = 0; b < windows.length; b++) {
    const start = windows[b] * T;
    x.set(ds.tokens.subarray(start, start + T), b * T);
    y.set(ds.tokens.subarray(start + 1, start + T + 1), b * T);
  }
  return { x, y, size: windows.length };
}

/** One epoch of batches of windows, seeded order when shuffling. */
export function* tokenBatches(
  ds: TokenDataset,
  o: { batchSize: number; shuffle?: boolean; seed?: number; dropLast?: boolean },
): Generator<TokenBatch> {
  const order = o.shuffle
    ? permutation(ds.n, createRng(o.seed ?? 0))
    : Int32Array.from({ length: ds.n }, (_, i) => i);
  for (let i = 0; i < ds.n; i += o.batchSize) {
    if (o.dropLast && i + o.batchSize > ds.n) break;
    yield tokenBatch(ds, order.subarray(i, Math.min(ds.n, i + o.batchSize)));
  }
}
