"""How any model is measured: its totals on the validation text, and sample generations.

Bits per byte is the figure promotion compares: it stays comparable across character, word and
subword models as long as both are the cost of every byte of the same validation text (named by
its MD5). A figure that is not (tokens that do not give the text back, or text left unscored) is
refused here, for every kind.
"""

from __future__ import annotations

from pathlib import Path

from mlproject.config import EvaluateConfig, StageFailed
from mlproject.fileio import md5_of
from mlproject.models.interface import LanguageModel, Sampling, Totals

# Names the rule a figure was measured under; registered versions carry it as the tag
# `score_rule`, and promotion compares only figures of the same rule. Before it, a word model's
# <unk> stood for its word's bytes at the price of one token, and a char-RNN skipped the first
# character of each stream.
SCORE_RULE = "every-byte"


class NotEveryByte(StageFailed):
    """A score that is not the cost of every byte of the text: no bits-per-byte figure."""


def score_validation(model: LanguageModel, tokens_dir: str, config: EvaluateConfig) -> dict:
    """The model's totals and derived figures on the current validation text, tagged with its MD5
    and the rule they were measured under."""
    path = validation_text_path(tokens_dir)
    text = path.read_text(encoding="utf-8")
    return validation_figures(path, model.kind, model.token_level, model.score(text, config), model.round_trip(text))


def validation_figures(path: Path, kind: str, level: str, totals: Totals, back: str) -> dict:
    """The figures of a model's totals on the validation text at `path`, and `back`, the text its
    tokens give back, once they pass the rule (check_every_byte); so a model scored in another
    process (a registered version, tracking/version_process.py) is held to this rule too."""
    check_every_byte(kind, path.read_text(encoding="utf-8"), back, totals)
    return {"level": level, **totals.figures(), "validation_md5": md5_of(path), "score_rule": SCORE_RULE}


def check_every_byte(kind: str, text: str, back: str, totals: Totals) -> None:
    """Raise NotEveryByte unless a `kind` model's tokens give `text` back (as `back`) and `totals`
    paid for every byte of it."""
    if back != text:
        at = next((i for i, (a, b) in enumerate(zip(text, back)) if a != b), min(len(text), len(back)))
        raise NotEveryByte(
            f"the {kind} model's tokens do not give the validation text back (from "
            f"character {at}: {text[at : at + 20]!r} came back as {back[at : at + 20]!r}); "
            "its bits per byte would not be the cost of this text"
        )
    size = len(text.encode("utf-8"))
    if (totals.characters, totals.bytes) != (len(text), size):
        raise NotEveryByte(
            f"the {kind} model scored {totals.bytes} of the {size} bytes of the "
            "validation text; a figure that skips text is not a bits-per-byte figure"
        )


def validation_text_path(tokens_dir: str) -> Path:
    return Path(tokens_dir) / "validation.txt"


def sample_rows(model: LanguageModel, config: EvaluateConfig, seed: int) -> list[dict]:
    rows = []
    for temperature in config.temperatures:
        sampling = Sampling(max_length=config.sample_length, temperature=temperature, seed=seed)
        texts = model.generate(config.sample_prompts, sampling)
        rows.extend({"prompt": p, "temperature": temperature, "text": t} for p, t in zip(config.sample_prompts, texts))
    return rows
