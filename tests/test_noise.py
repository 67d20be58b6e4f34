"""The sampling noise (mlproject/models/noise.py): one hash, the same in every framework, whose
Gumbel-max draws follow the softmax."""

import numpy as np
import pytest

from mlproject.models import noise

NUMPY = noise.int64_bits(np.bitwise_xor, np.right_shift, np.bitwise_and, lambda x: x.astype(np.float32))


def lowbias32(x: int) -> int:
    """The published hash, on Python's unbounded integers."""
    x ^= x >> 16
    x = x * 0x7FEB352D & 0xFFFFFFFF
    x ^= x >> 15
    x = x * 0x846CA68B & 0xFFFFFFFF
    return x ^ x >> 16


def test_the_mix_is_lowbias32():
    values = [0, 1, 12345, 0xDEADBEEF, 2**32 - 1]
    assert noise.mix(np.array(values, dtype=np.int64), NUMPY).tolist() == [lowbias32(v) for v in values]


def test_tensorflow_and_pytorch_hash_as_numpy_does():
    import tensorflow as tf
    import torch

    from mlproject.models.keras_rnn.inference import TF_BITS
    from mlproject.models.transformers_lm.model import CPU_TORCH_BITS, TORCH_BITS

    seeds = np.array(noise.row_seeds(7, ["El ", "", "ñandú", "x" * 300]), dtype=np.int64)[:, None]
    ids = np.arange(500, dtype=np.int64)[None, :]
    expected = noise.hashed(seeds, np.int64(41), ids, NUMPY)
    on_tf = noise.hashed(
        tf.constant(seeds, tf.uint32), tf.constant(41, tf.uint32), tf.constant(ids, tf.uint32), TF_BITS
    )
    on_torch = noise.hashed(torch.tensor(seeds), torch.tensor(41), torch.tensor(ids), TORCH_BITS)
    assert np.array_equal(on_tf.numpy().astype(np.int64), expected)
    assert np.array_equal(on_torch.numpy(), expected)
    # The CPU's 32-bit patterns: the same bits, and the same noise to the last bit.
    on_cpu = noise.hashed(torch.tensor(seeds), torch.tensor(41), torch.tensor(ids, dtype=torch.int32), CPU_TORCH_BITS)
    assert on_cpu.dtype == torch.int32
    assert np.array_equal(on_cpu.numpy().astype(np.int64) & noise.MASK_32, expected)
    assert torch.equal(noise.gumbel(on_cpu, torch.log, CPU_TORCH_BITS), noise.gumbel(on_torch, torch.log, TORCH_BITS))
    assert noise.gumbel(on_tf, tf.math.log, TF_BITS).numpy() == pytest.approx(
        noise.gumbel(on_torch, torch.log, TORCH_BITS).numpy(), rel=1e-5, abs=1e-6
    )  # each library's own log


def test_gumbel_max_draws_follow_the_softmax():
    probabilities = np.array([0.5, 0.3, 0.15, 0.05])
    seeds = np.array(noise.row_seeds(3, [f"prompt {i}" for i in range(200)]), dtype=np.int64)[:, None]
    drawn = []
    for step in range(100):  # 20,000 draws: 200 prompts x 100 steps
        hashes = noise.hashed(seeds, np.int64(step), np.arange(4, dtype=np.int64)[None, :], NUMPY)
        drawn.append(np.argmax(np.log(probabilities) + noise.gumbel(hashes, np.log, NUMPY), axis=1))
    frequencies = np.bincount(np.concatenate(drawn), minlength=4) / 20000
    assert frequencies == pytest.approx(probabilities, abs=0.012)  # about 3.5 standard errors


def test_each_prompt_and_seed_has_its_own_key():
    keys = noise.row_seeds(1, ["El ", "La ", "", "El  "]) + noise.row_seeds(2, ["El "])
    assert len(set(keys)) == len(keys) and noise.row_seeds(1, ["El "]) == noise.row_seeds(1, ["El "])


def test_the_logits_processor_adds_the_same_noise_however_many_rows_it_takes_at_once(monkeypatch):
    import torch

    from mlproject.models.transformers_lm import model
    from mlproject.models.transformers_lm.model import TORCH_BITS, GumbelNoise

    seeds = noise.row_seeds(5, ["El ", "", "ñandú", "x" * 300, "La "])
    scores, input_ids = torch.randn(5, 500), torch.zeros(5, 9, dtype=torch.long)
    step = torch.tensor(9 - 4)
    whole = noise.hashed(torch.tensor(seeds)[:, None], step, torch.arange(500)[None, :], TORCH_BITS)
    expected = scores + noise.gumbel(whole, torch.log, TORCH_BITS)
    for rows in (1, 2, 5):  # blocks of 1, 2 (the last one short) and all 5 rows
        monkeypatch.setattr(model, "NOISE_BLOCK_BYTES", rows * 4 * 500)
        assert torch.equal(GumbelNoise(seeds, prompt_width=4)(input_ids, scores), expected)
