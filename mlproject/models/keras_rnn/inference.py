"""Scoring and sampling of the Keras RNN kinds: one forward path over the trained weights.

The causal kind's `Forward` runs the trained layers' weights directly, with the embedding folded
into the first layer's input projection (a vocabulary x gates table made once per compiled call),
so each position looks a row up. Scoring reads the validation text in chunks (`__call__`: each
layer projects a chunk's positions at once, then steps through them); sampling advances a batch
one token per row (`step`). Both run the same table, projection, cell step and output layer, inside
compiled graphs. The window kind has no causal state: `window_logits` re-reads the window before
each predicted token, for scoring and sampling alike.
"""

from __future__ import annotations

import tensorflow as tf

from mlproject.models import noise
from mlproject.models.keras_rnn.fast_cpu.kernels import project, recurrent_step, times
from mlproject.models.keras_rnn.network import layer_name
from mlproject.models.keras_rnn.settings import RnnTraining


class Forward:
    """(prepared weights, tokens, states) -> (logits per position, states after the last one)."""

    def __init__(self, network, config: RnnTraining):
        self.layers = [network.get_layer(layer_name(config, i)) for i in range(config.layers)]
        self.embedding, self.output = network.get_layer("embedding"), network.get_layer("logits")
        self.per_layer = 2 if config.cell == "lstm" else 1
        self.state_sizes = [config.units] * self.per_layer * config.layers
        self.vocab_size = self.output.units

    def zero_states(self, batch):
        return [tf.zeros([batch, size]) for size in self.state_sizes]

    def prepare(self):
        """Once per compiled call: the first layer's input table and each recurrent product."""
        return (
            project(self.layers[0], self.embedding.embeddings),
            [times(layer.cell.recurrent_kernel) for layer in self.layers],
        )

    def layer_states(self, states, index):
        return states[index * self.per_layer : (index + 1) * self.per_layer]

    def __call__(self, prepared, tokens, states):
        """Tokens (batch, time) -> logits of every position, and the states after the last."""
        return self.through_layers(prepared, tokens, states, steps_through)

    def step(self, prepared, tokens, states):
        """Tokens (batch,) -> the next token's logits, and the states after it."""
        return self.through_layers(prepared, tokens, states, recurrent_step)

    def through_layers(self, prepared, tokens, states, advance):
        """The tokens through every layer; `advance(layer, projected, states, product)` runs one
        layer over its projected input, a whole chunk or a single step."""
        table, products = prepared
        x, new_states = tf.gather(table, tokens), []
        for index, layer in enumerate(self.layers):
            if index:
                x = project(layer, x)
            x, own = advance(layer, x, self.layer_states(states, index), products[index])
            new_states.extend(own)
        return self.output(x), new_states


def steps_through(layer, projected, states, product):
    """The layer's outputs over projected inputs (batch, time, gates), and its last states."""

    def step(carried, projected_t):
        output, new = recurrent_step(layer, projected_t, list(carried[1:]), product)
        return (output, *new)

    # The first state is h, the shape of an output, so it seeds the outputs' slot.
    outputs, *steps = tf.scan(step, tf.transpose(projected, [1, 0, 2]), initializer=(states[0], *states))
    return tf.transpose(outputs, [1, 0, 2]), [s[-1] for s in steps]


def make_scorer(forward: Forward):
    """Compiled: the log-probabilities of one chunk's targets, and the states after the chunk."""

    @tf.function(reduce_retracing=True)
    def score_chunk(inputs, targets, states):
        logits, states = forward(forward.prepare(), inputs, states)
        return tf.gather(tf.nn.log_softmax(logits), targets, batch_dims=2), states

    return score_chunk


def filter_logits(logits, temperature, top_k, top_p, block_unknown: bool = False):
    """Temperature, then top-k and top-p (nucleus) truncation. <unk> (id 0) is drawn as the model
    gives it and the vocabulary's speller writes the token it stands for, unless `block_unknown`
    (a speller that learnt nothing, saved before spellers: it would write noise).

    Each truncation runs only when asked for: the sort top-p needs is a fifth of a step's time
    at batch 256 (benchmarks/optimisations.md)."""
    very_negative = tf.constant(-1e9, logits.dtype)
    logits = logits / temperature
    if block_unknown:
        logits = tf.concat([tf.fill([tf.shape(logits)[0], 1], very_negative), logits[:, 1:]], axis=-1)

    def keep_top_k():
        kth = tf.math.top_k(logits, k=tf.minimum(top_k, tf.shape(logits)[-1])).values[:, -1:]
        return tf.where(logits < kth, very_negative, logits)

    logits = tf.cond(top_k > 0, keep_top_k, lambda: logits)

    def keep_nucleus():
        ordered = tf.sort(logits, direction="DESCENDING", axis=-1)
        mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
        # The smallest logit still inside the nucleus; everything below it is cut.
        inside = tf.where(mass_before < top_p, ordered, tf.reduce_max(ordered, axis=-1, keepdims=True))
        return tf.where(logits < tf.reduce_min(inside, axis=-1, keepdims=True), very_negative, logits)

    return tf.cond(top_p < 1.0, keep_nucleus, lambda: logits)


def uint32_shift_right(x, places: int):
    return tf.bitwise.right_shift(x, tf.constant(places, tf.uint32))


def uint32_times(x, constant: int):
    return x * tf.constant(constant, tf.uint32)  # unsigned: wraps at 2**32


def uint32_wrap(x):
    return x  # already


def to_float32(x):
    return tf.cast(x, tf.float32)


TF_BITS = noise.Bits(
    xor=tf.bitwise.bitwise_xor,
    shift_right=uint32_shift_right,
    times=uint32_times,
    wrap=uint32_wrap,
    to_float32=to_float32,
)


def draw(logits, temperature, top_k, top_p, seeds, step, block_unknown: bool = False):
    """One token per row: the Gumbel-max draw whose noise is keyed by the row's prompt seed
    (mlproject/models/noise.py), so a row's text never depends on the other rows."""
    filtered = filter_logits(logits, temperature, top_k, top_p, block_unknown)
    token_ids = tf.cast(tf.range(tf.shape(logits)[1]), tf.uint32)[None, :]
    hashes = noise.hashed(seeds[:, None], tf.cast(step, tf.uint32), token_ids, TF_BITS)
    noisy = filtered + tf.cast(noise.gumbel(hashes, tf.math.log, TF_BITS), filtered.dtype)
    return tf.cast(tf.argmax(noisy, axis=-1), tf.int32)


def make_sampler(forward: Forward, block_unknown: bool = False):
    """A compiled function (prime, lengths, steps, temperature, top_k, top_p, seeds) -> new ids;
    `seeds` holds each row's key (noise.row_seeds)."""

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seeds):
        batch = tf.shape(prime)[0]
        prepared = forward.prepare()
        states = forward.zero_states(batch)
        logits = tf.zeros([batch, forward.vocab_size])
        # One token at a time, so prompts of any length share the batch: a row whose prompt has
        # ended keeps its state until every prompt is read.
        for t in tf.range(tf.shape(prime)[1]):
            step_logits, new_states = forward.step(prepared, prime[:, t], states)
            active = (t < lengths)[:, None]
            states = [tf.where(active, new, old) for new, old in zip(new_states, states)]
            logits = tf.where(active, step_logits, logits)
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits, temperature, top_k, top_p, seeds, i, block_unknown)
            out = out.write(i, token)
            logits, states = forward.step(prepared, token, states)
        return tf.transpose(out.stack())

    return sample


def window_logits(network):
    """Compiled: the logits of the token after each window (batch, window)."""
    return tf.function(lambda windows: network(windows, training=False), reduce_retracing=True)


def make_window_sampler(network, block_unknown: bool = False):
    logits_of = window_logits(network)

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seeds):
        window = prime
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits_of(window), temperature, top_k, top_p, seeds, i, block_unknown)
            out = out.write(i, token)
            window = tf.concat([window[:, 1:], token[:, None]], axis=1)
        return tf.transpose(out.stack())

    return sample
