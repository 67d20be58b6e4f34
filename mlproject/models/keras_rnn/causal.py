"""The `rnn` kind: a Keras GRU or LSTM reading text left to right, characters or words.

It scores text statefully (each token predicted from all the text before it in its stream) and
samples a whole batch of prompts one recurrent step per new token, both through `inference.Forward`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from mlproject.config import EvaluateConfig, Paths, TrainConfig
from mlproject.data.tokens import Vocabulary
from mlproject.models import noise
from mlproject.models.interface import LanguageModel, Sampling, Totals, TrainingResult
from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn

NETWORK_FILE, VOCAB_FILE, CONFIG_FILE = "model.keras", "vocab.json", "architecture.json"


class RecurrentModel(LanguageModel):
    kind = "rnn"

    def __init__(self, network, vocabulary: Vocabulary, config: TrainConfig, separator: str = "\n\n"):
        self.network, self.vocabulary, self.config, self.separator = network, vocabulary, config, separator
        self._compiled = {}

    @property
    def token_level(self) -> str:
        return self.vocabulary.level

    # -- training and persistence ------------------------------------------------------------
    @classmethod
    def train(cls, config: TrainConfig, seed: int, paths: Paths, on_epoch=None, run_id=None,
              stop_after=None, on_step=None, scoring=None) -> TrainingResult:
        use_onednn(training=True)  # before TensorFlow starts
        from mlproject.models.keras_rnn import training

        return training.train(cls, config, seed, paths, on_epoch, run_id, stop_after)

    @classmethod
    def resumable_run_id(cls, config: TrainConfig, seed: int, paths: Paths) -> str | None:
        from mlproject.models.keras_rnn.training import resumable_run_id

        return resumable_run_id(config, seed, paths)

    def save(self, folder: Path) -> None:
        from mlproject.models.keras_rnn.network import save_network

        save_network(self.network, folder / NETWORK_FILE)
        (folder / VOCAB_FILE).write_text(self.vocabulary.to_json(), encoding="utf-8")
        (folder / CONFIG_FILE).write_text(json.dumps(
            {"train": dataclasses.asdict(self.config), "separator": self.separator}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "RecurrentModel":
        use_onednn(training=False)  # before TensorFlow starts
        from mlproject.models.keras_rnn.network import load_network

        saved = json.loads((folder / CONFIG_FILE).read_text())
        return cls(load_network(folder / NETWORK_FILE, compile=False), Vocabulary.load(folder / VOCAB_FILE),
                   TrainConfig(**saved["train"]), saved["separator"])

    def compiled(self, name: str, make):
        """One compiled function per model and purpose, traced on first use."""
        if name not in self._compiled:
            self._compiled[name] = make()
        return self._compiled[name]

    def forward(self):
        from mlproject.models.keras_rnn.inference import Forward

        return self.compiled("forward", lambda: Forward(self.network, self.config))

    # -- scoring -----------------------------------------------------------------------------
    def score(self, text: str, config: EvaluateConfig) -> Totals:
        """Summed negative log-likelihood of `text`, read statefully in parallel contiguous streams.

        The text is cut into `config.streams` contiguous pieces read side by side; within a piece
        the recurrent state is carried from chunk to chunk, so every token is predicted from all
        the text before it in its piece. The first token of each piece has no context and is not
        scored.
        """
        ids = self.vocabulary.encode(text)
        nll, scored = self.score_ids(ids, config)
        return self.totals(text, nll, scored)

    def totals(self, text: str, nll: float, scored: list[int]) -> Totals:
        pieces = self.vocabulary.split(text)
        characters = sum(len(pieces[i]) for i in scored)
        utf8 = sum(len(pieces[i].encode("utf-8")) for i in scored)
        return Totals(float(nll), len(scored), characters, utf8)

    def score_ids(self, ids: np.ndarray, config: EvaluateConfig) -> tuple[float, list[int]]:
        import tensorflow as tf

        from mlproject.models.keras_rnn.inference import make_scorer

        forward = self.forward()
        score_chunk = self.compiled("scorer", lambda: make_scorer(forward))
        streams = max(1, min(config.streams, len(ids) // 2))
        length = -(-len(ids) // streams)
        padded = np.full(streams * length, -1, dtype=np.int64)
        padded[: len(ids)] = ids
        grid = padded.reshape(streams, length)
        positions = np.arange(streams * length).reshape(streams, length)
        states = forward.zero_states(streams)
        total, scored = 0.0, []
        for start in range(0, length - 1, config.chunk_length):
            inputs = grid[:, start:start + config.chunk_length]
            targets = grid[:, start + 1:start + 1 + config.chunk_length]
            inputs = inputs[:, : targets.shape[1]]
            picked, states = score_chunk(tf.constant(np.maximum(inputs, 0), tf.int32),
                                         tf.constant(np.maximum(targets, 0), tf.int32), states)
            valid = (targets >= 0) & (inputs >= 0)
            total -= picked.numpy().astype(np.float64)[valid].sum()
            scored.extend(positions[:, start + 1:start + 1 + targets.shape[1]][valid].tolist())
        return total, sorted(scored)

    # -- generation --------------------------------------------------------------------------
    def generate(self, prompts: list[str], sampling: Sampling, batch_size: int = 256) -> list[str]:
        """Continue each prompt by `sampling.max_length` tokens; a prompt's text depends only on
        the prompt, the settings and the seed."""
        texts = []
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            primes = [self.vocabulary.encode(self.separator + p) for p in batch]
            ids = self.sample(primes, sampling, noise.row_seeds(sampling.seed, batch))
            texts.extend(self.vocabulary.decode(row) for row in ids)
        return texts

    def prime_grid(self, primes: list[np.ndarray]) -> np.ndarray:
        """Prompts left-aligned; a row whose prompt has ended holds its state."""
        prime = np.zeros((len(primes), max(len(p) for p in primes)), dtype=np.int32)
        for row, ids in enumerate(primes):
            prime[row, : len(ids)] = ids
        return prime

    def sampler(self):
        from mlproject.models.keras_rnn.inference import make_sampler

        return self.compiled("sampler", lambda: make_sampler(self.forward()))

    def sample(self, primes: list[np.ndarray], sampling: Sampling, seeds: list[int]) -> np.ndarray:
        import tensorflow as tf

        if sampling.temperature == 0:  # greedy: the likeliest token, which top-k 1 keeps alone
            sampling = dataclasses.replace(sampling, temperature=1.0, top_k=1)
        prime = self.prime_grid(primes)
        lengths = np.array([min(len(p), prime.shape[1]) for p in primes], dtype=np.int32)
        ids = self.sampler()(tf.constant(prime), tf.constant(lengths), tf.constant(sampling.max_length),
                             tf.constant(float(sampling.temperature)), tf.constant(int(sampling.top_k)),
                             tf.constant(float(sampling.top_p)), tf.constant(seeds, tf.uint32))
        return ids.numpy()
