"""Scoring and sampling of the Keras RNN kinds: one forward function each, shared by both.

The causal kind's `Forward` reads token ids (batch, time) with the recurrent states and returns
the logits of every position and the states after them: scoring feeds the validation text in
chunks, sampling one token per row per step, all inside compiled graphs. It calls the trained
layers' weights directly, with the embedding folded into the first layer's input projection (a
vocabulary x gates table made once per call), so each position looks a row up. The window kind
has no causal state: `window_logits` re-reads the window before each predicted token.
"""

from __future__ import annotations

import tensorflow as tf

from mlproject.config import TrainConfig
from mlproject.models.keras_rnn.fast_cpu.kernels import project, recurrent_step, times
from mlproject.models.keras_rnn.network import layer_name


class Forward:
    """(prepared weights, tokens, states) -> (logits per position, states after the last one)."""

    def __init__(self, network, config: TrainConfig):
        self.layers = [network.get_layer(layer_name(config, i)) for i in range(config.layers)]
        self.embedding, self.output = network.get_layer("embedding"), network.get_layer("logits")
        self.per_layer = 2 if config.cell == "lstm" else 1
        self.state_sizes = [config.units] * self.per_layer * config.layers
        self.vocab_size = self.output.units

    def zero_states(self, batch):
        return [tf.zeros([batch, size]) for size in self.state_sizes]

    def prepare(self):
        """Once per compiled call: the first layer's input table and each recurrent product."""
        return (project(self.layers[0], self.embedding.embeddings),
                [times(layer.cell.recurrent_kernel) for layer in self.layers])

    def __call__(self, prepared, tokens, states):
        table, products = prepared
        x, new_states = tf.gather(table, tokens), []
        for index, layer in enumerate(self.layers):
            if index:
                x = project(layer, x)
            own = states[index * self.per_layer:(index + 1) * self.per_layer]
            x, own = recur(layer, x, own, products[index])
            new_states.extend(own)
        return self.output(x), new_states


def recur(layer, projected, states, product):
    """The layer's outputs over projected inputs (batch, time, gates), and its last states."""
    if projected.shape[1] == 1:  # a sampling step: no loop to build
        output, states = recurrent_step(layer, projected[:, 0], states, product)
        return output[:, None], states

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


def filter_logits(logits, temperature, top_k, top_p):
    """Temperature, then top-k and top-p (nucleus) truncation; <unk> (id 0) is never sampled."""
    very_negative = tf.constant(-1e9, logits.dtype)
    vocab = tf.shape(logits)[-1]
    logits = logits / temperature
    logits = tf.concat([tf.fill([tf.shape(logits)[0], 1], very_negative), logits[:, 1:]], axis=-1)
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth = tf.math.top_k(logits, k=k).values[:, -1:]
    logits = tf.where(logits < kth, very_negative, logits)
    ordered = tf.sort(logits, direction="DESCENDING", axis=-1)
    mass_before = tf.math.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
    # The smallest logit still inside the nucleus; everything below it is cut.
    inside = tf.where(mass_before < top_p, ordered, tf.reduce_max(ordered, axis=-1, keepdims=True))
    cutoff = tf.reduce_min(inside, axis=-1, keepdims=True)
    return tf.where(logits < cutoff, very_negative, logits)


def draw(logits, temperature, top_k, top_p, seed, step):
    filtered = filter_logits(logits, temperature, top_k, top_p)
    pair = tf.stack([seed, tf.cast(step, tf.int64)])
    return tf.cast(tf.random.stateless_categorical(filtered, 1, seed=pair)[:, 0], tf.int32)


def make_sampler(forward: Forward):
    """A compiled function (prime, lengths, steps, temperature, top_k, top_p, seed) -> new ids."""
    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seed):
        batch = tf.shape(prime)[0]
        prepared = forward.prepare()
        states = forward.zero_states(batch)
        logits = tf.zeros([batch, forward.vocab_size])
        # One token at a time, so prompts of any length share the batch: a row whose prompt has
        # ended keeps its state until every prompt is read.
        for t in tf.range(tf.shape(prime)[1]):
            step_logits, new_states = forward(prepared, prime[:, t][:, None], states)
            active = (t < lengths)[:, None]
            states = [tf.where(active, new, old) for new, old in zip(new_states, states)]
            logits = tf.where(active, step_logits[:, 0], logits)
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits, temperature, top_k, top_p, seed, i)
            out = out.write(i, token)
            step_logits, states = forward(prepared, token[:, None], states)
            logits = step_logits[:, 0]
        return tf.transpose(out.stack())

    return sample


def window_logits(network):
    """Compiled: the logits of the token after each window (batch, window)."""
    return tf.function(lambda windows: network(windows, training=False), reduce_retracing=True)


def make_window_sampler(network):
    logits_of = window_logits(network)

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seed):
        window = prime
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits_of(window), temperature, top_k, top_p, seed, i)
            out = out.write(i, token)
            window = tf.concat([window[:, 1:], token[:, None]], axis=1)
        return tf.transpose(out.stack())

    return sample
