"""`mlproject compare`: the registered versions side by side, read from the registry alone.

One row per version (its aliases, kind, figures, training time, the params that set it apart, its
data and commit), and every version's validation-loss curve in one plot.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from mlflow import MlflowClient

from mlproject.config import CompareConfig
from mlproject.models.evaluation import SCORE_RULE
from mlproject.tracking.promotion import DIFFERENCE_TAG

DATA_TAG = "data_md5:"


@dataclass
class VersionRow:
    version: str
    aliases: list[str]
    kind: str
    bits_per_byte: float | None
    bits_per_character: float | None
    perplexity: float | None  # per token of the version's own tokenizer
    training_seconds: float | None
    data_hash: str  # one short hash over every data file the model was trained on
    git_commit: str
    run_id: str
    promotion: str  # the promote stage's reason for this version's alias
    params: dict[str, str] = field(default_factory=dict)
    byte_coverage: float | None = None  # share of validation bytes its vocabulary covers directly
    comparable: bool = True  # its figure is under the current score rule (every byte paid for)
    difference: str = ""  # its bits per byte minus the champion's it met, and the interval: -0.0031 [-0.0072, +0.0009]
    copy_share: float | None = None  # of its samples' word 8-grams, found verbatim in the training text
    repeat_share: float | None = None  # the longest span a sample repeats, as a share of it (mean)

    @property
    def bits_per_byte_per_nat(self) -> float | None:
        """Turns a loss in nats per token into bits per byte on the validation text: its tokens
        per byte (bits per byte x ln 2 / ln perplexity) over ln 2."""
        if self.bits_per_byte is None or not self.perplexity or self.perplexity <= 1:
            return None
        return self.bits_per_byte / math.log(self.perplexity)

    @property
    def label(self) -> str:
        return f"v{self.version}" + "".join(f" @{alias}" for alias in self.aliases) + f" ({self.kind})"


def number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def data_hash(tags: dict) -> str:
    files = sorted(f"{key[len(DATA_TAG) :]}={value}" for key, value in tags.items() if key.startswith(DATA_TAG))
    return hashlib.md5("\n".join(files).encode()).hexdigest()[:8] if files else "-"


def version_row(client: MlflowClient, version, aliases: list[str]) -> VersionRow:
    """One registered version as the table and the web page show it."""
    run, tags = client.get_run(version.run_id).data, version.tags
    return VersionRow(
        version=str(version.version),
        aliases=sorted(aliases),
        kind=tags.get("model_kind", "?"),
        bits_per_byte=number(tags.get("bits_per_byte")),
        bits_per_character=number(tags.get("bits_per_character")),
        perplexity=number(tags.get("perplexity")),
        training_seconds=run.metrics.get("training_seconds"),
        data_hash=data_hash(tags),
        git_commit=tags.get("git_commit", "")[:10] + ("*" if tags.get("git_dirty") == "true" else ""),
        run_id=version.run_id,
        promotion=tags.get("promotion.reason", ""),
        difference=tags.get(DIFFERENCE_TAG, ""),
        params=dict(run.params),
        byte_coverage=number(tags.get("vocabulary_byte_coverage")),
        comparable=tags.get("score_rule") == SCORE_RULE,
        copy_share=number(tags.get("writing.copy_share")),
        repeat_share=number(tags.get("writing.repeat_share")),
    )


def aliases_of(client: MlflowClient, name: str) -> dict[str, list[str]]:
    """Each version's aliases (a searched or fetched version does not list its own)."""
    by_version: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    return by_version


def version_rows(client: MlflowClient, name: str, newest: int | None = None) -> list[VersionRow]:
    """The newest registered versions of `name` (all of them by default), newest first."""
    versions = sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version))
    if not versions:
        return []
    aliases = aliases_of(client, name)
    return [version_row(client, v, aliases.get(str(v.version), [])) for v in versions[:newest]]


def differing_params(rows: list[VersionRow]) -> list[str]:
    """The params whose values differ between the rows that have them. A param only some rows have
    is a setting of their kind (the kind column tells them apart), or one older params lacked."""
    keys = sorted({key for row in rows for key in row.params})
    return [key for key in keys if len({row.params[key] for row in rows if key in row.params}) > 1]


def figure(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def table(rows: list[VersionRow]) -> str:
    """The rows as a text table; the params column holds only what differs between versions."""
    differing = differing_params(rows)
    header = [
        "version",
        "alias",
        "kind",
        "bits/byte",
        "vs champion (95%)",
        "bits/char",
        "in vocab",
        "copied",
        "repeat",
        "train time",
        "data",
        "commit",
        "params that differ",
    ]
    lines = [
        [
            row.version,
            ",".join(row.aliases) or "-",
            row.kind,
            figure(row.bits_per_byte) + ("" if row.comparable else "†"),
            row.difference or "-",
            figure(row.bits_per_character),
            share(row.byte_coverage),
            share(row.copy_share),
            share(row.repeat_share),
            "-" if row.training_seconds is None else f"{row.training_seconds:.0f} s",
            row.data_hash,
            row.git_commit or "-",
            " ".join(f"{key}={row.params.get(key, '-')}" for key in differing) or "-",
        ]
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]

    def render(cells) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def verdict(rows: list[VersionRow]) -> str:
    """Why the champion is champion, in one line."""
    champion = next((row for row in rows if "champion" in row.aliases), None)
    if champion is None:
        return "no version holds the alias champion yet (run the promote stage)"
    scored = [row for row in rows if row.bits_per_byte is not None and row.comparable]
    best = min(scored, key=lambda row: row.bits_per_byte) if scored else None
    lowest = (
        "the lowest bits per byte listed"
        if best is champion
        else f"v{best.version} scores lower ({best.bits_per_byte:.4f}) on its own validation text"
        if best
        else ""
    )
    return (
        f"champion v{champion.version}: {figure(champion.bits_per_byte)} bits per byte, {lowest}; "
        f"promote said: {champion.promotion or 'no reason recorded'}"
    )


def loss_curves(client: MlflowClient, rows: list[VersionRow]) -> list[dict]:
    """Each version's validation loss per epoch (logged once per epoch by every kind), in bits per
    byte so that kinds with different tokenizers share one axis."""
    points = []
    for row in rows:
        scale = row.bits_per_byte_per_nat
        if scale is None:
            continue
        history = sorted(client.get_metric_history(row.run_id, "val_loss"), key=lambda m: (m.step, m.timestamp))
        points.extend(
            {"version": row.label, "epoch": epoch, "bits_per_byte": m.value * scale}
            for epoch, m in enumerate(history, start=1)
        )
    return points


def write_plot(points: list[dict], output: str) -> list[Path]:
    """One chart, written as a PNG and as an interactive HTML page with its scripts inlined
    (it opens offline)."""
    import altair as alt
    import pandas as pd

    chart = (
        alt.Chart(pd.DataFrame(points, columns=["version", "epoch", "bits_per_byte"]))
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("bits_per_byte:Q", title="validation loss, bits per byte", scale=alt.Scale(zero=False)),
            color=alt.Color("version:N", title="version"),
            tooltip=["version", "epoch", alt.Tooltip("bits_per_byte:Q", format=".4f")],
        )
        .properties(
            title=[
                "Validation loss of the registered versions",
                "(each epoch's loss per token, times the version's tokens per byte of validation text)",
            ],
            width=640,
            height=360,
        )
        .interactive()
    )
    written = []
    for suffix, options in [("png", {"scale_factor": 2}), ("html", {"inline": True})]:
        path, partial = Path(f"{output}.{suffix}"), Path(f"{output}.{suffix}.partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        chart.save(str(partial), format=suffix, **options)
        partial.replace(path)  # a reader never finds half a file
        written.append(path)
    return written


def compare(config: CompareConfig, name: str) -> tuple[list[VersionRow], list[Path]]:
    client = MlflowClient()
    rows = version_rows(client, name, config.max_versions)
    return rows, (write_plot(loss_curves(client, rows), config.output) if rows else [])


@dataclass
class TrialRow:
    run_id: str
    state: str  # complete, pruned, or running/failed (the MLflow run's status)
    bits_per_byte: float | None
    training_seconds: float | None
    params: dict[str, str]


def sweep_trials(client: MlflowClient, experiment: str, sweep: str) -> tuple[str, list[TrialRow]]:
    """The newest run of sweep `sweep` (tag `sweep`) and its trials' training runs, best first."""
    found = client.get_experiment_by_name(experiment)
    parents = (
        client.search_runs([found.experiment_id], f"tags.sweep = '{sweep}'", order_by=["start_time DESC"])
        if found
        else []
    )
    if not parents:
        return "", []
    parent = parents[0].info.run_id
    children = client.search_runs([found.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    rows = [
        TrialRow(
            run.info.run_id,
            run.data.tags.get("sweep_trial_state") or run.info.status.lower(),
            run.data.metrics.get("validation_bits_per_byte"),
            run.data.metrics.get("training_seconds"),
            dict(run.data.params),
        )
        for run in children
    ]
    return parent, sorted(rows, key=lambda row: (row.bits_per_byte is None, row.bits_per_byte or 0.0))


def trial_table(rows: list[TrialRow]) -> str:
    """The trials ranked, with the params that set them apart."""
    differing = differing_params(rows)
    header = ["rank", "state", "bits/byte", "train time", "run", "params that differ"]
    lines = [
        [
            str(rank) if row.bits_per_byte is not None else "-",
            row.state,
            figure(row.bits_per_byte),
            "-" if row.training_seconds is None else f"{row.training_seconds:.0f} s",
            row.run_id,  # whole: what `mlproject register --run` takes
            " ".join(f"{key}={row.params.get(key, '-')}" for key in differing) or "-",
        ]
        for rank, row in enumerate(rows, start=1)
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]

    def render(cells) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])
