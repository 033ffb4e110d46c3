/**
 * GPT-2's reversible byte ↔ printable-character map (the `ByteLevel` pre-tokenizer of Hugging Face
 * tokenizers): every byte becomes one visible Unicode character, so BPE tokens are plain strings
 * without spaces or control characters, and the vocabulary of a tokenizer.json stays readable.
 */

function buildMap(): { byteToChar: string[]; charToByte: Map<string, number> } {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b); // '!'..'~'
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b); // '¡'..'¬'
  for (let b = 0xae; b <= 0xff; b++) keep.push(b); // '®'..'ÿ'
  const byteToChar: string[] = new Array<string>(256);
  for (const b of keep) byteToChar[b] = String.fromCodePoint(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (byteToChar[b] === undefined) byteToChar[b] = String.fromCodePoint(256 + n++);
  }
  return { byteToChar, charToByte: new Map(byteToChar.map((c, b) => [c, b])) };
}

export const { byteToChar: BYTE_TO_CHAR, charToByte: CHAR_TO_BYTE } = buildMap();

/**
 * GPT-2's pre-tokenization pattern (the one `ByteLevel` with `use_regex: true` applies): words with
 * their leading space, numbers, punctuation runs, and whitespace. BPE merges never cross these pieces.
 */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

const encoder = new TextEncoder();

/** The pieces of `text` (GPT-2 pattern), each as its bytes mapped to byte-level characters. */
export function preTokenize(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(GPT2_PATTERN)) out.push(toByteLevel(m[0]));
  return out;
}

export function toByteLevel(piece: string): string {
  let s = '';
  for (const b of encoder.encode(piece)) s += BYTE_TO_CHAR[b];
  return s;
}
