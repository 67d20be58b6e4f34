"""The Keras recurrent language model: the network trained, and its stateful twin for inference.

Training uses `build_model`; scoring and sampling use `build_stepper`, the same layers with their
states exposed, so text is read once, carrying the recurrent state instead of re-feeding windows.
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


def recurrent_layer(config: TrainConfig, index: int, return_sequences: bool, return_state: bool = False,
                    unroll: bool = False):
    import keras

    from mlproject.recurrent import ProjectedGRU, ProjectedLSTM

    cell = {"gru": ProjectedGRU, "lstm": ProjectedLSTM}[config.cell]
    layer = cell(config.units, return_sequences=return_sequences, return_state=return_state,
                 unroll=unroll, name=f"{config.cell}_{index}")
    if config.bidirectional:
        layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index}")
    return layer


def build_model(config: TrainConfig, vocab_size: int):
    """Tokens (batch, time) to next-token logits: per position, or after the window for target last."""
    import keras

    from mlproject.recurrent import CharRNN

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(tokens)
    for index in range(config.layers):
        last = index == config.layers - 1
        x = recurrent_layer(config, index, return_sequences=not (last and config.target == "last"),
                            unroll=config.unroll)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{index}")(x)
    logits = keras.layers.Dense(vocab_size, name="logits")(x)
    return CharRNN(tokens, logits, name=f"char_rnn_{config.cell}")


def state_sizes(config: TrainConfig) -> list[int]:
    per_layer = 2 if config.cell == "lstm" else 1
    return [config.units] * per_layer * config.layers


def build_stepper(config: TrainConfig, trained):
    """(tokens, *states) -> (logits per position, *states), sharing the trained model's weights."""
    import keras

    if config.bidirectional:
        raise ValueError("a bidirectional model has no causal state to carry; use windows")
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    states_in = [keras.Input(shape=(size,), name=f"state_{i}") for i, size in enumerate(state_sizes(config))]
    x = keras.layers.Embedding(trained.get_layer("embedding").input_dim, config.embedding_dim,
                               name="embedding")(tokens)
    states_out, per_layer = [], len(states_in) // config.layers
    for index in range(config.layers):
        initial = states_in[index * per_layer:(index + 1) * per_layer]
        x, *states = recurrent_layer(config, index, True, return_state=True)(x, initial_state=initial)
        states_out.extend(states)
    logits = keras.layers.Dense(trained.get_layer("logits").units, name="logits")(x)
    stepper = keras.Model([tokens, *states_in], [logits, *states_out], name="stepper")
    stepper.set_weights(trained.get_weights())
    return stepper
