"""The `rnn` kind: a Keras GRU or LSTM reading text left to right, characters or words.

It scores text statefully (each token predicted from all the text before it in its stream) and
samples a whole batch of prompts one recurrent step per new token, both through `inference.Forward`.
A token outside the vocabulary costs P(<unk>) times its spelling (the vocabulary's speller), and a
generated <unk> is a token the speller writes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from mlproject.config import EvaluateConfig, Paths
from mlproject.data.tokens import Vocabulary
from mlproject.models import noise
from mlproject.models.interface import LanguageModel, Sampling, Totals, TrainingResult
from mlproject.models.keras_rnn.fast_cpu.onednn import use_onednn
from mlproject.models.keras_rnn.settings import RnnTraining
from mlproject.models.settings import saved_settings, settings_class

NETWORK_FILE, VOCAB_FILE, CONFIG_FILE = "model.keras", "vocab.json", "architecture.json"


class RecurrentModel(LanguageModel):
    kind = "rnn"

    def __init__(self, network, vocabulary: Vocabulary, config: RnnTraining, separator: str = "\n\n"):
        self.network, self.vocabulary, self.config, self.separator = network, vocabulary, config, separator
        self._compiled = {}

    @property
    def token_level(self) -> str:
        return self.vocabulary.level

    # -- training and persistence ------------------------------------------------------------
    @classmethod
    def train(
        cls,
        config: RnnTraining,
        seed: int,
        paths: Paths,
        on_epoch=None,
        run_id=None,
        stop_after=None,
        on_step=None,
        scoring=None,
    ) -> TrainingResult:
        use_onednn(training=True)  # before TensorFlow starts
        from mlproject.models.keras_rnn import training

        return training.train(cls, config, seed, paths, on_epoch, run_id, stop_after)

    @classmethod
    def checkpoint_fingerprint(cls, config: RnnTraining, seed: int, paths: Paths) -> str:
        from mlproject.models.keras_rnn.training import fingerprint

        return fingerprint(config, seed, Path(paths.tokens))

    def save(self, folder: Path) -> None:
        from mlproject.models.keras_rnn.network import save_network

        save_network(self.network, folder / NETWORK_FILE)
        (folder / VOCAB_FILE).write_text(self.vocabulary.to_json(), encoding="utf-8")
        (folder / CONFIG_FILE).write_text(
            json.dumps({"train": dataclasses.asdict(self.config), "separator": self.separator}, indent=2)
        )

    @classmethod
    def load(cls, folder: Path) -> "RecurrentModel":
        use_onednn(training=False)  # before TensorFlow starts
        from mlproject.models.keras_rnn.network import load_network

        saved = json.loads((folder / CONFIG_FILE).read_text())
        return cls(
            load_network(folder / NETWORK_FILE, compile=False),
            Vocabulary.load(folder / VOCAB_FILE),
            saved_settings(settings_class(saved["train"].get("kind", cls.kind)), saved["train"]),
            saved["separator"],
        )

    def compiled(self, name: str, make):
        """One compiled function per model and purpose, traced on first use."""
        if name not in self._compiled:
            self._compiled[name] = make()
        return self._compiled[name]

    def forward(self):
        from mlproject.models.keras_rnn.inference import Forward

        return self.compiled("forward", lambda: Forward(self.network, self.config))

    def round_trip(self, text: str) -> str:
        return self.vocabulary.round_trip(text)

    # -- scoring -----------------------------------------------------------------------------
    def score(self, text: str, config: EvaluateConfig) -> Totals:
        """Summed negative log-likelihood of every token of `text`, read statefully in parallel
        contiguous streams after the document separator (as every document in training follows one).

        The text is cut into `config.streams` contiguous pieces read side by side; within a piece
        the recurrent state is carried from chunk to chunk, so every token is predicted from all
        the text before it in its piece (the first piece's first token from the separator, each
        other piece's first token from the token before it).
        """
        context = self.context_ids()
        costs, scored = self.score_ids(np.concatenate([context, self.vocabulary.encode(text)]), len(context), config)
        return self.totals(text, costs, scored)

    def context_ids(self) -> np.ndarray:
        """What a text is read after: the separator's tokens, or <unk> where it is empty."""
        return self.vocabulary.encode(self.separator) if self.separator else np.zeros(1, np.int32)

    def totals(self, text: str, costs: np.ndarray, scored: list[int]) -> Totals:
        """The scored tokens' totals from each token's cost (`costs`, by token); those outside the
        vocabulary also pay for their spelling."""
        pieces, scored_set = self.vocabulary.split(text), set(scored)
        costs = costs.astype(np.float64)  # a copy: the spellings are added to it
        spelled = []
        for k, piece in self.vocabulary.unknown_pieces(text):
            if k in scored_set:
                costs[k] += self.vocabulary.speller.nats(piece)
                spelled.append(piece)
        starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]]) if pieces else np.zeros(0, np.int64)
        return Totals(
            float(costs[scored].sum()),
            len(scored),
            sum(len(pieces[i]) for i in scored),
            sum(len(pieces[i].encode("utf-8")) for i in scored),
            sum(len(piece.encode("utf-8")) for piece in spelled),
            token_costs=costs[scored],
            token_starts=starts[scored],
        )

    def score_ids(self, ids: np.ndarray, first: int, config: EvaluateConfig) -> tuple[np.ndarray, list[int]]:
        """The NLL of each of `ids[first:]` (0 where unscored), and which of them (counted from
        `first`) were scored."""
        import tensorflow as tf

        from mlproject.models.keras_rnn.inference import make_scorer

        forward = self.forward()
        score_chunk = self.compiled("scorer", lambda: make_scorer(forward))
        positions = stream_rows(len(ids), first, config.streams)
        grid = np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
        states = forward.zero_states(len(grid))
        costs, scored = np.zeros(len(ids) - first, np.float64), []
        for start in range(0, grid.shape[1] - 1, config.chunk_length):
            inputs = grid[:, start : start + config.chunk_length]
            targets = grid[:, start + 1 : start + 1 + config.chunk_length]
            inputs = inputs[:, : targets.shape[1]]
            picked, states = score_chunk(
                tf.constant(np.maximum(inputs, 0), tf.int32), tf.constant(np.maximum(targets, 0), tf.int32), states
            )
            target_positions = positions[:, start + 1 : start + 1 + targets.shape[1]]
            valid = (targets >= 0) & (inputs >= 0) & (target_positions >= first)
            costs[target_positions[valid] - first] = -picked.numpy().astype(np.float64)[valid]
            scored.extend((target_positions[valid] - first).tolist())
        return costs, sorted(scored)

    # -- generation --------------------------------------------------------------------------
    def generate(self, prompts: list[str], sampling: Sampling, batch_size: int = 256) -> list[str]:
        """Continue each prompt by `sampling.max_length` tokens; a prompt's text depends only on
        the prompt, the settings and the seed."""
        texts = []
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            primes = [self.vocabulary.encode(self.separator + p) for p in batch]
            seeds = noise.row_seeds(sampling.seed, batch)
            ids = self.sample(primes, sampling, seeds)
            texts.extend(self.vocabulary.spell_unknown(row, seed) for row, seed in zip(ids, seeds))
        return texts

    def prime_grid(self, primes: list[np.ndarray]) -> np.ndarray:
        """Prompts left-aligned; a row whose prompt has ended holds its state."""
        prime = np.zeros((len(primes), max(len(p) for p in primes)), dtype=np.int32)
        for row, ids in enumerate(primes):
            prime[row, : len(ids)] = ids
        return prime

    def sampler(self):
        from mlproject.models.keras_rnn.inference import make_sampler

        return self.compiled("sampler", lambda: make_sampler(self.forward(), not self.vocabulary.speller.fitted))

    def sample(self, primes: list[np.ndarray], sampling: Sampling, seeds: list[int]) -> np.ndarray:
        import tensorflow as tf

        if sampling.temperature == 0:  # greedy: the likeliest token, which top-k 1 keeps alone
            sampling = dataclasses.replace(sampling, temperature=1.0, top_k=1)
        prime = self.prime_grid(primes)
        lengths = np.array([min(len(p), prime.shape[1]) for p in primes], dtype=np.int32)
        ids = self.sampler()(
            tf.constant(prime),
            tf.constant(lengths),
            tf.constant(sampling.max_length),
            tf.constant(float(sampling.temperature)),
            tf.constant(int(sampling.top_k)),
            tf.constant(float(sampling.top_p)),
            tf.constant(seeds, tf.uint32),
        )
        return ids.numpy()


def stream_rows(length: int, first: int, streams: int) -> np.ndarray:
    """The positions of a stream of `length` tokens read as rows side by side (-1 pads): the
    positions from `first` on cut into up to `streams` contiguous pieces, each row starting one
    token before its piece (the first row at 0, so all of `ids[:first]` is its context)."""
    streams = max(1, min(streams, (length - first) // 2))
    bounds = np.linspace(first, length, streams + 1).round().astype(int)
    rows = [np.arange(0 if k == 0 else start - 1, end) for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:]))]
    grid = np.full((len(rows), max(len(r) for r in rows)), -1, dtype=np.int64)
    for k, row in enumerate(rows):
        grid[k, : len(row)] = row
    return grid
