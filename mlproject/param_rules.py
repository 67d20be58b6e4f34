"""The rules a param follows (type, choices, bounds, help text), declared once on a dataclass field
with `param`, and the checks that apply them: the one place a params.yaml value is judged, for every
section and every kind's settings."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import field


class ConfigError(ValueError):
    """A param that is unknown, missing or out of range; the message names the key."""


def param(
    default,
    help: str,
    choices: tuple | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
):
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def same_as(cls, name: str, default):
    """A setting that follows the rule (help, bounds, choices) of the same setting in `cls`."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field(default=default, metadata=spec.metadata)


def check_value(cls, name: str, value, key: str):
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    expected = typing.get_type_hints(cls)[name]
    meta = spec.metadata
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ConfigError(f"{key} = {value!r}: expected a finite number")
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(f"{key} = {value!r}: expected {getattr(expected, '__name__', expected)}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key} = {value!r}: expected one of {', '.join(meta['choices'])}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"{key} = {value!r}: expected a value >= {meta['minimum']}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"{key} = {value!r}: expected a value <= {meta['maximum']}")
    if meta.get("above") is not None and value <= meta["above"]:
        raise ConfigError(f"{key} = {value!r}: expected a value > {meta['above']}")
    return value


def parse_section(cls, data, prefix: str):
    """Build a config dataclass from a mapping, naming the first unknown or invalid key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys to values, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown param; known: {', '.join(sorted(known))}")
    values = {k: check_value(cls, k, v, f"{prefix}.{k}") for k, v in data.items()}
    return cls(**values)


def describe(cls, values: dict | None = None, source: str = "params.yaml", skip: tuple = ()) -> str:
    """One entry per param for `--help` (but those in `skip`): the value `source` holds (else the
    built-in default, said so), the allowed choices and the help text."""
    values = values if isinstance(values, dict) else {}
    lines = []
    for spec in dataclasses.fields(cls):
        if spec.name in skip:
            continue
        if spec.name in values:
            value, note = values[spec.name], ""
        else:
            value = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
            note = f"   (built-in default; not set in {source})"
        if dataclasses.is_dataclass(value) or isinstance(value, dict) and value:
            value = "{...}"
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            value = f"[{len(value)} entries]"
        choices = f" [{'|'.join(spec.metadata['choices'])}]" if spec.metadata.get("choices") else ""
        lines.append(f"  {spec.name} = {value!r}{choices}{note}\n      {spec.metadata.get('help', '')}")
    return "\n".join(lines)
