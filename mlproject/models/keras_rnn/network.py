"""The Keras network of both RNN kinds: embedding, recurrent layers (dropout between), logits.

The same layer names and weights whichever layers train it (`train.rnn.fast_layers`), so a model saved
with one loads and runs with the other, and inference reads its weights by these names.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np

from mlproject.models.keras_rnn.settings import RnnTraining


def set_seed(seed: int) -> None:
    """One seed for Python, NumPy and TensorFlow, with deterministic TensorFlow kernels."""
    import keras
    import tensorflow as tf

    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def layer_name(config: RnnTraining, index: int) -> str:
    return f"{config.cell}_{index}"


def recurrent_layer(config: RnnTraining, index: int, return_sequences: bool):
    import keras

    if config.fast_layers:
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import ProjectedGRU, ProjectedLSTM

        cell = {"gru": ProjectedGRU, "lstm": ProjectedLSTM}[config.cell]
    else:
        cell = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[config.cell]
    layer = cell(config.units, return_sequences=return_sequences, unroll=config.unroll, name=layer_name(config, index))
    if config.kind == "window_rnn":
        layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{index}")
    return layer


def build_network(config: RnnTraining, vocab_size: int):
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
        from mlproject.models.keras_rnn.fast_cpu.keras_internals import FoldedEmbeddingModel, check_keras_internals

        check_keras_internals()
        return FoldedEmbeddingModel(tokens, logits, name=f"rnn_{config.cell}")
    return keras.Model(tokens, logits, name=f"rnn_{config.cell}")


def save_network(network, path: Path) -> None:
    """`network.save(path)` with what differs between two saves of the same network taken out, so
    the same weights give the same bytes and DVC reruns nothing after an unchanged train: Keras
    stamps the time (the weights entry's date, `date_saved` in metadata.json) and numbers shared
    objects by their memory address (`shared_object_id` in config.json), here renumbered 1, 2, ...
    in order of appearance, which keeps which objects are shared."""
    import zipfile

    stamped = path.with_name(f".stamped-{path.name}")  # Keras wants a name ending in .keras
    network.save(stamped)
    with zipfile.ZipFile(stamped) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            if entry.filename == "metadata.json":
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
            elif entry.filename == "config.json":
                data = json.dumps(renumbered_shared_objects(json.loads(data), {})).encode()
            target.writestr(zipfile.ZipInfo(entry.filename), data, compress_type=entry.compress_type)
    stamped.unlink()


def renumbered_shared_objects(config, numbers: dict):
    if isinstance(config, list):
        return [renumbered_shared_objects(item, numbers) for item in config]
    if not isinstance(config, dict):
        return config
    return {
        key: numbers.setdefault(value, len(numbers) + 1)
        if key == "shared_object_id"
        else renumbered_shared_objects(value, numbers)
        for key, value in config.items()
    }


def load_network(path, compile: bool = True):
    """A saved network, whichever layers trained it."""
    import keras

    import mlproject.models.keras_rnn.fast_cpu.keras_internals  # noqa: F401  registers the fast layers' classes

    return keras.models.load_model(path, compile=compile)
