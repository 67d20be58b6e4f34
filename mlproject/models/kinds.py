"""A kind's class by name, and model folders that record their kind: save one, load any."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

from mlproject.config import ConfigError
from mlproject.models import KINDS

KIND_FILE = "kind.json"


def kind_class(name: str):
    """The LanguageModel class of kind `name`, imported now."""
    if name not in KINDS:
        raise ConfigError(f"model kind {name!r}: unknown; known: {', '.join(KINDS)}")
    module, _, attribute = KINDS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def save(model, folder: str | Path) -> None:
    """Save `model` with its kind into `folder`, replacing what was there in one rename."""
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save(staging)
    (staging / KIND_FILE).write_text(json.dumps({"kind": model.kind, **model.tags()}) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    staging.replace(folder)


def load(folder: str | Path):
    """The model saved in `folder`, whatever its kind."""
    folder = Path(folder)
    kind = json.loads((folder / KIND_FILE).read_text(encoding="utf-8"))["kind"]
    return kind_class(kind).load(folder)
