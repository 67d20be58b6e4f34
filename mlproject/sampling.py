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


def token_step(language_model):
    """(prepared weights, token ids, states) -> (logits, states): one token through the trained layers.

    The layers are called directly, not through a Keras model, and the embedding is folded into
    the first layer's input projection: a (vocabulary x gates) table made once per call, so each
    step looks a row up instead of multiplying by the input kernel.
    """
    from mlproject.recurrent import project, recurrent_step, times

    model, config = language_model.model, language_model.config
    layers = [model.get_layer(f"{config.cell}_{index}") for index in range(config.layers)]
    embedding, output = model.get_layer("embedding"), model.get_layer("logits")
    per_layer = len(language_model.state_sizes()) // config.layers

    def prepare():
        products = [times(layer.cell.recurrent_kernel) for layer in layers]
        return project(layers[0], embedding.embeddings), products

    def step(prepared, tokens, states):
        import tensorflow as tf

        table, products = prepared
        x, new_states = tf.gather(table, tokens), []
        for index, layer in enumerate(layers):
            if index:
                x = project(layer, x)
            x, layer_states = recurrent_step(layer, x, states[index * per_layer:(index + 1) * per_layer],
                                             products[index])
            new_states.extend(layer_states)
        return output(x), new_states

    return prepare, step


def make_sampler(language_model):
    """A compiled function (prime, lengths, steps, temperature, top_k, top_p, seed) -> new ids."""
    import tensorflow as tf

    if language_model.config.bidirectional:
        return _window_sampler(language_model.model)
    prepare, step = token_step(language_model)
    sizes = language_model.state_sizes()

    @tf.function(reduce_retracing=True)
    def sample(prime, lengths, steps, temperature, top_k, top_p, seed):
        batch = tf.shape(prime)[0]
        prepared = prepare()
        states = [tf.zeros([batch, size]) for size in sizes]
        logits = tf.zeros([batch, language_model.model.get_layer("logits").units])
        # Read the prompts one token at a time; a row whose prompt has ended keeps its state.
        for t in tf.range(tf.shape(prime)[1]):
            step_logits, new_states = step(prepared, prime[:, t], states)
            active = (t < lengths)[:, None]
            states = [tf.where(active, new, old) for new, old in zip(new_states, states)]
            logits = tf.where(active, step_logits, logits)
        out = tf.TensorArray(tf.int32, size=steps)
        for i in tf.range(steps):
            token = draw(logits, temperature, top_k, top_p, seed, i)
            out = out.write(i, token)
            logits, states = step(prepared, token, states)
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
