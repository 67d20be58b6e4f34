"""Editing params.yaml as a person would: a preset's or a run's values merged in, its comments and
quotes kept, and the result checked (the chosen kind's settings included) before anything is
written. The command line (`mlproject preset`) and the workspaces of flow runs use it; no stage
does, so editing it reruns nothing."""

from __future__ import annotations

import json
from pathlib import Path

from mlproject import config as cfg


def merge_into(target, values, prefix: str, changed: list[str]) -> None:
    """Write `values` into the mapping `target`: nested mappings merge key by key, the rest replace."""
    for key, value in values.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge_into(current, value, f"{prefix}{key}.", changed)
            continue
        if current != value:
            changed.append(
                f"{prefix}{key}: {json.dumps(current, ensure_ascii=False)} -> {json.dumps(value, ensure_ascii=False)}"
            )
        target[key] = value


def apply_preset(params_path: Path, preset_path: Path) -> list[str]:
    """Merge a preset's keys into params.yaml, keeping its comments; validate before writing."""
    if not preset_path.is_file():
        available = ", ".join(sorted(p.stem for p in preset_path.parent.glob("*.yaml"))) or "none"
        raise cfg.ConfigError(f"{preset_path.stem}: no such preset in {preset_path.parent}/; available: {available}")
    return apply_values(params_path, round_trip_yaml().load(preset_path.read_text(encoding="utf-8")) or {})


def round_trip_yaml():
    """ruamel as params.yaml is read and written: comments kept, and quotes, which a URL in a
    flow sequence needs to stay YAML (in the preset read and in the file written alike)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def apply_values(params_path: Path, values: dict) -> list[str]:
    """Merge `values` into params.yaml, keeping its comments; validate before writing, so bad
    values never land. Returns the changes, one line each."""
    import io

    import yaml as plain_yaml
    from ruamel.yaml import YAML

    from mlproject.fileio import write_text

    yaml = round_trip_yaml()
    document = yaml.load(params_path.read_text(encoding="utf-8"))
    changed: list[str] = []
    merge_into(document, values, "", changed)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    # Validate the text exactly as DVC (ruamel, YAML 1.2) and the stages (PyYAML) will read it.
    YAML(typ="safe").load(buffer.getvalue())
    cfg.params_from_dict(plain_yaml.safe_load(buffer.getvalue())).train.settings()  # the kind's own too
    write_text(params_path, buffer.getvalue())
    return changed
