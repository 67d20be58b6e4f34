"""The model card a registered version carries as its MLflow description: what it was trained on,
with which params, how it scores and what it writes, readable in the MLflow UI's version page.
"""

from __future__ import annotations

from mlproject.models.writing import words


def figures_line(metrics: dict) -> str:
    coverage = metrics.get("vocabulary_byte_coverage")
    spelled = (
        ""
        if coverage is None
        else "; its tokens cover every byte"
        if coverage == 1
        else f"; its vocabulary covers {coverage:.2%} of those bytes directly, its speller pays for the rest"
    )
    return (
        f"**{metrics['bits_per_byte']:.4f} bits per byte**, {metrics['bits_per_character']:.4f} bits "
        f"per character, perplexity {metrics['perplexity']:.2f} per token, on {metrics['characters']:,} "
        f"characters ({metrics['bytes']:,} UTF-8 bytes) of validation text "
        f"(MD5 `{metrics['validation_md5'][:10]}`){spelled}"
    )


def cell(value) -> str:
    """A value as one cell of a Markdown table: its newlines and bars written out."""
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace("|", "\\|")


def model_card(
    described: dict, run_params: dict, metrics: dict, samples: list[dict], lineage: dict, samples_shown: int = 3
) -> str:
    """Markdown: `described` is the model folder's kind.json, `run_params` the training run's
    params (flattened), `lineage` the version's commit and data tags."""
    kind = described.get("kind", "?")
    details = ", ".join(f"{key} {value}" for key, value in described.items() if key != "kind")
    params = "\n".join(f"| `{key}` | {cell(value)} |" for key, value in sorted(run_params.items()))
    data = "\n".join(
        f"- `{key.partition(':')[2]}`: MD5 `{value}`"
        for key, value in sorted(lineage.items())
        if key.startswith("data_md5:")
    )
    shown = "\n".join(
        f"- prompt `{row.get('prompt', '')!r}`, temperature {row.get('temperature', '?')}: "
        f"{' '.join(str(row.get('text', '')).split())[:240]}"
        for row in samples[:samples_shown]
    )
    commit = lineage.get("git_commit", "unknown")[:10]
    dirty = " (with uncommitted changes)" if lineage.get("git_dirty") == "true" else ""
    return (
        "\n\n".join(
            part
            for part in [
                f"### A `{kind}` text generator" + (f" ({details})" if details else ""),
                f"**Validation:** {figures_line(metrics)}.",
                f"**Code:** commit `{commit}`{dirty}.",
                f"**Data** (the files the train stage read):\n{data or '- not recorded'}",
                f"**Samples:**\n{shown or '- none'}",
                f"**Writing:** {words(metrics['writing'])}." if metrics.get("writing") else "",
                f"**Params of the training run:**\n\n| param | value |\n|---|---|\n{params}" if params else "",
            ]
            if part
        ).strip()
        + "\n"
    )
