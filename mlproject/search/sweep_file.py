"""A sweep file, read and checked whole before any trial starts: one line naming the file, the key
and what is expected for anything wrong, values a param's own rule refuses included."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from mlproject.param_rules import ConfigError
from mlproject.tracking.trial import PRUNERS

SEARCHES = ("grid", "random", "tpe")
TOP_KEYS = {"description", "preset", "search", "trials", "minutes", "parallelism", "pruner", "params"}
RANGE_KEYS = {"low", "high", "log"}
PRESET = "preset"  # a dimension over whole presets (a kind at its preset), not one param


@dataclass(frozen=True)
class Dimension:
    """One thing the trials vary: a param (`train.rnn.units`) or `preset`, over `choices`, or over
    a range from `low` to `high` (whole numbers when both are, log-uniform when `log`)."""

    key: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def whole(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    def grid_values(self) -> tuple:
        return self.choices or tuple(range(int(self.low), int(self.high) + 1))


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path
    digest: str  # of the file's text: an edited file is another study
    preset: str | None
    search: str
    trials: int  # the most trials that finish (complete, pruned or failed)
    minutes: float  # no trial starts after this many minutes (0: no limit)
    parallelism: int
    pruner: str
    dimensions: tuple[Dimension, ...]

    def grid(self) -> list[dict]:
        keys = [d.key for d in self.dimensions]
        return [dict(zip(keys, values)) for values in itertools.product(*(d.grid_values() for d in self.dimensions))]


def sweep_path(name: str, folder: str | Path = "sweeps") -> Path:
    """`name` as a file (it ends in .yaml) or a sweep in `folder`; an unknown one lists those there."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else Path(folder) / f"{name}.yaml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in Path(folder).glob("*.yaml"))) or "none"
        raise ConfigError(f"{name}: no sweep file {path}; the sweeps in {folder}/: {available}")
    return path


def load_sweep(name: str, params_path: str | Path = "params.yaml", folder: str | Path = "sweeps") -> Sweep:
    """The sweep, its every value checked against params.yaml's rules (its preset applied)."""
    path = sweep_path(name, folder)
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(sorted(TOP_KEYS))}")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; expected {', '.join(sorted(TOP_KEYS))}")

    def fail(key: str, expected: str) -> ConfigError:
        return ConfigError(f"{path}: {key} = {json.dumps(raw.get(key), default=str)}: expected {expected}")

    search = raw.get("search", "tpe")
    if search not in SEARCHES:
        raise fail("search", " or ".join(SEARCHES))
    pruner = raw.get("pruner", "median")
    if pruner not in PRUNERS:
        raise fail("pruner", " or ".join(PRUNERS))
    parallelism = raw.get("parallelism", 1)
    if not isinstance(parallelism, int) or isinstance(parallelism, bool) or parallelism < 1:
        raise fail("parallelism", "how many trials run side by side, a whole number from 1")
    minutes = raw.get("minutes", 0)
    if not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or not minutes >= 0:
        raise fail("minutes", "minutes after which no trial starts, a number > 0 (0 or left out: no limit)")
    params = raw.get("params")
    if not isinstance(params, dict) or not params:
        raise fail("params", "a mapping of what to vary, e.g. train.rnn.units: [128, 256]")
    dimensions = tuple(dimension(path, key, spec) for key, spec in params.items())
    trials = raw.get("trials")
    if search == "grid" and trials is None:
        trials = math.prod(len(d.grid_values()) for d in dimensions)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise fail("trials", "how many trials at most, a whole number from 1 (a grid's size when left out)")
    if search == "grid":
        ranged = [d.key for d in dimensions if not d.choices and not d.whole]
        if ranged:
            raise ConfigError(f"{path}: params.{ranged[0]}: a grid needs a list of values or a whole-number range")
    preset = raw.get("preset")
    sweep = Sweep(
        path.stem,
        path,
        hashlib.md5(text.encode()).hexdigest(),
        preset,
        search,
        trials,
        float(minutes),
        parallelism,
        pruner,
        dimensions,
    )
    check_values(sweep, Path(params_path))
    return sweep


def dimension(path: Path, key: str, spec) -> Dimension:
    where = f"{path}: params.{key}"
    if key != PRESET and (not isinstance(key, str) or "." not in key):
        raise ConfigError(f"{where}: expected a param as section.key (train.rnn.units) or 'preset'")
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} = []: an empty list; expected the values to try")
        if len({json.dumps(v, sort_keys=True) for v in spec}) < len(spec):
            raise ConfigError(f"{where} = {json.dumps(spec)}: a value twice; expected each value once")
        return Dimension(key, choices=tuple(spec))
    if not isinstance(spec, dict) or set(spec) - RANGE_KEYS or not {"low", "high"} <= set(spec):
        raise ConfigError(
            f"{where}: expected a list of values, or a range {{low: 1, high: 4}} (log: true for log-uniform)"
        )
    low, high, log = spec["low"], spec["high"], spec.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or not low < high:
        raise ConfigError(f"{where}: low = {low}, high = {high}: an empty range; expected numbers with low < high")
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f"{where}: log = {log}: expected true or false, and low > 0 for a log-uniform range")
    if key == PRESET:
        raise ConfigError(f"{where}: expected a list of presets")
    return Dimension(key, low=low, high=high, log=log)


def check_values(sweep: Sweep, params_path: Path) -> None:
    """Every value of every dimension (a range's ends) applied to a copy of params.yaml with the
    sweep's preset, through the params' own rules; the first refused is named."""
    from mlproject.params_file import apply_preset, apply_values
    from mlproject.workspace import parse_assignments

    presets = params_path.parent / "presets"
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "params.yaml"
        shutil.copy(params_path, base)
        try:
            if sweep.preset:
                apply_preset(base, presets / f"{sweep.preset}.yaml")
        except ConfigError as error:
            raise ConfigError(f"{sweep.path}: preset: {error}") from None
        for d in sweep.dimensions:
            for value in d.choices or (d.low, d.high):
                trial = Path(folder) / "trial.yaml"
                shutil.copy(base, trial)
                try:
                    if d.key == PRESET:
                        apply_preset(trial, presets / f"{value}.yaml")
                    else:
                        apply_values(trial, parse_assignments([f"{d.key}={json.dumps(value)}"]))
                except ConfigError as error:
                    raise ConfigError(f"{sweep.path}: params.{d.key} = {json.dumps(value)}: {error}") from None
