"""The randomness of sampling, per prompt: a token is drawn as the argmax of the filtered logits
plus Gumbel noise (the Gumbel-max trick, an exact draw from the softmax), and that noise is a hash
of (prompt, seed, step, token id). A prompt's text therefore depends only on the prompt, the
settings and the seed, never on its batch or its row in one.

The hash is written once, in arithmetic that NumPy arrays, TensorFlow tensors and PyTorch tensors
all share (int64 `*`, `//`, `%`, `+`); each framework passes only its own bitwise xor. Every
intermediate value stays below 2**49, so no framework's integer overflow is ever reached.
"""

from __future__ import annotations

import zlib

TWO_32 = 2 ** 32
TWO_16 = 2 ** 16
GOLDEN = 0x9E3779B9  # spreads consecutive steps apart before they are mixed


def row_seeds(seed: int, prompts: list[str]) -> list[int]:
    """The 32-bit key of each prompt's draws under `seed`."""
    return [zlib.crc32(prompt.encode("utf-8"), seed % TWO_32) for prompt in prompts]


def times(x, constant: int):
    """(x * constant) mod 2**32 for 32-bit x, without a product over 2**49."""
    low, high = constant % TWO_16, constant // TWO_16
    return (x * low + (x * high) % TWO_16 * TWO_16) % TWO_32


def mix(x, xor):
    """A 32-bit integer hash (lowbias32, by Chris Wellons) of 32-bit values x; `//` is the
    right shift of a non-negative number."""
    x = xor(x, x // 2 ** 16)
    x = times(x, 0x7FEB352D)
    x = xor(x, x // 2 ** 15)
    x = times(x, 0x846CA68B)
    return xor(x, x // 2 ** 16)


def hashed(seeds, step, token_ids, xor):
    """32-bit hashes for seeds (rows, 1), one step (a scalar) and token ids (1, vocabulary)."""
    per_row = mix((seeds + times(step, GOLDEN)) % TWO_32, xor)
    return mix(xor(per_row, token_ids), xor)


def gumbel(hashes, log):
    """Standard Gumbel noise from 32-bit hashes, as float32 (24 bits of each: exact there)."""
    uniform = (hashes // 256 * 2 + 1) / 2 ** 25  # in (0, 1), never 0 or 1
    return -log(-log(uniform))
