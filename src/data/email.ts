/** Raw emails to classifier inputs: the SpamAssassin corpus as byte-token sequences. */
import { BYTE_VOCAB_SIZE, encodeBytes, loadSpamAssassin } from './text.js';
import { createRng, permutation } from './random.js';
import type { SequenceDataset } from './sequences.js';

/** Subject line and body (headers dropped: they carry tell-tale mail-server traces), whitespace collapsed. */
export function emailText(raw: string): string {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = split < 0 ? '' : raw.slice(0, split);
  const body = split < 0 ? raw : raw.slice(split);
  const subject = /^Subject:(.*)$/im.exec(headers)?.[1] ?? '';
  return `${subject.trim()} ${body}`.replace(/\s+/g, ' ').trim();
}

/**
 * A seeded 80/20 split of SpamAssassin (spam = class 1) as byte-token sequences of `maxLen`
 * (padded with token 0); `trainLimit` > 0 keeps only that many training emails.
 */
export function spamAssassinSplits(
  maxLen: number,
  seed: number,
  trainLimit = 0,
): { train: SequenceDataset; test: SequenceDataset } {
  const { texts, labels } = loadSpamAssassin();
  const order = permutation(texts.length, createRng(seed));
  const nTest = Math.round(0.2 * texts.length);
  const make = (name: string, idx: Int32Array): SequenceDataset => {
    const sequences = new Int32Array(idx.length * maxLen);
    idx.forEach((j, i) => sequences.set(encodeBytes(emailText(texts[j]), maxLen), i * maxLen));
    return {
      name,
      sequences,
      labels: Int32Array.from(idx, (j) => labels[j]),
      n: idx.length,
      seqLen: maxLen,
      vocab: BYTE_VOCAB_SIZE,
      numClasses: 2,
    };
  };
  const trainIdx = order.subarray(nTest);
  return {
    train: make('spamassassin-train', trainLimit > 0 ? trainIdx.subarray(0, trainLimit) : trainIdx),
    test: make('spamassassin-test', order.subarray(0, nTest)),
  };
}
