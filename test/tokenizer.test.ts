/** Byte-level BPE: any UTF-8 text round-trips, and Hugging Face tokenizers read our tokenizer.json identically. */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainBpe } from '../src/tokenizer/train_bpe.js';
import { BpeTokenizer, END_OF_TEXT, StreamDecoder } from '../src/tokenizer/bpe.js';
import { loadMobyDick } from '../src/data/text.js';
import { createRng } from '../src/data/random.js';

let tok: BpeTokenizer;
let text: string;
before(() => {
  text = loadMobyDick().slice(0, 150_000);
  tok = trainBpe([text], { vocabSize: 600 });
});

/** Random valid Unicode: ASCII, Latin-1, CJK, emoji (astral), combining marks, controls, whitespace runs. */
function randomText(r: ReturnType<typeof createRng>, n: number): string {
  const ranges: [number, number][] = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0xff],
    [0x4e00, 0x9fff],
    [0x1f300, 0x1faff],
    [0x0300, 0x036f],
    [0x0400, 0x04ff],
    [0xe000, 0xf8ff],
  ];
  let s = '';
  for (let i = 0; i < n; i++) {
    const [a, b] = ranges[r.int(ranges.length)];
    s += r.next() < 0.15 ? ' '.repeat(1 + r.int(3)) : String.fromCodePoint(a + r.int(b - a + 1));
  }
  return s;
}

test('training makes the asked vocabulary: 256 bytes + merges + <|endoftext|>, and compresses English', () => {
  assert.equal(tok.vocabSize, 600);
  assert.equal(tok.specials.get(END_OF_TEXT), 599);
  const ids = tok.encode(text.slice(0, 20_000));
  assert.ok(ids.length < 20_000 / 2, `only ${(20_000 / ids.length).toFixed(2)} characters per token`);
  assert.equal(tok.decode(ids), text.slice(0, 20_000));
});

test('any UTF-8 text round-trips: random strings, emoji, CJK, controls, special tokens', () => {
  const r = createRng(3);
  for (let i = 0; i < 200; i++) {
    const s = randomText(r, 1 + r.int(60));
    assert.equal(tok.decode(tok.encode(s)), s, JSON.stringify(s));
  }
  for (const s of [
    '',
    '日本語のテキスト',
    '👩‍👩‍👧 family 🇯🇵',
    'tab\tnew\nline\r\n',
    `a${END_OF_TEXT}b`,
    '  leading   spaces  ',
  ]) {
    assert.equal(tok.decode(tok.encode(s)), s);
  }
  assert.deepEqual(tok.encode(`x${END_OF_TEXT}`).slice(-1), [599]);
  // Streaming: a character split across tokens is emitted only when complete.
  const ids = tok.encode('😀 é');
  const d = new StreamDecoder(tok);
  assert.equal(ids.map((id) => d.push(id)).join('') + d.flush(), '😀 é');
});

test('tokenizer.json round-trips through our reader, with clear errors for other kinds', () => {
  const again = BpeTokenizer.fromHuggingFaceJson(tok.toHuggingFaceJson());
  const s = text.slice(5000, 9000) + ' 😀 中文';
  assert.deepEqual(again.encode(s), tok.encode(s));
  assert.throws(() => BpeTokenizer.fromHuggingFaceJson('{'), /not JSON/);
  assert.throws(
    () => BpeTokenizer.fromHuggingFaceJson(JSON.stringify({ model: { type: 'WordPiece', vocab: {} } })),
    /model.type must be 'BPE'/,
  );
  const j = JSON.parse(tok.toHuggingFaceJson());
  j.pre_tokenizer = { type: 'Metaspace' };
  assert.throws(() => BpeTokenizer.fromHuggingFaceJson(JSON.stringify(j)), /only byte-level BPE/);
  assert.throws(
    () => trainBpe(['x'], { vocabSize: 100 }),
    /vocabSize 100 must be an integer in 257\.\.65536/,
  );
});

const require = createRequire(import.meta.url);
const has = (name: string) => {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
};

test(
  'Hugging Face tokenizers (Rust, npm `tokenizers`) encodes and decodes exactly as we do',
  { skip: !has('tokenizers') && 'npm tokenizers not installed' },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bpe-'));
    const file = join(dir, 'tokenizer.json');
    writeFileSync(file, tok.toHuggingFaceJson());
    const { Tokenizer } = require('tokenizers') as {
      Tokenizer: {
        fromFile(f: string): {
          encode(s: string): Promise<{ getIds(): number[] }>;
          decode(ids: number[], skip: boolean): Promise<string>;
        };
      };
    };
    const hf = Tokenizer.fromFile(file);
    const r = createRng(9);
    const samples = [
      text.slice(100_000, 104_000),
      `one${END_OF_TEXT}two`,
      ...Array.from({ length: 30 }, () => randomText(r, 40)),
    ];
    for (const s of samples) {
      const ids = tok.encode(s);
      assert.deepEqual((await hf.encode(s)).getIds(), ids, JSON.stringify(s.slice(0, 40)));
      assert.equal(await hf.decode(ids, false), tok.decode(ids));
    }
  },
);

test(
  '@huggingface/tokenizers (JavaScript) encodes and decodes exactly as we do',
  { skip: !has('@huggingface/tokenizers') && 'not installed' },
  async () => {
    const { Tokenizer } = (await import('@huggingface/tokenizers')) as unknown as {
      Tokenizer: new (
        json: object,
        config: object,
      ) => { encode(s: string): { ids: number[] }; decode(ids: number[]): string };
    };
    const hf = new Tokenizer(JSON.parse(tok.toHuggingFaceJson()), {});
    const r = createRng(10);
    for (const s of [text.slice(60_000, 63_000), ...Array.from({ length: 30 }, () => randomText(r, 40))]) {
      const ids = tok.encode(s);
      assert.deepEqual(hf.encode(s).ids, ids, JSON.stringify(s.slice(0, 40)));
      assert.equal(hf.decode(ids), tok.decode(ids));
    }
  },
);
