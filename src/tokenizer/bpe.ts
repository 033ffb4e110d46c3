/**
 * A byte-level BPE tokenizer (GPT-2 style) that reads and writes the Hugging Face `tokenizer.json`
 * format, so the same file loads in Python `tokenizers`, `@huggingface/tokenizers` and
 * transformers.js. Any UTF-8 text round-trips: the 256 byte tokens are always in the vocabulary.
 */
import { BYTE_TO_CHAR, CHAR_TO_BYTE, preTokenize } from './byte_level.js';

export const END_OF_TEXT = '<|endoftext|>';

const pairKey = (a: number, b: number): number => a * 0x10000 + b;

export class BpeTokenizer {
  readonly vocabSize: number;
  /** Special tokens (e.g. <|endoftext|>) by content; matched verbatim before pre-tokenization. */
  readonly specials: ReadonlyMap<string, number>;
  private readonly idOf: Map<string, number>;
  /** (left, right) → merge rank; the merged token's id is `mergedId[rank]`. */
  private readonly rank = new Map<number, number>();
  private readonly mergedId: Int32Array;
  private readonly bytesOf: Uint8Array[];
  private readonly cache = new Map<string, number[]>();
  private readonly specialPattern: RegExp | null;

  /**
   * @param tokens token strings by id, in byte-level characters (every one of the 256 byte
   *   characters must be present); specials are listed here too, with their plain content.
   * @param merges pairs of token strings, in merge order (rank 0 first).
   */
  constructor(
    readonly tokens: readonly string[],
    readonly merges: readonly (readonly [string, string])[],
    specialTokens: readonly string[] = [],
  ) {
    this.vocabSize = tokens.length;
    if (tokens.length > 0x10000)
      throw new Error(`tokenizer: ${tokens.length} tokens; at most 65536 supported`);
    this.idOf = new Map(tokens.map((t, i) => [t, i]));
    if (this.idOf.size !== tokens.length) throw new Error('tokenizer: the vocabulary has duplicate tokens');
    const specials = new Map<string, number>();
    for (const s of specialTokens) {
      const id = this.idOf.get(s);
      if (id === undefined)
        throw new Error(`tokenizer: special token ${JSON.stringify(s)} is not in the vocabulary`);
      specials.set(s, id);
    }
    this.specials = specials;
    for (const c of BYTE_TO_CHAR) {
      if (!this.idOf.has(c))
        throw new Error(
          `tokenizer: byte character ${JSON.stringify(c)} is missing; not a byte-level BPE vocabulary`,
        );
    }
    this.mergedId = new Int32Array(merges.length);
    merges.forEach(([l, r], i) => {
      const a = this.idOf.get(l);
      const b = this.idOf.get(r);
      const m = this.idOf.get(l + r);
      if (a === undefined || b === undefined || m === undefined) {
        throw new Error(
          `tokenizer: merge ${i} ("${l} ${r}") uses or makes a token that is not in the vocabulary`,
        );
      }
      if (!this.rank.has(pairKey(a, b))) this.rank.set(pairKey(a, b), i);
      this.mergedId[i] = m;
    });
    const enc = new TextEncoder();
    this.bytesOf = tokens.map((t) => {
      if (specials.has(t)) return enc.encode(t);
      const bytes = new Uint8Array(t.length);
      for (let i = 0; i < t.length; i++) {
        const b = CHAR_TO_BYTE.get(t[i]);
        if (b === undefined)
          throw new Error(
            `tokenizer: token ${JSON.stringify(t)} has a character outside the byte-level alphabet`,
          );
        bytes[i] = b;
      }
      return bytes;
    });
    const escaped = [...specials.keys()]
      .sort((x, y) => y.length - x.length)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    this.specialPattern = escaped.length ? new RegExp(escaped.join('|'), 'g') : null;
  }

  /** Token ids of `text`; special-token strings in the text become their special ids. */
  encode(text: string): number[] {
    const out: number[] = [];
    if (!this.specialPattern) {
      this.encodeOrdinary(text, out);
      return out;
    }
    let at = 0;
    for (const m of text.matchAll(this.specialPattern)) {
      this.encodeOrdinary(text.slice(at, m.index), out);
      out.push(this.specials.get(m[0])!);
      at = m.index + m[0].length;
    }
    this.encodeOrdinary(text.slice(at), out);
    return out;
  }

  private encodeOrdinary(text: string, out: number[]): void {
    if (text === '') return;
    for (const piece of preTokenize(text)) {
      let ids = this.cache.get(piece);
      if (!ids) {
        ids = this.bpe(piece);
        if (this.cache.size < 100_000) this.cache.set(piece, ids);
      }
      for (const id of ids) out.push(id);
    }
  }

  /** Merges by rank, lowest first, every occurrence left to right (as GPT-2 and HF tokenizers do). */
  private bpe(piece: string): number[] {
    let word = Array.from(piece, (c) => this.idOf.get(c)!);
    for (;;) {
      let best = -1;
      for (let i = 0; i + 1 < word.length; i++) {
        const r = this.rank.get(pairKey(word[i], word[i + 1]));
        if (r !== undefined && (best < 0 || r < best)) best = r;
      }
      if (best < 0) return word;
      const merged: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && this.rank.get(pairKey(word[i], word[i + 1])) === best) {
          merged.push(this.mergedId[best]);
          i++;
        } else merged.push(word[i]);
      }
      word = merged;
    }
  }

  /** The bytes a token stands for (a special token: its UTF-8 content). */
  tokenBytes(id: number): Uint8Array {
    const b = this.bytesOf[id];
    if (b === undefined) throw new Error(`tokenizer: token id ${id} is outside 0..${this.vocabSize - 1}`);
    return b;
  }

  decodeBytes(ids: readonly number[]): Uint8Array {
    const parts = ids.map((id) => this.tokenBytes(id));
    const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Text of `ids`; a sequence cut inside a character decodes to U+FFFD there. */
  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(this.decodeBytes(ids));
  }

  /** The Hugging Face `tokenizer.json` text. */
  toHuggingFaceJson(): string {
    const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
    const json = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [...this.specials].map(([content, id]) => ({
        id,
        content,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
      post_processor: { type: 'ByteLevel', ...byteLevel, trim_offsets: false },
      decoder: { type: 'ByteLevel', ...byteLevel },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab: Object.fromEntries(this.tokens.map((t, i) => [t, i])),
        merges: this.merges.map(([l, r]) => `${l} ${r}`),
      },
    };
    return JSON.stringify(json, null, 1) + '\n';
  }

  /** Reads a byte-level BPE `tokenizer.json` (GPT-2 style); other kinds are refused by name. */
  static fromHuggingFaceJson(text: string, where = 'tokenizer.json'): BpeTokenizer {
    let j: {
      model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
      pre_tokenizer?: { type?: string } | null;
      added_tokens?: { id: number; content: string; special?: boolean }[];
    };
    try {
      j = JSON.parse(text);
    } catch (e) {
      throw new Error(`${where}: not JSON (${(e as Error).message})`, { cause: e });
    }
    if (j.model?.type !== 'BPE' || !j.model.vocab || !j.model.merges)
      throw new Error(`${where}: model.type must be 'BPE' with vocab and merges, got '${j.model?.type}'`);
    if (j.pre_tokenizer?.type !== 'ByteLevel')
      throw new Error(
        `${where}: only byte-level BPE (pre_tokenizer ByteLevel) is supported, got '${j.pre_tokenizer?.type}'`,
      );
    const tokens: string[] = [];
    for (const [t, id] of Object.entries(j.model.vocab)) tokens[id] = t;
    for (const a of j.added_tokens ?? []) tokens[a.id] ??= a.content;
    for (let i = 0; i < tokens.length; i++)
      if (tokens[i] === undefined) throw new Error(`${where}: token id ${i} is missing from the vocabulary`);
    const merges = j.model.merges.map((m, i): [string, string] => {
      const pair = typeof m === 'string' ? m.split(' ') : m;
      if (pair.length !== 2) throw new Error(`${where}: merge ${i} (${JSON.stringify(m)}) is not a pair`);
      return [pair[0], pair[1]];
    });
    return new BpeTokenizer(
      tokens,
      merges,
      (j.added_tokens ?? []).map((a) => a.content),
    );
  }
}

/** Decodes a token stream piece by piece; bytes of a character split across tokens wait for the rest. */
export class StreamDecoder {
  private readonly decoder = new TextDecoder();
  constructor(private readonly tokenizer: BpeTokenizer) {}
  push(id: number): string {
    return this.decoder.decode(this.tokenizer.tokenBytes(id), { stream: true });
  }
  flush(): string {
    return this.decoder.decode();
  }
}
