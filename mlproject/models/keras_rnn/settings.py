"""The settings of the Keras kinds (params.yaml `train.rnn` and `train.window_rnn`), beside the
shared ones (mlproject/models/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from mlproject.models.settings import Training
from mlproject.param_rules import param


@dataclass(frozen=True)
class RnnTraining(Training):
    cell: str = param("gru", "recurrent cell", ("gru", "lstm"))
    layers: int = param(1, "stacked recurrent layers", minimum=1, maximum=8)
    units: int = param(256, "units per recurrent layer", minimum=1)
    embedding_dim: int = param(64, "embedding size", minimum=1)
    dropout: float = param(0.0, "dropout between layers", minimum=0.0, maximum=0.95)
    sequence_length: int = param(100, "tokens per training window", minimum=2)
    step: int = param(0, "tokens between window starts; 0 means sequence_length (no overlap)", minimum=0)
    target: str = param(
        "all",
        "all: predict every next token in the window (TF tutorial); "
        "last: only the token after the window (Chollet, lyrics)",
        ("all", "last"),
    )
    unroll: bool = param(
        True,
        "unroll the recurrence over the training window: faster training "
        "on CPU (benchmarks/RESULTS.md), more memory for long windows",
    )
    fast_layers: bool = param(
        True,
        "train with the project's CPU layers (input projection out of "
        "the loop; they rely on Keras internals: fast_cpu/keras_internals.py); "
        "false: Keras's own GRU/LSTM layers, slower, same weights",
    )
    max_minutes: float = param(
        0.0,
        "end training within this many minutes (all of the train stage): after the batch beyond which "
        "one more and the epoch's validation and checkpoints would overrun it, that epoch kept like any "
        "other (the learning rate is constant: nothing to fit); 0: no budget",
        minimum=0.0,
    )


@dataclass(frozen=True)
class WindowRnnTraining(RnnTraining):
    target: str = param(
        "last",
        "last: the token after the window, the only target a bidirectional "
        "layer can learn (it sees the whole window, so it would see every other one)",
        ("last",),
    )
