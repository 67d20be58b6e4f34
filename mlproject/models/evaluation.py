"""How any model is measured: its totals on the validation text, and sample generations.

Bits per byte is the figure promotion compares: it stays comparable across character, word and
subword models as long as both are the cost of every byte of the same validation text (named by
its MD5). A figure that is not (tokens that do not give the text back, or text left unscored) is
refused here, for every kind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mlproject.config import EvaluateConfig, StageFailed
from mlproject.data.tokens import VALIDATION_DOCUMENTS
from mlproject.fileio import md5_of, read_json
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
    return score_validation_by_document(model, tokens_dir, config)[0]


def score_validation_by_document(model: LanguageModel, tokens_dir: str, config: EvaluateConfig) -> tuple[dict, dict]:
    """The figures of score_validation, and what each validation document cost (document_scores)."""
    path = validation_text_path(tokens_dir)
    text = path.read_text(encoding="utf-8")
    totals = model.score(text, config)
    figures = validation_figures(path, model.kind, model.token_level, totals, model.round_trip(text))
    return figures, document_scores(text, validation_document_starts(tokens_dir), totals, figures)


def document_scores(text: str, starts: np.ndarray, totals: Totals, figures: dict) -> dict:
    """Each document's share of the totals: the nats of the tokens that start in it, and its bytes
    and characters (the separator after it included), so that they sum to the whole text's. Two
    models' figures on the same text pair up by document (promotion's paired bootstrap)."""
    if len(starts) == 0 or starts[0] != 0 or starts[-1] >= max(len(text), 1) or np.any(np.diff(starts) <= 0):
        raise StageFailed(
            f"the validation documents' starts ({VALIDATION_DOCUMENTS}) do not fit validation.txt "
            f"({len(text)} characters); run the tokenize stage again"
        )
    ends = np.append(starts[1:], len(text))
    document = np.searchsorted(starts, totals.token_starts, side="right") - 1
    nats = np.bincount(document, weights=totals.token_costs, minlength=len(starts))
    return {
        "validation_md5": figures["validation_md5"],
        "score_rule": figures["score_rule"],
        "nats": nats.tolist(),
        "bytes": [len(text[start:end].encode("utf-8")) for start, end in zip(starts, ends)],
        "characters": (ends - starts).tolist(),
    }


def validation_document_starts(tokens_dir: str) -> np.ndarray:
    """Where each validation document starts in validation.txt (written by the tokenize stage)."""
    path = Path(tokens_dir) / VALIDATION_DOCUMENTS
    if not path.is_file():
        raise StageFailed(f"{path} is missing: the tokens are older than the tokenize stage; run it again")
    return np.array(read_json(path)["starts"], np.int64)


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
    costs, starts = totals.token_costs, totals.token_starts
    if costs is None and starts is None:  # a version registered before kinds gave them: no document figures
        return
    if costs is None or starts is None or len(costs) != totals.tokens or len(starts) != totals.tokens:
        raise NotEveryByte(f"the {kind} model gave no cost and place for each of its {totals.tokens} tokens")
    if not np.isclose(costs.sum(), totals.nll_nats, rtol=1e-9, atol=1e-6) or np.any(np.diff(starts) < 0):
        raise NotEveryByte(
            f"the {kind} model's token costs sum to {costs.sum():.6f} nats, not its total "
            f"{totals.nll_nats:.6f}, or its tokens are out of order"
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
