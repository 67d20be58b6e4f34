"""Evaluate stage: perplexity on the validation text, from totals, plus sample generations.

Bits per byte is the figure promotion compares: it stays comparable across character, word and
subword models, as long as both are scored on the same validation text.
"""

from __future__ import annotations

from pathlib import Path

from mlproject.config import EvaluateConfig
from mlproject.fileio import md5_of, write_json, write_jsonl
from mlproject.language_model import LanguageModel


def validation_text_path(tokens_dir: str) -> Path:
    return Path(tokens_dir) / "validation.txt"


def score_validation(model: LanguageModel, tokens_dir: str, config: EvaluateConfig) -> dict:
    """The model's totals and derived figures on the current validation text, tagged with its MD5."""
    path = validation_text_path(tokens_dir)
    totals = model.score(path.read_text(encoding="utf-8"), config.streams, config.chunk_length)
    return {**totals.figures(), "validation_md5": md5_of(path)}


def sample_rows(model: LanguageModel, config: EvaluateConfig, seed: int) -> list[dict]:
    rows = []
    for temperature in config.temperatures:
        texts = model.generate(config.sample_prompts, config.sample_length, temperature, seed=seed)
        rows.extend({"prompt": p, "temperature": temperature, "text": t}
                    for p, t in zip(config.sample_prompts, texts))
    return rows


def evaluate(config: EvaluateConfig, seed: int, model_dir: str, tokens_dir: str, metrics_path: str,
             samples_path: str) -> tuple[dict, list[dict]]:
    model = LanguageModel.load(Path(model_dir) / "model")
    metrics = {"level": model.vocabulary.level, **score_validation(model, tokens_dir, config)}
    samples = sample_rows(model, config, seed)
    write_json(metrics_path, metrics)
    write_jsonl(samples_path, samples)
    return metrics, samples
