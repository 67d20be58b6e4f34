"""The Keras network of both RNN kinds: embedding, recurrent layers (dropout between), logits.

The same layer names and weights whichever layers train it (`train.fast_layers`), so a model saved
with one loads and runs with the other, and inference reads its weights by these names.
"""

from __future__ import annotations

import os
import random

import numpy as np

from mlproject.config import TrainConfig


def set_seed(seed: int) -> None:
    """One seed for Python, NumPy and TensorFlow, with deterministic TensorFlow kernels."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def layer_name(config: TrainConfig, index: int) -> str:
    return f"{config.cell}_{index}"


def recurrent_layer(config: TrainConfig, index: int, return_sequences: bool):
    import keras

    if config.fast_layers:
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import ProjectedGRU, ProjectedLSTM

        cell = {"gru": ProjectedGRU, "lstm": ProjectedLSTM}[config.cell]
    else:
        cell = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.cell]
    layer = cell(config.units, return_sequences=return_sequences, unroll=config.unroll,
                 name=layer_name(config, index))
    if config.kind == "window_rnn":
        layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index}")
    return layer


def build_network(config: TrainConfig, vocab_size: int):
    """Tokens (batch, time) to next-token logits: per position, or after the window for target last."""
    import keras

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(tokens)
    for index in range(config.layers):
        last = index == config.layers - 1
        x = recurrent_layer(config, index, return_sequences=not (last and config.target == "last"))(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    if config.fast_layers:
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import (FoldedEmbeddingModel,
                                                                         check_keras_internals)

        check_keras_internals()
        return FoldedEmbeddingModel(tokens, logits, name=f"rnn_{config.cell}")
    return keras.Model(tokens, logits, name=f"rnn_{config.cell}")


def load_network(path, compile: bool = True):
    """A saved network, whichever layers trained it."""
    import keras

    import mlproject.models.keras_rnn.fast_cpu.keras_internals  # noqa: F401  registers the fast layers' classes

    return keras.models.load_model(path, compile=compile)
