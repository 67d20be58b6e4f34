"""The recurrent arithmetic of the Keras RNN kinds on a CPU, in TensorFlow's public API.

A GRU or LSTM step from an input projected beforehand (`project`, one matmul for every position),
the recurrent product in the kernel layout the CPU's kernels are fastest with (`multiply`), and the
gradients TensorFlow would otherwise keep per step (`StepProducts`, `rows_of`). Training reaches
them through `keras_internals`; scoring and sampling (`inference.py`) call them directly.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mlproject.models.cpu import cpu_flags


@tf.custom_gradient
def matmul(a, b, b_transposed):
    """a @ b, given b in both layouts (the caller transposes it once per loop), so that the
    product and its gradient for `a` each read the layout `multiply` finds fastest."""

    def gradient(upstream):
        return multiply(upstream, b_transposed, b), tf.matmul(a, upstream, transpose_a=True), None

    return multiply(a, b, b_transposed), gradient


def multiply(a, b, b_transposed):
    """a @ b from whichever layout of b is fastest on this TensorFlow and CPU.

    oneDNN without AVX-512 multiplies fastest by a transposed operand (flag) stored as such;
    TensorFlow's own kernels, and oneDNN's AVX-512 ones, are the other way round
    (benchmarks/optimisations.md has the figures).
    """
    if transposed_layout_fastest():
        return tf.matmul(a, b_transposed, transpose_b=True)
    return tf.matmul(a, b)


def transposed(kernel):
    # Snapshot keeps Grappler from folding the transpose back into the matmul as a flag; no
    # gradient flows through the copy (`matmul` gives none), which a while loop must be told.
    return tf.stop_gradient(tf.raw_ops.Snapshot(input=tf.transpose(kernel)))


def onednn_enabled() -> bool:
    """Whether TensorFlow runs on oneDNN here (it decides when it starts: `onednn.use_onednn`).

    TensorFlow has no public probe for it: this private one falls back to False if it moves."""
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
    64 x gates) that TensorFlow keeps until it sums them (benchmarks/optimisations.md).
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
        return tf.matmul(
            tf.concat([self.inputs[t] for t in steps], 0),
            tf.concat([self.upstreams[t] for t in steps], 0),
            transpose_a=True,
        )


def project(layer, inputs):
    """Every position's input times the input kernel, plus the input bias: one matmul."""
    cell = layer.cell
    kernel = tf.convert_to_tensor(cell.kernel)
    flat = tf.reshape(inputs, [-1, kernel.shape[0]])
    projected = tf.reshape(times(kernel)(flat), tf.concat([tf.shape(inputs)[:-1], [kernel.shape[1]]], axis=0))
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
        return (
            tf.IndexedSlices(flat, flat_tokens, tf.shape(table)),
            None,
            tf.IndexedSlices(per_position, flat_tokens, tf.shape(embeddings)),
            None,
        )

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
