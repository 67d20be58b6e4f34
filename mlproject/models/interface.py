"""The language-model interface every model kind implements, and the figures it reports.

Evaluate, register (the MLflow pyfunc), promote (re-scoring a champion) and generate speak only to
this interface, so they never know which kind of model, or which framework, answers.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from mlproject.config import EvaluateConfig, Paths, Sampling
from mlproject.models.settings import Training


@dataclass(frozen=True)
class Totals:
    """Sums over the scored text; every derived figure comes from these, never from averages."""

    nll_nats: float  # what every scored byte cost, spelled ones included
    tokens: int
    characters: int  # of the text the scored tokens stand for
    bytes: int
    spelled_bytes: int = 0  # of tokens outside the vocabulary, paid for by its speller
    # Each scored token's cost in nats (its spelling included) and the character of the text it
    # starts at, in text order: what a document of the text cost (evaluation.document_scores).
    token_costs: np.ndarray | None = field(default=None, compare=False, repr=False)
    token_starts: np.ndarray | None = field(default=None, compare=False, repr=False)

    def figures(self) -> dict:
        ln2 = float(np.log(2.0))
        return {
            "nll_nats": self.nll_nats,
            "tokens": self.tokens,
            "characters": self.characters,
            "bytes": self.bytes,
            "spelled_bytes": self.spelled_bytes,
            "vocabulary_byte_coverage": 1 - self.spelled_bytes / self.bytes,
            "perplexity": float(np.exp(self.nll_nats / self.tokens)),
            "bits_per_token": self.nll_nats / self.tokens / ln2,
            "bits_per_character": self.nll_nats / self.characters / ln2,
            "bits_per_byte": self.nll_nats / self.bytes / ln2,
        }


@dataclass(frozen=True)
class TrainingResult:
    history: list[dict]  # one record per epoch: epoch, loss, val_loss
    parameters: int
    best_epoch: int  # whose weights were saved
    stopped_early: bool
    resumed_from_epoch: int
    run_id: str | None = None  # the MLflow run the checkpoints belong to
    baseline: dict | None = None  # LanguageModel.baseline of the trained model


OnRecord = Callable[[dict], None]  # a record of figures: per epoch ("epoch") or per step ("step")


class LanguageModel(ABC):
    """A trained model with its tokenizer, saved as one folder that records its kind."""

    kind: ClassVar[str]  # the name in params (`train.kind`) and in models.KINDS
    # The figures of the model before it saw this corpus (a pretrained base's zero-shot score on
    # the validation text), when the kind has such a thing; evaluate reports it beside its own.
    baseline: dict | None = None

    @property
    @abstractmethod
    def token_level(self) -> str:
        """What one token is (char, word, subword): perplexity per token is per this."""

    @classmethod
    @abstractmethod
    def train(
        cls,
        config: Training,
        seed: int,
        paths: Paths,
        on_epoch: OnRecord | None = None,
        run_id: str | None = None,
        stop_after: int | None = None,
        on_step: OnRecord | None = None,
        scoring: EvaluateConfig | None = None,
    ) -> TrainingResult:
        """Fit on `paths.tokens`, checkpointing into `paths.checkpoints` and resuming from them;
        save the best weights to `paths.model`. Raise InterruptedError when stopped on request.
        `on_step` gets per-step figures where the kind has them; `scoring` is how a baseline is
        scored."""

    @classmethod
    @abstractmethod
    def checkpoint_fingerprint(cls, config: Training, seed: int, paths: Paths) -> str:
        """What a checkpoint of this training is trained from (params, seed, data and training
        code): `train` resumes only a checkpoint with the same fingerprint."""

    @classmethod
    def resumable_run_id(cls, config: Training, seed: int, paths: Paths) -> str | None:
        """The MLflow run of an interrupted training that `train` would resume, if any."""
        from mlproject.models import epoch_log

        return epoch_log.resumable_run_id(paths.checkpoints, lambda: cls.checkpoint_fingerprint(config, seed, paths))

    def tags(self) -> dict:
        """What the registry records about this model beside its kind (a base model, a shape)."""
        return {}

    @abstractmethod
    def round_trip(self, text: str) -> str:
        """The text the model's tokens of `text` stand for (encoded, then decoded, any token outside
        the vocabulary spelled out): a score is a cost of `text` only where this is `text`."""

    @abstractmethod
    def score(self, text: str, config: EvaluateConfig) -> Totals:
        """Summed negative log-likelihood of every byte of `text` and what it was summed over."""

    @abstractmethod
    def generate(self, prompts: list[str], sampling: Sampling) -> list[str]:
        """A continuation of each prompt; the same prompts, settings and seed give the same texts."""

    def stream(self, prompt: str, sampling: Sampling, stop=None) -> Iterator[str]:
        """The continuation of `prompt` as it is written, each item the text so far, the last the
        text `generate` gives; writing ends early once the threading.Event `stop` is set.

        Here: the texts of 16, 32, 64... tokens, each a call of `generate` (a text's first tokens do
        not depend on how many follow), at most about twice the time of one call; a kind that can
        hand over each token as it is written does so instead."""
        length = min(16, sampling.max_length)
        while True:
            yield self.generate([prompt], dataclasses.replace(sampling, max_length=length))[0]
            if length == sampling.max_length or (stop is not None and stop.is_set()):
                return
            length = min(2 * length, sampling.max_length)

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Everything `load` needs, into an existing empty folder (`kinds.save` records the kind)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> "LanguageModel":
        """The model `save` wrote."""
