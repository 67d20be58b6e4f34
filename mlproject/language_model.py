"""A trained model with its vocabulary: scores text and generates it, whatever stage asks.

Evaluation, promotion (re-scoring a champion) and the MLflow pyfunc all go through this class, so
a figure in metrics.json and a generation from the registry come from the same code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlproject.config import TrainConfig
from mlproject.tokens import Vocabulary

MODEL_FILE, VOCAB_FILE, CONFIG_FILE = "model.keras", "vocab.json", "architecture.json"


@dataclass(frozen=True)
class Totals:
    """Sums over the scored text; every derived figure comes from these, never from averages."""
    nll_nats: float
    tokens: int
    characters: int
    bytes: int

    def figures(self) -> dict:
        ln2 = float(np.log(2.0))
        return {
            "nll_nats": self.nll_nats, "tokens": self.tokens, "characters": self.characters,
            "bytes": self.bytes,
            "perplexity": float(np.exp(self.nll_nats / self.tokens)),
            "bits_per_token": self.nll_nats / self.tokens / ln2,
            "bits_per_character": self.nll_nats / self.characters / ln2,
            "bits_per_byte": self.nll_nats / self.bytes / ln2,
        }


class LanguageModel:
    def __init__(self, model, vocabulary: Vocabulary, config: TrainConfig, separator: str = "\n\n"):
        self.model, self.vocabulary, self.config, self.separator = model, vocabulary, config, separator
        self._stepper = None
        self._sampler = None
        self._score_step = None

    # -- persistence -------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save(directory / MODEL_FILE)
        (directory / VOCAB_FILE).write_text(self.vocabulary.to_json(), encoding="utf-8")
        (directory / CONFIG_FILE).write_text(json.dumps(
            {"train": dataclasses.asdict(self.config), "separator": self.separator}, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "LanguageModel":
        import keras

        import mlproject.recurrent  # noqa: F401  registers the layer classes a saved model names

        directory = Path(directory)
        saved = json.loads((directory / CONFIG_FILE).read_text())
        model = keras.models.load_model(directory / MODEL_FILE, compile=False)
        return cls(model, Vocabulary.load(directory / VOCAB_FILE), TrainConfig(**saved["train"]),
                   saved["separator"])

    # -- scoring -----------------------------------------------------------------------------
    def score(self, text: str, streams: int = 32, chunk_length: int = 256) -> Totals:
        """Summed negative log-likelihood of `text`, read statefully in parallel contiguous streams.

        The text is cut into `streams` contiguous pieces read side by side; within a piece the
        recurrent state is carried from chunk to chunk, so every token is predicted from all the
        text before it in its piece. The first token of each piece has no context and is not scored.
        """
        pieces = self.vocabulary.split(text)
        ids = self.vocabulary.encode(text)
        if self.config.bidirectional:
            nll, scored = self._score_windows(ids)
        else:
            nll, scored = self._score_stateful(ids, streams, chunk_length)
        characters = sum(len(pieces[i]) for i in scored)
        utf8 = sum(len(pieces[i].encode("utf-8")) for i in scored)
        return Totals(float(nll), len(scored), characters, utf8)

    def _score_stateful(self, ids: np.ndarray, streams: int, chunk_length: int):
        import tensorflow as tf

        streams = max(1, min(streams, len(ids) // 2))
        length = -(-len(ids) // streams)
        padded = np.full(streams * length, -1, dtype=np.int64)
        padded[: len(ids)] = ids
        grid = padded.reshape(streams, length)
        positions = np.arange(streams * length).reshape(streams, length)
        step = self._scoring_step()
        states = [tf.zeros((streams, size)) for size in self.state_sizes()]
        total, scored = 0.0, []
        for start in range(0, length - 1, chunk_length):
            inputs = grid[:, start:start + chunk_length]
            targets = grid[:, start + 1:start + 1 + chunk_length]
            inputs = inputs[:, : targets.shape[1]]
            picked, states = step(tf.constant(np.maximum(inputs, 0), tf.int32),
                                  tf.constant(np.maximum(targets, 0), tf.int32), states)
            valid = (targets >= 0) & (inputs >= 0)
            total -= picked.numpy().astype(np.float64)[valid].sum()
            scored.extend(positions[:, start + 1:start + 1 + targets.shape[1]][valid].tolist())
        return total, sorted(scored)

    def _scoring_step(self):
        """Compiled: log-probabilities of the targets of one chunk, and the states after it."""
        import tensorflow as tf

        if self._score_step is None:
            stepper = self.stepper()

            @tf.function(reduce_retracing=True)
            def score_step(inputs, targets, states):
                logits, *states = stepper([inputs, *states], training=False)
                log_probs = tf.nn.log_softmax(logits)
                return tf.gather(log_probs, targets, batch_dims=2), states

            self._score_step = score_step
        return self._score_step

    def _score_windows(self, ids: np.ndarray, batch_size: int = 256):
        """Each token after the first full window, predicted from the window before it."""
        length = self.config.sequence_length
        targets = np.arange(length, len(ids))
        total = 0.0
        for start in range(0, len(targets), batch_size):
            chunk = targets[start:start + batch_size]
            windows = np.stack([ids[t - length:t] for t in chunk])
            logits = self.model(windows, training=False).numpy().astype(np.float64)
            log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
            total -= log_probs[np.arange(len(chunk)), ids[chunk]].sum()
        return total, targets.tolist()

    # -- generation --------------------------------------------------------------------------
    def stepper(self):
        from mlproject.model import build_stepper

        if self._stepper is None:
            self._stepper = build_stepper(self.config, self.model)
        return self._stepper

    def state_sizes(self) -> list[int]:
        from mlproject.model import state_sizes

        return state_sizes(self.config)

    def generate(self, prompts: list[str], max_length: int = 200, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, batch_size: int = 256) -> list[str]:
        """Continue each prompt by `max_length` tokens; the same seed gives the same texts."""
        texts = []
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            primes = [self.vocabulary.encode(self.separator + p) for p in batch]
            ids = self._sample(primes, max_length, temperature, top_k, top_p, seed + start)
            texts.extend(self.vocabulary.decode(row) for row in ids)
        return texts

    def _sample(self, primes, steps, temperature, top_k, top_p, seed) -> np.ndarray:
        import tensorflow as tf

        from mlproject.sampling import make_sampler

        if self._sampler is None:
            self._sampler = make_sampler(self)
        width = max(len(p) for p in primes)
        if self.config.bidirectional:
            width = self.config.sequence_length
            primes = [p[-width:] for p in primes]
        fill = int(self.vocabulary.encode(self.separator[-1:] or " ")[0])
        prime = np.full((len(primes), width), fill, dtype=np.int32)
        for row, ids in enumerate(primes):
            # Stateful models read prompts left-aligned and hold finished rows; window models
            # read the last window, so their prompts are right-aligned after separator padding.
            if self.config.bidirectional:
                prime[row, width - len(ids):] = ids
            else:
                prime[row, : len(ids)] = ids
        lengths = np.array([len(p) for p in primes], dtype=np.int32)
        ids = self._sampler(tf.constant(prime), tf.constant(lengths), tf.constant(steps),
                            tf.constant(float(temperature)), tf.constant(int(top_k)),
                            tf.constant(float(top_p)), tf.constant(int(seed), tf.int64))
        return ids.numpy()
