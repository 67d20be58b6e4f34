"""The Keras RNN kinds: one forward path scores and samples what the trained network computes,
and the fast CPU layers compute what Keras's own layers compute."""

import dataclasses

import numpy as np
import pytest

from mlproject.config import EvaluateConfig
from mlproject.data.tokens import build_vocabulary
from mlproject.models import kinds
from mlproject.models.interface import Sampling
from mlproject.models.keras_rnn.network import build_network, set_seed
from mlproject.models.keras_rnn.settings import RnnTraining
from tests.conftest import as_kind

TEXT = "Más vale pájaro en mano que ciento volando.\n\nA buen entendedor, pocas palabras.\n\n" * 3


def tiny_model(**changes):
    set_seed(7)
    config = as_kind(RnnTraining(units=16, embedding_dim=8, sequence_length=12), changes.pop("kind", "rnn"), **changes)
    vocabulary = build_vocabulary(TEXT, "char", 100, 1)
    return kinds.kind_class(config.kind)(build_network(config, len(vocabulary)), vocabulary, config)


def greedy(length: int) -> Sampling:
    return Sampling(max_length=length, top_k=1)


@pytest.mark.parametrize("cell, layers", [("gru", 1), ("lstm", 2)])
def test_stateful_score_equals_full_sequence_loss(cell, layers):
    model = tiny_model(cell=cell, layers=layers)
    ids = model.vocabulary.encode(model.separator + TEXT)  # every token of TEXT, read after the separator
    logits = model.network(ids[None, :-1]).numpy()[0].astype(np.float64)
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    first = len(model.separator)
    expected = -log_probs[np.arange(first - 1, len(ids) - 1), ids[first:]].sum()
    totals = model.score(TEXT, EvaluateConfig(streams=1, chunk_length=7))  # state carried across 7-token chunks
    assert (totals.tokens, totals.characters) == (len(TEXT), len(TEXT))
    assert totals.nll_nats == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("streams", [1, 4, 32, 1000])
def test_streams_score_every_token_once(streams):
    totals = tiny_model().score(TEXT, EvaluateConfig(streams=streams, chunk_length=16))
    assert (totals.tokens, totals.characters, totals.bytes) == (len(TEXT), len(TEXT), len(TEXT.encode()))


def test_figures_derive_from_totals():
    totals = tiny_model().score(TEXT, EvaluateConfig(streams=4))
    figures = totals.figures()
    assert figures["bits_per_character"] == pytest.approx(totals.nll_nats / totals.characters / np.log(2))
    assert totals.bytes > totals.characters  # á and ñ take two bytes
    assert figures["bits_per_byte"] < figures["bits_per_character"]


def test_sampling_is_seeded_and_batched_rows_match_single_rows():
    model = tiny_model()
    prompts = ["Más", "A buen entendedor", ""]
    batch = model.generate(prompts, Sampling(max_length=25, seed=3))
    assert batch == model.generate(prompts, Sampling(max_length=25, seed=3))
    assert batch != model.generate(prompts, Sampling(max_length=25, seed=4))
    assert all(len(text) == 25 for text in batch)
    # Prompts of different lengths share one batch: each row must read only its own prompt.
    together = model.generate(prompts, greedy(25))
    assert together == [model.generate([p], greedy(25))[0] for p in prompts]


@pytest.mark.parametrize("kind", [{"kind": "rnn"}, {"kind": "window_rnn", "target": "last"}])
def test_a_prompts_sampled_text_depends_only_on_the_prompt_the_settings_and_the_seed(kind):
    model = tiny_model(**kind)
    sampling = Sampling(max_length=30, seed=5)
    alone = model.generate(["Más"], sampling)[0]
    crowd = model.generate(["A buen", "", "Más", "Más"], sampling)
    assert crowd[2] == crowd[3] == alone  # whatever its row, even twice in one batch
    assert model.generate(["x", "y", "Más"], sampling, batch_size=2)[2] == alone  # in a later batch
    assert model.generate(["Más"], dataclasses.replace(sampling, seed=6))[0] != alone


def test_top_k_one_is_greedy_whatever_the_temperature():
    model = tiny_model()
    assert model.generate(["El "], Sampling(20, temperature=5.0, top_k=1, seed=1)) == model.generate(
        ["El "], Sampling(20, temperature=0.5, top_k=1, seed=2)
    )


def test_window_model_scores_and_generates():
    model = tiny_model(kind="window_rnn", target="last", cell="lstm")
    assert model.kind == "window_rnn"
    totals = model.score(TEXT, EvaluateConfig())
    assert totals.tokens == len(TEXT)  # the first ones too, after the separator
    window = model.prime_grid([model.vocabulary.encode(model.separator)])  # the separator, padded
    logits = model.network(window).numpy()[0].astype(np.float64)
    first = -(logits - np.logaddexp.reduce(logits))[model.vocabulary.encode(TEXT)[0]]
    assert model.score(TEXT[:1], EvaluateConfig()).nll_nats == pytest.approx(first, rel=1e-4)
    texts = model.generate(["Más vale", "A"], Sampling(max_length=10, seed=1))
    assert [len(t) for t in texts] == [10, 10]


def test_saved_model_loads_and_generates_the_same(tmp_path):
    model = tiny_model()
    kinds.save(model, tmp_path / "bundle")
    loaded = kinds.load(tmp_path / "bundle")
    assert type(loaded) is type(model)
    assert loaded.generate(["El "], Sampling(30, seed=5)) == model.generate(["El "], Sampling(30, seed=5))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize(
    "unroll, backwards, sequences, transposed",
    [(True, False, True, False), (False, True, False, False), (True, False, True, True)],
)
def test_projected_layers_compute_what_keras_layers_compute(
    cell, unroll, backwards, sequences, transposed, monkeypatch
):
    """The faster CPU path: same outputs, states and gradients as Keras's own layer, same weights,
    with the kernel in either layout `recurrent.multiply` reads."""
    import keras
    import tensorflow as tf

    from mlproject.models.keras_rnn.fast_cpu import kernels
    from mlproject.models.keras_rnn.fast_cpu.keras_internals import ProjectedGRU, ProjectedLSTM

    monkeypatch.setattr(kernels, "transposed_layout_fastest", lambda: transposed)
    set_seed(3)
    plain_class, projected_class = {
        "gru": (keras.layers.GRU, ProjectedGRU),
        "lstm": (keras.layers.LSTM, ProjectedLSTM),
    }[cell]
    options = dict(return_sequences=sequences, return_state=True, unroll=unroll, go_backwards=backwards)
    plain, projected = plain_class(6, **options), projected_class(6, **options)
    inputs = tf.random.normal((3, 5, 4), seed=1)
    plain(inputs)
    projected(inputs)
    projected.set_weights([w + 0.1 * np.random.default_rng(0).standard_normal(w.shape) for w in plain.get_weights()])
    plain.set_weights(projected.get_weights())  # a non-zero bias, so both biases are exercised
    results, kernel_products = [], []
    for layer in (plain, projected):

        @tf.function  # in a graph, as training runs it: a real while loop when not unrolled
        def outputs_and_gradients(inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                outputs = layer(inputs)
                loss = sum(tf.reduce_sum(tf.sin(o)) for o in outputs)
            return [*outputs, *tape.gradient(loss, [inputs, *layer.trainable_weights])]

        results.append(outputs_and_gradients(inputs))
        graph = outputs_and_gradients.get_concrete_function(inputs).graph
        kernel_shape = tuple(layer.cell.recurrent_kernel.shape)
        kernel_products.append(
            sum(op.type == "MatMul" and op.outputs[0].shape == kernel_shape for op in graph.get_operations())
        )
    for expected, got in zip(*results):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    if unroll:  # Keras: one recurrent-kernel gradient product per step; ours: one for all steps
        assert kernel_products == [5, 1]


@pytest.mark.parametrize("cell, layers", [("gru", 1), ("lstm", 2)])
def test_greedy_sampling_follows_the_trained_network(cell, layers):
    """The sampler's own step (the forward path scoring also runs) picks what the Keras model,
    re-reading the whole text, ranks first."""
    model = tiny_model(cell=cell, layers=layers)
    ids = list(model.vocabulary.encode(model.separator + "Más"))
    for _ in range(15):
        logits = model.network(np.array([ids]), training=False).numpy()[0, -1]
        ids.append(int(np.argmax(logits[1:])) + 1)  # <unk> blocked: every training character is known
    expected = model.vocabulary.decode(ids[-15:])
    assert model.generate(["Más"], greedy(15)) == [expected]


@pytest.mark.parametrize("cell, layers, target, transposed", [("gru", 1, "all", False), ("lstm", 2, "last", True)])
def test_training_model_folds_the_embedding_into_the_first_projection(cell, layers, target, transposed, monkeypatch):
    """The training model's first layer reads token ids: same logits and gradients as the layers
    called one after the other, the embedding's gradient in the same per-position rows (what
    Keras's Adam squares), without the positions x embedding by embedding x gates product."""
    import keras
    import tensorflow as tf

    from mlproject.models.keras_rnn.fast_cpu import kernels

    monkeypatch.setattr(kernels, "transposed_layout_fastest", lambda: transposed)
    model = tiny_model(cell=cell, layers=layers, target=target, unroll=True).network
    layer_by_layer = keras.Model(model.inputs, model.outputs)  # Keras's own functional call
    tokens = tf.constant(np.random.default_rng(0).integers(1, 20, (8, 12)), tf.int32)  # 96 positions
    results, products = [], []
    for network in (layer_by_layer, model):

        @tf.function
        def logits_and_gradients(tokens):
            with tf.GradientTape() as tape:
                logits = network(tokens, training=True)
                loss = tf.reduce_sum(tf.sin(logits))
            embedding, *rest = tape.gradient(loss, network.trainable_weights)
            assert isinstance(embedding, tf.IndexedSlices)
            return [logits, embedding.values, embedding.indices, *rest]

        results.append([t.numpy() for t in logits_and_gradients(tokens)])
        graph = logits_and_gradients.get_concrete_function(tokens).graph
        products.append([op.inputs[0].shape.as_list() for op in graph.get_operations() if op.type == "MatMul"])
    assert len(results[0]) == len(model.trainable_weights) + 2
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    every_position = [96, 8]  # (batch x time) x embedding: the product the fold saves
    assert every_position in products[0] and every_position not in products[1]


@pytest.mark.parametrize(
    "onednn, flags, transposed",
    [(True, {"avx", "avx2"}, True), (True, {"avx", "avx2", "avx512f"}, False), (False, {"avx", "avx2"}, False)],
)
def test_the_transposed_kernel_is_read_only_under_onednn_without_avx512(onednn, flags, transposed, monkeypatch):
    from mlproject.models.keras_rnn.fast_cpu import kernels

    monkeypatch.setattr(kernels, "onednn_enabled", lambda: onednn)
    monkeypatch.setattr(kernels, "cpu_flags", lambda: frozenset(flags))
    assert kernels.transposed_layout_fastest() is transposed


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_keras_own_layers_compute_what_the_fast_layers_compute(cell):
    """train.rnn.fast_layers: false, the fallback for a Keras that moved its internals: the same
    network, names and weights, so scoring and sampling run on it unchanged."""
    fast, plain = tiny_model(cell=cell, layers=2), tiny_model(cell=cell, layers=2, fast_layers=False)
    assert not any(type(layer).__module__.startswith("mlproject") for layer in [plain.network, *plain.network.layers])
    plain.network.set_weights(fast.network.get_weights())
    ids = fast.vocabulary.encode(TEXT)[None, :30]
    np.testing.assert_allclose(plain.network(ids).numpy(), fast.network(ids).numpy(), rtol=1e-5, atol=1e-6)
    assert plain.score(TEXT, EvaluateConfig()).nll_nats == pytest.approx(fast.score(TEXT, EvaluateConfig()).nll_nats)
    assert plain.generate(["Más"], greedy(20)) == fast.generate(["Más"], greedy(20))


def test_keras_internals_check_passes_here_and_names_the_fallback_when_keras_moves_them(monkeypatch):
    import keras

    from mlproject.models.keras_rnn.fast_cpu.keras_internals import check_keras_internals

    check_keras_internals()  # this Keras: what the fast layers override and call is there
    monkeypatch.setattr(keras.layers.RNN, "inner_loop", lambda self, sequences, state: None)
    with pytest.raises(
        RuntimeError,
        match=r"changed what the fast CPU layers rely on.*RNN.inner_loop.*"
        r"set train.rnn.fast_layers: false",
    ):
        check_keras_internals()


def test_a_kind_is_imported_only_when_used_and_loading_a_keras_model_never_imports_torch(tmp_path):
    import subprocess
    import sys

    kinds.save(tiny_model(), tmp_path / "bundle")
    script = f"""
import sys
import mlproject.config
from mlproject.models import kinds
assert "tensorflow" not in sys.modules and "mlproject.models.keras_rnn" not in sys.modules
from mlproject.models.interface import Sampling
model = kinds.load({str(tmp_path / "bundle")!r})
assert model.kind == "rnn" and len(model.generate(["El "], Sampling(5))[0]) == 5
assert "tensorflow" in sys.modules and "torch" not in sys.modules, sorted(sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_unknown_kind_is_named_with_the_known_ones():
    from mlproject.config import ConfigError

    with pytest.raises(ConfigError, match="model kind 'bert': unknown; known: rnn, window_rnn, finetune, gpt"):
        kinds.kind_class("bert")
