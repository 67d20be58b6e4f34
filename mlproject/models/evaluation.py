"""How any model is measured: its totals on the validation text, and sample generations.

Bits per byte is the figure promotion compares: it stays comparable across character, word and
subword models, as long as both are scored on the same validation text (named by its MD5).
"""

from __future__ import annotations

from pathlib import Path

from mlproject.config import EvaluateConfig
from mlproject.fileio import md5_of
from mlproject.models.interface import LanguageModel, Sampling


def validation_text_path(tokens_dir: str) -> Path:
    return Path(tokens_dir) / "validation.txt"


def score_validation(model: LanguageModel, tokens_dir: str, config: EvaluateConfig) -> dict:
    """The model's totals and derived figures on the current validation text, tagged with its MD5."""
    path = validation_text_path(tokens_dir)
    totals = model.score(path.read_text(encoding="utf-8"), config)
    return {"level": model.token_level, **totals.figures(), "validation_md5": md5_of(path)}


def sample_rows(model: LanguageModel, config: EvaluateConfig, seed: int) -> list[dict]:
    rows = []
    for temperature in config.temperatures:
        sampling = Sampling(max_length=config.sample_length, temperature=temperature, seed=seed)
        texts = model.generate(config.sample_prompts, sampling)
        rows.extend({"prompt": p, "temperature": temperature, "text": t}
                    for p, t in zip(config.sample_prompts, texts))
    return rows
