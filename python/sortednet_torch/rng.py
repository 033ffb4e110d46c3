"""The TypeScript side's seeded generator (mulberry32) and Fisher–Yates permutation, bit for bit,
so that data subsets, shuffles and sub-model draws repeat across the two implementations."""
import math

import numpy as np

_M = 0xFFFFFFFF


def _imul(a, b):
    """Math.imul: the low 32 bits of the product, as an unsigned int."""
    return (a * b) & _M


class Rng:
    def __init__(self, seed):
        if not math.isfinite(seed):
            raise ValueError(f"Rng: seed must be a finite number, got {seed}")
        self.state = int(math.trunc(seed)) & _M

    def next(self):
        """Uniform in [0, 1)."""
        self.state = (self.state + 0x6D2B79F5) & _M
        t = self.state
        t = _imul(t ^ (t >> 15), t | 1)
        t ^= (t + _imul(t ^ (t >> 7), t | 61)) & _M
        return ((t ^ (t >> 14)) & _M) / 4294967296

    def int(self, n):
        return math.floor(self.next() * n)


def permutation(n, rng):
    order = np.arange(n, dtype=np.int64)
    for i in range(n - 1, 0, -1):
        j = rng.int(i + 1)
        order[i], order[j] = order[j], order[i]
    return order
