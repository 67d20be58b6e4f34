"""Batched sampling compiled into one TensorFlow graph.

For a recurrent model every step feeds one token per row and carries the state: a whole batch
advances one recurrent step per new token. A bidirectional (window) model has no causal state, so
it re-reads its window each step, still batched and compiled.
"""

from __future__ import annotations


def filter_logits(logits, temperature, top_k, top_p):
    """Temperature, then top-k and top-p (nucleus) truncation; <unk> (id 0) is never sampled."""
    import tensorflow as tf

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
    import tensorflow as tf

    filtered = filter_logits(logits, temperature, top_k, top_p)
    pair = tf.stack([seed, tf.cast(step, tf.int64)])
    return tf.cast(tf.random.stateless_categorical(filtered, 1, seed=pair)[:, 0], tf.int32)


def make_sampler(language_model):
    """A compiled function (prime, lengths, steps, temperature, top_k, top_p, seed) -> new ids."""
    import tensorflow as tf

    if language_model.config.bidirectional:
        return _window_sampler(language_model.model)
    stepper = language_model.stepper()
    sizes = language_model.state_sizes()

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seed):
        batch = tf.shape(prime)[0]
        states = [tf.zeros([batch, size]) for size in sizes]
        logits = tf.zeros([batch, stepper.outputs[0].shape[-1]])
        # Read the prompts one token at a time; a row whose prompt has ended keeps its state.
        for t in tf.range(tf.shape(prime)[1]):
            step_logits, *new_states = stepper([prime[:, t:t + 1], *states], training=False)
            active = (t < lengths)[:, None]
            states = [tf.where(active, new, old) for new, old in zip(new_states, states)]
            logits = tf.where(active, step_logits[:, 0], logits)
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits, temperature, top_k, top_p, seed, i)
            out = out.write(i, token)
            step_logits, *states = stepper([token[:, None], *states], training=False)
            logits = step_logits[:, 0]
        return tf.transpose(out.stack())

    return sample


def _window_sampler(model):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seed):
        window = prime
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(model(window, training=False), temperature, top_k, top_p, seed, i)
            out = out.write(i, token)
            window = tf.concat([window[:, 1:], token[:, None]], axis=1)
        return tf.transpose(out.stack())

    return sample
