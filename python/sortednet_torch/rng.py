"""The TypeScript side's seeded generator (mulberry32) and Fisher–Yates permutation, bit for bit,
so that data subsets, shuffles and sub-model draws repeat across the two implementations."""
import math

import numpy as np

_M = 0xFFFFFFFF


def _imul(a, b):
    """Math.imul: the low 32 bits of the product, as an unsigned int."""
    return (a * b) & _M


MAX_SAFE_INTEGER = 2**53 - 1


def _mix32(h):
    """murmur3's 32-bit finaliser."""
    h ^= h >> 16
    h = _imul(h, 0x85EBCA6B)
    h ^= h >> 13
    h = _imul(h, 0xC2B2AE35)
    h ^= h >> 16
    return h & _M


def seed32(seed, where="seed"):
    """A seed as 32 bits of generator state: seed mod 2^32 for seeds in [-2^31, 2^32), larger safe
    integers hashed from both halves; anything else refused (the TypeScript seed32)."""
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)
    if not isinstance(seed, int) or abs(seed) > MAX_SAFE_INTEGER:
        raise ValueError(f"{where}: {seed} is not a usable seed; give an integer between -{MAX_SAFE_INTEGER} and {MAX_SAFE_INTEGER}")
    if -(2**31) <= seed < 2**32:
        return seed & _M
    low = seed & _M
    high = ((seed - low) // 2**32) & _M
    return _mix32(_mix32(low ^ 0x9E3779B9) ^ high)


def stream_seed(seed, multiplier, index):
    """The seed of stream `index` (a step, an epoch): seed·multiplier + index modulo 2^32."""
    return (_imul(seed32(seed), multiplier) + index) & _M


class Rng:
    def __init__(self, seed):
        self.state = seed32(seed, "Rng")

    def next(self):
        """Uniform in [0, 1)."""
        self.state = (self.state + 0x6D2B79F5) & _M
        t = self.state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _M
        return ((t ^ (t >> 14)) & _M) / 4294967296

    def int(self, n):
        return math.floor(self.next() * n)

    def floats(self, k):
        """The next k values of next() at once (the state only advances by a constant each draw)."""
        s = (self.state + 0x6D2B79F5 * np.arange(1, k + 1, dtype=np.uint64)) & _M
        self.state = int(s[-1]) if k else self.state
        m = np.uint64(_M)

        def imul(a, b):
            return (a * b) & m  # uint64 products wrap mod 2^64; the low 32 bits are exact

        t = imul(s ^ (s >> np.uint64(15)), s | np.uint64(1))
        t ^= (t + imul(t ^ (t >> np.uint64(7)), t | np.uint64(61))) & m
        return ((t ^ (t >> np.uint64(14))) & m).astype(np.float64) / 4294967296


def permutation(n, rng):
    """Fisher–Yates, drawing j for i = n−1 … 1 in that order."""
    order = list(range(n))
    u = rng.floats(max(n - 1, 0))
    js = np.floor(u * np.arange(n, 1, -1, dtype=np.float64)).astype(np.int64).tolist()
    for i, j in zip(range(n - 1, 0, -1), js):
        order[i], order[j] = order[j], order[i]
    return np.asarray(order, dtype=np.int64)
