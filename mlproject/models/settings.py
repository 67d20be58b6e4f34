"""The training settings every kind shares (params.yaml `train`), and how a kind's own settings
(`train.<kind>`, a subclass declared in the kind's package) are read, checked and saved."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

from mlproject.models import KINDS, SETTINGS
from mlproject.param_rules import ConfigError, check_value, param


@dataclass(frozen=True)
class Training:
    kind: str = param(
        "rnn",
        "model kind (mlproject/models): rnn: a Keras GRU or LSTM reading the "
        "text left to right; window_rnn: bidirectional Keras layers over a window of "
        "preceding tokens (the lyrics model), predicting the token after it; finetune: a "
        "pretrained transformers causal LM (base_model) fine-tuned; gpt: a small GPT "
        "trained from scratch with its own byte-level BPE tokenizer. Its own settings are "
        "in the section of its name (train.rnn, train.gpt...)",
        tuple(KINDS),
    )
    batch_size: int = param(64, "windows (blocks) per batch", minimum=1)
    epochs: int = param(6, "passes over the training text (at most: see patience)", minimum=1)
    patience: int = param(
        2,
        "stop when the validation loss has not improved for this many "
        "epochs; the best epoch's weights are kept either way; 0: never stop early",
        minimum=0,
    )
    max_steps_per_epoch: int = param(
        0, "cap on batches (transformers kinds: optimizer steps) per epoch; 0 means the whole text", minimum=0
    )
    learning_rate: float = param(0.003, "optimizer learning rate", minimum=0.0)
    optimizer: str = param("adam", "optimizer", ("adam", "rmsprop", "sgd"))

    def check(self) -> None:
        """Rules that join several settings; a kind's class adds its own."""


SHARED = tuple(f.name for f in dataclasses.fields(Training))


def settings_class(kind: str) -> type[Training]:
    """The settings dataclass of kind `kind`, imported now."""
    if kind not in SETTINGS:
        raise ConfigError(f"train.kind = {kind!r}: expected one of {', '.join(SETTINGS)}")
    module, _, name = SETTINGS[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def own_keys(cls: type[Training]) -> list[str]:
    """The settings of a kind beyond the shared ones, in declaration order."""
    return [f.name for f in dataclasses.fields(cls) if f.name not in SHARED]


def for_kind(shared: Training, own) -> Training:
    """The whole settings of `shared.kind`: the shared ones and its section `own`, checked, each bad
    key named as `train.<kind>.<key>`."""
    cls, prefix = settings_class(shared.kind), f"train.{shared.kind}"
    own = {} if own is None else own
    if not isinstance(own, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys to values, got {own!r}")
    known = own_keys(cls)
    for key in own:
        if key not in known:
            where = f"; it is a shared key: train.{key}" if key in SHARED else ""
            raise ConfigError(
                f"{prefix}.{key}: unknown param for kind {shared.kind}{where}; known: {', '.join(sorted(known))}"
            )
    values = {key: check_value(cls, key, value, f"{prefix}.{key}") for key, value in own.items()}
    settings = cls(**{name: getattr(shared, name) for name in SHARED}, **values)
    settings.check()
    return settings


def saved_settings(cls: type[Training], saved: dict) -> Training:
    """Settings as a saved model recorded them; keys of other kinds (a model saved before each kind
    had its own section) are left out."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in saved.items() if key in names})


def moved_key(key: str, kind: str) -> str | None:
    """Where a key of an old flat `train` section lives now, or None if no kind has it."""
    owners = [name for name in SETTINGS if key in own_keys(settings_class(name))]
    if not owners:
        return None
    first = kind if kind in owners else owners[0]
    others = [name for name in owners if name != first]
    also = f" (and train.{', train.'.join(f'{o}.{key}' for o in others)})" if others else ""
    return (
        f"train.{key}: moved to train.{first}.{key}{also}; each kind's own settings have a "
        f"section of their own in params.yaml"
    )
