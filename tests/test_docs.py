"""The README and its reference pages stay true: every link lands, every command, preset,
module and param they name exists, and the README stays a ten-minute read."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import unicodedata
from pathlib import Path

import pytest

from mlproject import config
from mlproject.cli import parser
from mlproject.models import SETTINGS
from mlproject.models.settings import settings_class

from .conftest import ROOT

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md")) + [README, ROOT / "infra" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE_BLOCK = re.compile(r"```(?:bash)?\n(.*?)```", re.S)
INLINE_CODE = re.compile(r"`([^`\n]+)`")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M):
        text = unicodedata.normalize("NFC", heading.strip().lower())
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def commands(page: Path) -> list[str]:
    """The lines of the page's shell blocks and inline code, comments cut off."""
    text = page.read_text(encoding="utf-8")
    lines = [line.split(" #")[0].strip() for block in CODE_BLOCK.findall(text) for line in block.splitlines()]
    return [line for line in lines + INLINE_CODE.findall(text) if line]


def test_the_readme_is_a_ten_minute_read_that_links_every_reference_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    linked = set(LINK.findall(text))
    for page in (ROOT / "docs").glob("*.md"):
        assert f"docs/{page.name}" in linked, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_lands_on_a_file_and_heading_that_exist(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        landing = (page.parent / path).resolve() if path else page
        assert landing.exists(), f"{page.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(landing), f"{page.name}: link to {target}: no such heading"


def test_every_make_target_mlproject_command_preset_and_module_named_exists():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    subcommands = next(
        action for action in parser(str(ROOT / "params.yaml"))._actions if action.dest == "command"
    ).choices
    presets = {path.stem for path in (ROOT / "presets").glob("*.yaml")}
    named = [command for page in PAGES for command in commands(page)]
    assert len(named) > 50
    for command in named:
        words = command.split()
        for index, word in enumerate(words[:-1]):
            following = words[index + 1]
            if index and words[index - 1].startswith("-"):  # kubectl -n mlproject ...: a namespace
                continue
            if word == "make" and re.fullmatch(r"[a-z][\w-]*", following):
                assert following in targets, f"{command!r}: no make target {following}"
            if word.endswith("mlproject") and re.fullmatch(r"[a-z]+", following):
                assert following in subcommands, f"{command!r}: no mlproject command {following}"
            if word.endswith("mlproject") and following == "preset" and index + 2 < len(words):
                name = words[index + 2]
                if not name.startswith(("-", "NAME")):
                    assert name in presets, f"{command!r}: no preset {name}"
            if word == "-m" and re.fullmatch(r"(flows|benchmarks|mlproject|infra)[\w.]*", following):
                assert importlib.util.find_spec(following), f"{command!r}: no module {following}"


SECTIONS = config.SECTIONS
PARAM = re.compile(rf"\b({'|'.join(SECTIONS)})\.([a-z_0-9]+)(?:\.([a-z_0-9]+))?")
FILE_SUFFIXES = {"npy", "txt", "json", "jsonl", "csv", "yaml", "db", "html", "png", "py", "md"}


def known(section: str, key: str, subkey: str | None) -> bool:
    fields = {spec.name: spec for spec in dataclasses.fields(SECTIONS[section])}
    if key not in fields:
        return False
    nested = {"http": config.HttpConfig, "sources": config.Source}.get(key) if section == "scrape" else None
    if section == "train" and key in SETTINGS:  # a kind's own section
        nested = settings_class(key)
    return subkey is None or nested is None or subkey in {spec.name for spec in dataclasses.fields(nested)}


def test_every_param_the_pages_name_is_a_param():
    """`train.epochs` in a page is a key params.yaml takes; a renamed param fails here first."""
    for page in PAGES:
        for code in INLINE_CODE.findall(page.read_text(encoding="utf-8")):
            for match in PARAM.finditer(code):
                section, key, subkey = match.groups()
                if key in FILE_SUFFIXES or match.start() and code[match.start() - 1] in "/._-":
                    continue
                assert known(section, key, subkey), f"{page.name}: `{code}` names no param {match.group(0)}"


def test_the_commands_of_the_quick_start_tell_the_truth_about_their_help():
    """`make help` lists every command the quick start names."""
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    quick = README.read_text(encoding="utf-8").split("## Quick start", 1)[1].split("##", 1)[0]
    for target in re.findall(r"^make (\w[\w-]*)", CODE_BLOCK.findall(quick)[0], re.M):
        assert f"make {target}" in shown, f"make help does not list make {target}"
