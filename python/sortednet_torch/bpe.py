"""Byte-level BPE encoding from a Hugging Face tokenizer.json (GPT-2 style), token for token as the
TypeScript tokenizer (src/tokenizer/bpe.ts) and Hugging Face `tokenizers` encode: special tokens
split out verbatim first, then GPT-2's pre-tokenization pattern, each piece's UTF-8 bytes mapped to
byte-level characters, then merges by rank, lowest first, every occurrence left to right.

Python's `re` has no \\p{L} / \\p{N}, and PATH's `regex` package may be absent: the letter and number
classes are built once from `unicodedata` (general categories L* and N*), and whitespace is
JavaScript's \\s, so pieces are those of the TypeScript pattern
/'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+/gu.
"""
import json
import re
import sys
import unicodedata

from .hf import bytes_to_unicode

END_OF_TEXT = "<|endoftext|>"

# JavaScript's \s (ECMAScript WhiteSpace + LineTerminator), which differs from Python's str.isspace.
_JS_SPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"


def _category_class(prefix):
    """A regex character class body of every code point whose general category starts with `prefix`."""
    ranges, start, prev = [], None, None
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp)).startswith(prefix):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            ranges.append((start, prev))
            start = None
    if start is not None:
        ranges.append((start, prev))

    def esc(cp):
        return "\\U%08x" % cp

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


_PATTERN = None


def gpt2_pattern():
    global _PATTERN
    if _PATTERN is None:
        L, N, S = _category_class("L"), _category_class("N"), _JS_SPACE
        _PATTERN = re.compile(
            rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
        )
    return _PATTERN


class BpeTokenizer:
    """encode(text) → ids; `vocab_size`, `specials` ({content: id})."""

    def __init__(self, text, where="tokenizer.json"):
        j = json.loads(text)
        model = j.get("model") or {}
        if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
            raise ValueError(f"{where}: model.type must be 'BPE' with vocab and merges, got '{model.get('type')}'")
        if (j.get("pre_tokenizer") or {}).get("type") != "ByteLevel":
            raise ValueError(f"{where}: only byte-level BPE (pre_tokenizer ByteLevel) is supported")
        self.id_of = dict(model["vocab"])
        for a in j.get("added_tokens") or []:
            self.id_of.setdefault(a["content"], a["id"])
        self.vocab_size = len(set(self.id_of.values()))
        self.specials = {a["content"]: a["id"] for a in j.get("added_tokens") or []}
        self.byte_char = bytes_to_unicode()
        missing = [c for c in self.byte_char.values() if c not in self.id_of]
        if missing:
            raise ValueError(f"{where}: byte character {missing[0]!r} is missing; not a byte-level BPE vocabulary")
        self.rank, self.merged = {}, []
        for i, m in enumerate(model["merges"]):
            left, right = m.split(" ") if isinstance(m, str) else m
            a, b, ab = self.id_of.get(left), self.id_of.get(right), self.id_of.get(left + right)
            if a is None or b is None or ab is None:
                raise ValueError(f"{where}: merge {i} ({left!r} {right!r}) uses or makes a token that is not in the vocabulary")
            self.rank.setdefault((a, b), i)
            self.merged.append(ab)
        specials = sorted(self.specials, key=len, reverse=True)
        self.special_pattern = re.compile("|".join(re.escape(s) for s in specials)) if specials else None
        self.cache = {}

    def encode(self, text):
        out = []
        if self.special_pattern is None:
            self._ordinary(text, out)
            return out
        at = 0
        for m in self.special_pattern.finditer(text):
            self._ordinary(text[at : m.start()], out)
            out.append(self.specials[m.group(0)])
            at = m.end()
        self._ordinary(text[at:], out)
        return out

    def _ordinary(self, text, out):
        if not text:
            return
        cache, table = self.cache, self.byte_char
        for m in gpt2_pattern().finditer(text):
            piece = m.group(0)
            ids = cache.get(piece)
            if ids is None:
                ids = self._bpe([self.id_of[table[b]] for b in piece.encode("utf-8", "surrogatepass")])
                if len(cache) < 100_000:
                    cache[piece] = ids
            out.extend(ids)

    def _bpe(self, word):
        rank = self.rank
        while True:
            best = -1
            for i in range(len(word) - 1):
                r = rank.get((word[i], word[i + 1]))
                if r is not None and (best < 0 or r < best):
                    best = r
            if best < 0:
                return word
            merged, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and rank.get((word[i], word[i + 1])) == best:
                    merged.append(self.merged[best])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged


def encode_documents(tokenizer, docs):
    """Each document's ids followed by <|endoftext|> (when the tokenizer has it), as one list."""
    eot = tokenizer.specials.get(END_OF_TEXT)
    out = []
    for d in docs:
        out.extend(tokenizer.encode(d))
        if eot is not None:
            out.append(eot)
    return out
