"""The char-RNN's recurrent layers: Keras GRU and LSTM, with the input projection taken out of the loop.

Keras's CPU loop multiplies each step's input by the input kernel inside the recurrence: one small
matmul per character. PyTorch and cuDNN project the whole sequence in one large matmul and keep only
the recurrent matmul in the loop; `ProjectedGRU` and `ProjectedLSTM` do the same on CPU. Their
weights, config and GPU (cuDNN) path are Keras's own, so they load the weights of, and compute the
same function as, a plain `keras.layers.GRU` / `LSTM` (tests/test_model.py checks it).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


@tf.custom_gradient
def matmul(a, b, b_transposed):
    """a @ b, whose gradient for `a` multiplies by `b_transposed`, transposed once by the caller.

    TensorFlow's own gradient multiplies by b with a transposed-operand flag, and without oneDNN
    its CPU kernel for that case runs at a third of the plain one (benchmarks/optimisations.md).
    """
    def gradient(upstream):
        return tf.matmul(upstream, b_transposed), tf.matmul(a, upstream, transpose_a=True), None

    return tf.matmul(a, b), gradient


def transposed(kernel):
    # Snapshot keeps Grappler from folding the transpose back into the matmul as a flag; no
    # gradient flows through the copy (`matmul` gives none), which a while loop must be told.
    return tf.stop_gradient(tf.raw_ops.Snapshot(input=tf.transpose(kernel)))


def onednn_enabled() -> bool:
    """Whether TensorFlow runs on oneDNN here (it decides when it starts: `train.use_onednn`)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow without the probe: keep our gradient
        return False


def times(kernel):
    """x -> x @ kernel, with the gradient that is fastest on this TensorFlow; made once per loop.

    oneDNN's transposed-operand matmul is as fast as its plain one, so TensorFlow's own gradient
    is kept; without oneDNN, the gradient multiplies by a copy of the kernel transposed once.
    """
    kernel = tf.convert_to_tensor(kernel)
    if onednn_enabled():
        return lambda x: tf.matmul(x, kernel)
    kernel_t = transposed(kernel)
    return lambda x: matmul(x, kernel, kernel_t)


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

    def inner_loop(self, sequences, initial_state, mask, training=False):
        from keras.src import backend  # the loop Keras's own RNN layer runs, with its semantics

        plain = (mask is not None or self.recurrent_dropout or (training and self.dropout)
                 or getattr(self.cell, "reset_after", True) is False or gpu_available())
        if plain:  # masks, dropout inside the cell, and cuDNN stay Keras's
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        projected = project(self, sequences)
        if self.unroll and not self.go_backwards:
            # One op each way; a slice per step would pad each slice's gradient to the whole tensor.
            return self.unrolled_loop(tf.unstack(projected, axis=1), list(initial_state))
        product = times(self.cell.recurrent_kernel)
        return backend.rnn(lambda x, states: recurrent_step(self, x, states, product), projected,
                           list(initial_state), go_backwards=self.go_backwards, unroll=self.unroll,
                           input_length=sequences.shape[1], return_all_outputs=self.return_sequences)

    def unrolled_loop(self, steps, states):
        """(last output, outputs, states) of the recurrence unrolled over the projected `steps`.

        Keras's unrolled loop transposes the projected inputs to time-major and its outputs back,
        two copies of the largest tensors of the step and two more in the gradient; here the
        caller unstacks the inputs in one op and the outputs are stacked batch-major.
        """
        product, outputs = times(self.cell.recurrent_kernel), []
        for projected in steps:
            output, states = recurrent_step(self, projected, states, product)
            outputs.append(output)
        return output, tf.stack(outputs if self.return_sequences else outputs[-1:], axis=1), states


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedGRU(ProjectedRecurrence, keras.layers.GRU):
    pass


@keras.saving.register_keras_serializable(package="mlproject")
class ProjectedLSTM(ProjectedRecurrence, keras.layers.LSTM):
    pass
