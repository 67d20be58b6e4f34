"""The only code that relies on Keras internals: layers that run the CPU kernels while training.

`ProjectedGRU` and `ProjectedLSTM` are Keras's GRU and LSTM (same weights, config and cuDNN path)
whose CPU loop projects every position's input in one matmul before the recurrence, as PyTorch
and cuDNN do, instead of once per step. They override `RNN.inner_loop`, an undocumented method,
and run `keras.src.backend.rnn`, a private module: `check_keras_internals` says plainly when a
Keras upgrade moves either, and `train.rnn.fast_layers: false` trains on Keras's own layers instead.
`FoldedEmbeddingModel`, the training model, also folds the embedding into the first layer's input
projection, so each position looks a row up instead of being multiplied.
"""

from __future__ import annotations

import inspect

import keras
import tensorflow as tf

from mlproject.models.keras_rnn.fast_cpu.kernels import (
    StepProducts,
    gpu_available,
    project,
    project_tokens,
    recurrent_step,
    times,
)

INNER_LOOP_ARGS = ["self", "sequences", "initial_state", "mask", "training"]


def check_keras_internals() -> None:
    """Raise, naming what moved, if this Keras lacks what the fast layers override or call."""
    loop = getattr(keras.layers.RNN, "inner_loop", None)
    problems = []
    if loop is None or list(inspect.signature(loop).parameters) != INNER_LOOP_ARGS:
        problems.append(
            f"keras.layers.RNN.inner_loop{'' if loop is None else inspect.signature(loop)} "
            f"is no longer ({', '.join(INNER_LOOP_ARGS[1:])})"
        )
    try:
        from keras.src.backend import rnn  # noqa: F401
    except ImportError:
        problems.append("keras.src.backend.rnn is gone")
    if problems:
        raise RuntimeError(
            f"Keras {keras.__version__} changed what the fast CPU layers rely on "
            f"({'; '.join(problems)}); set train.rnn.fast_layers: false to train on "
            "Keras's own layers, and update mlproject/models/keras_rnn/fast_cpu/"
            "keras_internals.py"
        )


class ProjectedRecurrence:
    """Mixin: on CPU, project all inputs at once, then loop over the recurrent part only."""

    def keeps_keras_loop(self, mask, training) -> bool:
        """Masks, dropout inside the cell, reset_before GRUs and cuDNN stay Keras's."""
        return bool(
            mask is not None
            or self.recurrent_dropout
            or (training and self.dropout)
            or getattr(self.cell, "reset_after", True) is False
            or gpu_available()
        )

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if self.keeps_keras_loop(mask, training):
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        return self.projected_loop(project(self, sequences), initial_state)

    def projected_loop(self, projected, initial_state):
        """(last output, outputs, states) of the recurrence over already projected inputs."""
        from keras.src import backend  # the loop Keras's own RNN layer runs, with its semantics

        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if self.unroll and not self.go_backwards:
            # One op each way; a slice per step would pad each slice's gradient to the whole tensor.
            return self.unrolled_loop(tf.unstack(projected, axis=1), list(initial_state))
        product = times(self.cell.recurrent_kernel)
        return backend.rnn(
            lambda x, states: recurrent_step(self, x, states, product),
            projected,
            list(initial_state),
            go_backwards=self.go_backwards,
            unroll=self.unroll,
            input_length=projected.shape[1],
            return_all_outputs=self.return_sequences,
        )

    def unrolled_loop(self, steps, states):
        """(last output, outputs, states) of the recurrence unrolled over the projected `steps`.

        Keras's unrolled loop transposes the projected inputs to time-major and its outputs back,
        two copies of the largest tensors of the step and two more in the gradient; here the
        caller unstacks the inputs in one op and the outputs are stacked batch-major.
        """
        product, outputs = StepProducts(self.cell.recurrent_kernel), []
        for projected in steps:
            output, states = recurrent_step(self, projected, states, product)
            outputs.append(output)
        return output, tf.stack(outputs if self.return_sequences else outputs[-1:], axis=1), states

    def call_on_tokens(self, tokens, embedding, training=False):
        """This layer applied to `embedding(tokens)`, with the embedding folded into its input projection.

        A lookup in (embedding table x input kernel), a vocabulary x gates product, replaces the
        (batch x time) x gates product and the kernel's gradient product whenever the vocabulary is
        smaller than the batch's positions, as for characters.
        """
        batch, time = tokens.shape
        folds = (
            batch is not None
            and time is not None
            and embedding.input_dim < batch * time
            and not (self.keeps_keras_loop(None, training) or self.stateful or self.return_state)
        )
        if not folds:
            return self(embedding(tokens), training=training)
        last, outputs, _ = self.projected_loop(
            project_tokens(self, tokens, embedding.embeddings), self.get_initial_state(batch_size=batch)
        )
        return outputs if self.return_sequences else last


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedGRU(ProjectedRecurrence, keras.layers.GRU):
    pass


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedLSTM(ProjectedRecurrence, keras.layers.LSTM):
    pass


@keras.saving.register_keras_serializable(package="mlproject")
class FoldedEmbeddingModel(keras.Model):
    """The functional chain `network.build_network` makes: embedding, recurrent layers (dropout between), logits.

    Its forward pass calls the same layers in the same order, except that the first recurrent
    layer reads the token ids and the embedding table itself (`call_on_tokens`). Saved, it is the
    plain functional model, with the same layers, names and weights.
    """

    def call(self, inputs, training=None, mask=None):
        embedding, first, *rest = [layer for layer in self.layers if not isinstance(layer, keras.layers.InputLayer)]
        if mask is not None or not isinstance(first, ProjectedRecurrence):
            return super().call(inputs, training=training, mask=mask)
        x = first.call_on_tokens(inputs, embedding, training=training)
        for layer in rest:
            x = layer(x, training=training)
        return x
