"""The char-RNN's recurrent layers: Keras GRU and LSTM, with the input projection taken out of the loop.

Keras's CPU loop multiplies each step's input by the input kernel inside the recurrence: one small
matmul per character. PyTorch and cuDNN project the whole sequence in one large matmul and keep only
the recurrent matmul in the loop; `ProjectedGRU` and `ProjectedLSTM` do the same on CPU. Their
weights, config and GPU (cuDNN) path are Keras's own, so they load the weights of, and compute the
same function as, a plain `keras.layers.GRU` / `LSTM` (tests/test_model.py checks it).

`CharRNN`, the training model, goes one step further for its first layer: the embedding is folded
into the input projection, so each position looks a row up instead of being multiplied.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mlproject.cpu import cpu_flags


@tf.custom_gradient
def matmul(a, b, b_transposed):
    """a @ b, given b in both layouts (the caller transposes it once per loop), so that the
    product and its gradient for `a` each read the layout `multiply` finds fastest."""
    def gradient(upstream):
        return multiply(upstream, b_transposed, b), tf.matmul(a, upstream, transpose_a=True), None

    return multiply(a, b, b_transposed), gradient


def multiply(a, b, b_transposed):
    """a @ b from whichever layout of b is fastest on this TensorFlow and CPU.

    oneDNN without AVX-512 (EPYC Milan) multiplies fastest by a transposed operand (flag) stored
    as such: 64 x 1,024 by 1,024 x 4,096 takes 5.5 ms that way against 7.7 ms plain. TensorFlow's
    own kernels, and oneDNN's AVX-512 ones (EPYC Genoa), are the other way round: with the flag,
    training ran at 0.5 to 0.85 of the plain layout's speed (benchmarks/optimisations.md).
    """
    if transposed_layout_fastest():
        return tf.matmul(a, b_transposed, transpose_b=True)
    return tf.matmul(a, b)


def transposed(kernel):
    # Snapshot keeps Grappler from folding the transpose back into the matmul as a flag; no
    # gradient flows through the copy (`matmul` gives none), which a while loop must be told.
    return tf.stop_gradient(tf.raw_ops.Snapshot(input=tf.transpose(kernel)))


def onednn_enabled() -> bool:
    """Whether TensorFlow runs on oneDNN here (it decides when it starts: `cpu.use_onednn`)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without the probe: keep our gradient
        return False


def transposed_layout_fastest() -> bool:
    """Whether `multiply` reads the transposed kernel: under oneDNN on a CPU without AVX-512."""
    return onednn_enabled() and "avx512f" not in cpu_flags()


def times(kernel):
    """x -> x @ kernel, in the layouts fastest on this TensorFlow; made once per loop."""
    kernel = tf.convert_to_tensor(kernel)
    kernel_t = transposed(kernel)
    return lambda x: matmul(x, kernel, kernel_t)


class StepProducts:
    """x -> x @ kernel for each step of an unrolled loop, the kernel's gradient one product.

    Autodiff would multiply each step's input by its gradient, thin products (64 x units by
    64 x gates) that TensorFlow keeps until it sums them, 1.6 GB for an LSTM of 1,024 units.
    Instead each step's gradient keeps its upstream, and the first step's, which autodiff reaches
    last, multiplies all the steps' inputs by all their upstreams at once.
    """

    def __init__(self, kernel):
        self.kernel = tf.convert_to_tensor(kernel)
        self.kernel_t = transposed(self.kernel)
        self.inputs, self.upstreams = [], {}

    def __call__(self, x):
        step = len(self.inputs)
        self.inputs.append(x)

        @tf.custom_gradient
        def product(x, kernel):
            def gradient(upstream):
                self.upstreams[step] = upstream
                kernel_gradient = self.kernel_gradient() if step == 0 else None
                return multiply(upstream, self.kernel_t, kernel), kernel_gradient

            return multiply(x, kernel, self.kernel_t), gradient

        return product(x, self.kernel)

    def kernel_gradient(self):
        steps = sorted(self.upstreams)  # those the loss depends on
        return tf.matmul(tf.concat([self.inputs[t] for t in steps], 0),
                         tf.concat([self.upstreams[t] for t in steps], 0), transpose_a=True)


def project(layer, inputs):
    """Every position's input times the input kernel, plus the input bias: one matmul."""
    cell = layer.cell
    kernel = tf.convert_to_tensor(cell.kernel)
    flat = tf.reshape(inputs, [-1, kernel.shape[0]])
    projected = tf.reshape(times(kernel)(flat),
                           tf.concat([tf.shape(inputs)[:-1], [kernel.shape[1]]], axis=0))
    if not cell.use_bias:
        return projected
    return projected + (cell.bias[0] if isinstance(cell, keras.layers.GRUCell) else cell.bias)


def project_tokens(layer, tokens, embeddings):
    """`project(layer, embeddings[tokens])`, looked up in `project(layer, embeddings)`, a table of
    vocabulary x gates; the kernel and bias get their gradients through the table."""
    table = project(layer, tf.stop_gradient(embeddings))
    return rows_of(table, tokens, tf.convert_to_tensor(embeddings), tf.convert_to_tensor(layer.cell.kernel))


@tf.custom_gradient
def rows_of(table, tokens, embeddings, kernel):
    """table[tokens], whose gradient also reaches the `embeddings` the table was projected from.

    That gradient keeps the form the embedding layer's own lookup gives, one row per position
    (IndexedSlices), not the table's summed rows: Keras's Adam squares those rows before summing
    them, and the summed form trained worse (benchmarks/optimisations.md). It costs back one
    positions x gates x embedding product; the forward product and the kernel's gradient product
    are still saved.
    """
    flat_tokens = tf.reshape(tokens, [-1])

    def gradient(upstream):
        flat = tf.reshape(upstream, [-1, kernel.shape[1]])
        per_position = multiply(flat, transposed(kernel), kernel)
        return (tf.IndexedSlices(flat, flat_tokens, tf.shape(table)), None,
                tf.IndexedSlices(per_position, flat_tokens, tf.shape(embeddings)), None)

    return tf.gather(table, tokens), gradient


def recurrent_step(layer, projected, states, product):
    """One step of a GRU (reset_after) or LSTM cell from its already projected input.

    `product`: `times(layer.cell.recurrent_kernel)`, made once by the caller for a whole loop.
    """
    cell = layer.cell
    if isinstance(cell, keras.layers.GRUCell):
        (h,) = states
        inner = product(h)
        if cell.use_bias:
            inner = inner + cell.bias[1]
        x_z, x_r, x_h = ops.split(projected, 3, axis=-1)
        r_z, r_r, r_h = ops.split(inner, 3, axis=-1)
        z = cell.recurrent_activation(x_z + r_z)
        r = cell.recurrent_activation(x_r + r_r)
        candidate = cell.activation(x_h + r * r_h)
        h = z * h + (1 - z) * candidate
        return h, [h]
    h, c = states
    i, f, g, o = ops.split(projected + product(h), 4, axis=-1)
    c = cell.recurrent_activation(f) * c + cell.recurrent_activation(i) * cell.activation(g)
    h = cell.recurrent_activation(o) * cell.activation(c)
    return h, [h, c]


def gpu_available() -> bool:
    return bool(tf.config.list_logical_devices("GPU"))


class ProjectedRecurrence:
    """Mixin: on CPU, project all inputs at once, then loop over the recurrent part only."""

    def keeps_keras_loop(self, mask, training) -> bool:
        """Masks, dropout inside the cell, reset_before GRUs and cuDNN stay Keras's."""
        return bool(mask is not None or self.recurrent_dropout or (training and self.dropout)
                    or getattr(self.cell, "reset_after", True) is False or gpu_available())

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
        return backend.rnn(lambda x, states: recurrent_step(self, x, states, product), projected,
                           list(initial_state), go_backwards=self.go_backwards, unroll=self.unroll,
                           input_length=projected.shape[1], return_all_outputs=self.return_sequences)

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
        smaller than the batch's positions, as for characters (65 to 100 symbols against 6,400).
        """
        batch, time = tokens.shape
        folds = (batch is not None and time is not None and embedding.input_dim < batch * time
                 and not (self.keeps_keras_loop(None, training) or self.stateful or self.return_state))
        if not folds:
            return self(embedding(tokens), training=training)
        last, outputs, _ = self.projected_loop(project_tokens(self, tokens, embedding.embeddings),
                                               self.get_initial_state(batch_size=batch))
        return outputs if self.return_sequences else last


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedGRU(ProjectedRecurrence, keras.layers.GRU):
    pass


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedLSTM(ProjectedRecurrence, keras.layers.LSTM):
    pass


@keras.saving.register_keras_serializable(package="mlproject")
class CharRNN(keras.Model):
    """The functional chain `build_model` makes: embedding, recurrent layers (dropout between), logits.

    Its forward pass calls the same layers in the same order, except that the first recurrent
    layer reads the token ids and the embedding table itself (`call_on_tokens`). Saved, it is the
    plain functional model, with the same layers, names and weights.
    """

    def call(self, inputs, training=None, mask=None):
        embedding, first, *rest = [layer for layer in self.layers
                                   if not isinstance(layer, keras.layers.InputLayer)]
        if mask is not None or not isinstance(first, ProjectedRecurrence):
            return super().call(inputs, training=training, mask=mask)
        x = first.call_on_tokens(inputs, embedding, training=training)
        for layer in rest:
            x = layer(x, training=training)
        return x
