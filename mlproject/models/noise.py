"""The randomness of sampling, per prompt: a token is drawn as the argmax of the filtered logits
plus Gumbel noise (the Gumbel-max trick, an exact draw from the softmax), and that noise is a hash
of (prompt, seed, step, token id). A prompt's text therefore depends only on the prompt, the
settings and the seed, never on its batch or its row in one.

The hash is written once, over each framework's own bitwise operations (`Bits`): unsigned 32-bit
arithmetic, which wraps by definition, where the framework has it (TensorFlow, and PyTorch's
uint32 multiply on the CPU); int64 values kept below 2**49 where it does not (NumPy, PyTorch
elsewhere), so their signed overflow is never reached.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

MASK_32, MASK_16 = 2**32 - 1, 2**16 - 1
GOLDEN = 0x9E3779B9  # spreads consecutive steps apart before they are mixed


@dataclass(frozen=True)
class Bits:
    """A framework's operations on arrays of 32-bit values, and its cast to float32."""

    xor: Callable
    shift_right: Callable  # (x, places)
    times: Callable  # (x, constant) -> x * constant mod 2**32
    wrap: Callable  # x mod 2**32
    to_float32: Callable


def int64_bits(xor: Callable, shift_right: Callable, mask: Callable, to_float32: Callable) -> Bits:
    """Bits on int64 values, for frameworks without an unsigned 32-bit multiply: a product is
    taken in 16-bit halves, so none exceeds 2**49. `mask(x, constant)` is x & constant."""

    def times(x, constant: int):
        return mask(x * (constant & MASK_16) + mask(x * (constant >> 16), MASK_16) * 2**16, MASK_32)

    return Bits(xor, shift_right, times, lambda x: mask(x, MASK_32), to_float32)


def row_seeds(seed: int, prompts: list[str]) -> list[int]:
    """The 32-bit key of each prompt's draws under `seed`."""
    return [zlib.crc32(prompt.encode("utf-8"), seed & MASK_32) for prompt in prompts]


def mix(x, bits: Bits):
    """A 32-bit integer hash (lowbias32, by Chris Wellons) of 32-bit values x."""
    x = bits.xor(x, bits.shift_right(x, 16))
    x = bits.times(x, 0x7FEB352D)
    x = bits.xor(x, bits.shift_right(x, 15))
    x = bits.times(x, 0x846CA68B)
    return bits.xor(x, bits.shift_right(x, 16))


def hashed(seeds, step, token_ids, bits: Bits):
    """32-bit hashes for seeds (rows, 1), one step and token ids (1, vocabulary)."""
    per_row = mix(bits.wrap(seeds + bits.times(step, GOLDEN)), bits)
    return mix(bits.xor(per_row, token_ids), bits)


def gumbel(hashes, log, bits: Bits):
    """Standard Gumbel noise in float32 from 32-bit hashes (24 bits of each: exact in float32)."""
    uniform = bits.to_float32(bits.shift_right(hashes, 8) * 2 + 1) * 2.0**-25  # in (0, 1), never 0 or 1
    return -log(-log(uniform))
