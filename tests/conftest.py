"""Shared fixtures: a tiny corpus, tiny params, and a throwaway project repository."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from infra.servers import QUIET
from mlproject.config import Paths
from mlproject.fileio import copy_paths
from mlproject.models.settings import Training, settings_class

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CORPUS = ROOT / "tests" / "data" / "refranes-sample.fortunes"
BIN = Path(sys.executable).parent

for key, value in QUIET.items():  # the servers' (and so the CLI's): a test's own `mlflow ui` too
    os.environ.setdefault(key, value)

# The fast tier (`make test-fast`, the inner loop: under 3 minutes) leaves out what starts servers
# or a browser, runs a whole pipeline or trains real models; `make test` runs everything.
SLOW_MODULES = {
    "test_benchmarks",
    "test_comparison",
    "test_data_docs",
    "test_fidelity",
    "test_pipeline",
    "test_presets",
    "test_real_site",
    "test_registry",
    "test_serving",
    "test_smollm2",
    "test_sweep_runs",
    "test_team",
    "test_train",
    "test_transformers",
}
SLOW_FIXTURES = {"reproduced", "browser_page", "team"}


# Within the slow tier, `-m servers` picks the team servers' tests (PostgreSQL, MLflow and Prefect
# servers, workers) and `-m browser` those that open a page in headless Chromium.
SERVER_MODULES, BROWSER_FIXTURES = {"test_team"}, {"chromium", "browser_page"}


# The longest files first (docs/tests.md has their times), so the two test processes of `make test`
# (one whole file, or group of SHARE_A_FIXTURE, at a time each) do not end with one of them alone on
# a long file. The Makefile keeps this order (--no-loadscope-reorder: pytest-xdist would otherwise
# hand out the files with the most tests first).
LONGEST_FIRST = [
    "test_team",
    "test_benchmarks",
    "test_pipeline",
    "test_dvc_deps",
    "test_train",
    "test_sweep_runs",
    "test_registry",
    "test_workspace",
    "test_presets",
    "test_transformers",
    "test_smollm2",
    "test_comparison",
    "test_serving",
]


# Files whose tests share an expensive session fixture, run in the same test process so that it is
# built once, not once per process (`make test` runs two, one file, or one such group, at a time).
SHARE_A_FIXTURE = {
    "test_benchmarks": "reproduced",
    "test_dvc_deps": "reproduced",
    "test_pipeline": "reproduced",
    "test_comparison": "two_versions",
    "test_serving": "two_versions",
    "test_presets": "tiny_base",
    "test_transformers": "tiny_base",
}


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, but the files of SHARE_A_FIXTURE grouped by their fixture (pytest-xdist's
    own loadgroup cannot group under pytest 9: it writes `item._nodeid`, which pytest 9 no longer reads)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ByFileOrSharedFixture(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SHARE_A_FIXTURE.get(Path(file).stem, file)

    return ByFileOrSharedFixture(config, log)


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        module = item.module.__name__.rsplit(".", 1)[-1]
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order
    for item in items:
        module, fixtures = item.module.__name__.rsplit(".", 1)[-1], set(item.fixturenames)
        if module in SLOW_MODULES or SLOW_FIXTURES & fixtures:
            item.add_marker(pytest.mark.slow)
        if module in SERVER_MODULES or "team" in fixtures:
            item.add_marker(pytest.mark.servers)
        if BROWSER_FIXTURES & fixtures:
            item.add_marker(pytest.mark.browser)


def as_kind(settings: Training, kind: str, **changes) -> Training:
    """Test settings `settings` as those of kind `kind`: the values both kinds have, then `changes`."""
    cls = settings_class(kind)
    names = {f.name for f in dataclasses.fields(cls)}
    kept = {key: value for key, value in dataclasses.asdict(settings).items() if key in names}
    return cls(**{**kept, **changes, "kind": kind})


def paths_in(root: Path, **names: str | Path) -> Paths:
    """The default layout of outputs below `root`, with some renamed (relative to `root`)."""
    return Paths(**{**Paths().under(root).__dict__, **{k: str(root / v) for k, v in names.items()}})


def tiny_params(workdir: Path) -> dict:
    """The real params.yaml, pointed at the sample corpus and shrunk to a model that trains in seconds."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["scrape"]["sources"][0].update(location=str(SAMPLE_CORPUS), include=["*"], exclude=[])
    params["validate"].update(min_documents=50, min_corpus_chars=5000)
    params["train"].update(epochs=2, max_steps_per_epoch=12, batch_size=32)
    params["train"]["rnn"].update(units=32, embedding_dim=16, sequence_length=40)
    params["evaluate"].update(streams=8, sample_length=30, temperatures=[0.5, 1.0])
    params["generate"].update(max_length=40)
    params["mlflow"]["tracking_uri"] = f"sqlite:///{workdir / 'mlflow.db'}"
    return params


def write_params(workdir: Path, params: dict) -> Path:
    path = workdir / "params.yaml"
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    return path


def git(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        },
    )


def make_tiny_project(workdir: Path) -> Path:
    """A fresh git repository in `workdir` holding the pipeline definition and tiny params."""
    copy_paths(["dvc.yaml", "prompts", "mlproject", ".dvc/config", ".gitignore"], ROOT, workdir)
    write_params(workdir, tiny_params(workdir))
    git(workdir, "init", "-q")
    git(workdir, "add", "-A")
    git(workdir, "commit", "-qm", "tiny project")
    return workdir


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_tiny_project(tmp_path)


class Reproduced(NamedTuple):
    project: Path
    output: str  # what the first `dvc repro` printed
    imports: Path  # <stage>.json: the project modules each stage's process imported


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Reproduced:
    """A tiny project after its first `dvc repro`: one whole pipeline run shared by the tests that
    need one (each leaves it with nothing to rerun)."""
    root = tmp_path_factory.mktemp("reproduced")
    project, imports = make_tiny_project(root / "project"), root / "imports"
    imports.mkdir()
    probe = {"PYTHONPATH": str(ROOT / "tests" / "import_probe"), "MLPROJECT_IMPORT_PROBE": str(imports)}
    return Reproduced(project, run(["dvc", "repro"], project, env=probe).stdout, imports)


def run(
    args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A console command of the project's environment, as a user would type it (with `env` set)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    result = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, text=True, capture_output=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """The sample corpus scraped and split, as the tokenize stage leaves it (in `corpus/tokens`)."""
    from mlproject.config import ScrapeConfig, Source, TokenizeConfig
    from mlproject.data.scrape import scrape
    from mlproject.data.tokens import tokenize

    root = tmp_path_factory.mktemp("corpus")
    layout = paths_in(root, raw_documents="raw.jsonl", accepted_documents="raw.jsonl", tokens="tokens")
    scrape(ScrapeConfig(sources=[Source(name="s", location=str(SAMPLE_CORPUS))]), layout)
    tokenize(TokenizeConfig(), layout)
    return root


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, corpus) -> Path:
    """A small pretrained-like model in a local folder (safetensors and its tokenizer), as a
    user's own base would be: a context of 512 tokens, random weights, no download."""
    import dataclasses

    from mlproject.models.transformers_lm.gpt import ScratchGPT
    from tests.test_transformers import TINY_GPT

    folder = tmp_path_factory.mktemp("base") / "tiny-base"
    model = ScratchGPT.initial(dataclasses.replace(TINY_GPT, sequence_length=512), 1, corpus / "tokens")
    model.network.save_pretrained(folder)
    model.tokenizer.save_pretrained(folder)
    return folder


# Debian's Chromium (installed by `make test`), driven by Playwright: no browser is downloaded.
CHROMIUM = "/usr/bin/chromium"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class OfflinePage(NamedTuple):
    page: object  # a playwright Page
    blocked: list[str]  # every request that left this machine, refused: a page that works offline asks for none

    def screenshot(self, path: Path) -> Path:
        """A picture of what a person sees, kept beside the test's files."""
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium):
    """A fresh page in headless Chromium with no network beyond this machine: requests to any other
    host are refused and listed in `blocked`."""
    from urllib.parse import urlparse

    from playwright.sync_api import expect

    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    blocked: list[str] = []

    def only_local(route):
        url = urlparse(route.request.url)
        if url.scheme in ("file", "data", "blob", "about") or url.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    page.set_default_timeout(60_000)
    # Assertions wait as long as actions: a UI's first render takes seconds more while the other
    # test process trains (expect's own default is 5 s).
    expect.set_options(timeout=60_000)
    yield OfflinePage(page, blocked)
    context.close()


class TwoVersions(NamedTuple):
    project: Path  # a tiny project whose SQLite store holds the two versions
    params: Path
    store: str  # its tracking URI


PIPELINE_UP_TO_PROMOTE = ["scrape", "validate", "tokenize", "train", "evaluate", "register", "promote"]


def run_stages_in_process(project: Path, stages: list[str]) -> None:
    """`mlproject <stage>` for each stage, in this process (imports shared with the other tests),
    leaving the working folder, the environment and MLflow's URIs as they were."""
    import mlflow

    from mlproject.cli import main

    before = (Path.cwd(), dict(os.environ), mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    try:
        os.chdir(project)
        for stage in stages:
            assert main([stage, "--params", "params.yaml"]) == 0, stage
    finally:
        os.chdir(before[0])
        mlflow.set_tracking_uri(before[2])
        mlflow.set_registry_uri(before[3])
        os.environ.clear()  # after set_tracking_uri, which exports the URI to the environment
        os.environ.update(before[1])


@pytest.fixture(scope="session")
def two_versions(tmp_path_factory) -> TwoVersions:
    """A store with two registered versions of two kinds: a tiny char-RNN (v1, champion) and a tiny
    GPT from scratch (v2, challenger), each trained, scored and registered by the stages."""
    project = make_tiny_project(tmp_path_factory.mktemp("two-versions") / "project")
    run_stages_in_process(project, PIPELINE_UP_TO_PROMOTE)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"].update(kind="gpt", batch_size=4, epochs=2, max_steps_per_epoch=4, learning_rate=0.003, patience=0)
    params["train"]["gpt"].update(
        layers=2, heads=2, embedding_dim=32, vocab_size=400, sequence_length=32, warmup_steps=2, validation_tokens=256
    )
    params["evaluate"].update(window=32, stride=16)
    write_params(project, params)
    git(project, "commit", "-qam", "a tiny GPT")
    run_stages_in_process(project, ["train", "evaluate", "register", "promote"])
    return TwoVersions(project, project / "params.yaml", params["mlflow"]["tracking_uri"])


def default_interrupt() -> None:
    """Ctrl-C as in a terminal: a test run started in the background inherits SIGINT ignored, and
    a Python program that starts with it ignored never sees a KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def server_process(
    command: list[str], cwd: Path, url: str, log: Path, stop_signal=signal.SIGINT
) -> Iterator[subprocess.Popen]:
    """A console command of the project's environment that serves `url`, started as a user would,
    in its own process group (servers start workers), its output in `log`; yielded once `url`
    answers. Stopped by `stop_signal` to the group; the test fails when that takes over 30 s."""
    from infra.servers import wait_for

    with open(log, "wb") as output:  # a file: a pipe nobody reads fills up and stalls the server
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=default_interrupt,
        )
    try:
        try:
            wait_for(url, command[0], 120, process)
        except RuntimeError as error:
            pytest.fail(f"{error}:\n{log.read_text(errors='replace')[-3000:]}")
        yield process
    finally:
        os.killpg(process.pid, stop_signal)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"`{' '.join(command[:2])}` did not stop on {signal.Signals(stop_signal).name} within 30 s")
