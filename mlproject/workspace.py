"""The workspace an orchestrated run works in: a checkout of its own, the params of this run, and
the DVC remote that carries every stage's outputs and run-cache between runners.

A run never writes the checkout it starts from. It clones that checkout's commit into a folder of
its own under the runs folder, applies its overrides there, pulls what earlier runs anywhere made
and pushes what it makes, so deleting the workspace afterwards loses nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

from mlproject.config import ConfigError, StageFailed, load_params
from mlproject.params_file import apply_preset, apply_values
from mlproject.tracking.checkpoints import SHARED as SHARED_CHECKPOINTS

RUNS_DIR = "MLPROJECT_RUNS_DIR"  # where workspaces are made; the worker names it
OVERRIDES = "MLPROJECT_RUN_OVERRIDES"  # the run's overrides, for the MLflow runs its stages make
REMOTE_TIMEOUT = 5.0  # seconds a network remote has to accept a connection
# A runner's DVC remote (a URL, or a folder), over the default remote of the checkout it clones:
# how a worker on another machine, or a Kubernetes job, is pointed at the team's remote.
RUNNER_REMOTE = "MLPROJECT_DVC_REMOTE"
# How many workspaces a runs folder keeps, the newest; older ones that no run works in are deleted
# when a new one is made (what they made is in the DVC remote and MLflow).
KEEP_RUNS = "MLPROJECT_KEEP_RUNS"
DEFAULT_KEEP_RUNS = 10
# The workspaces this process works in, each locked (flock on its folder) until the process ends,
# however it ends: a run's workspace is never deleted under it.
_IN_USE: dict[Path, int] = {}


@dataclass(frozen=True)
class Workspace:
    path: Path
    commit: str
    changed: list[str]  # the params lines this run changed, as `mlproject preset` prints them
    overrides: dict  # nested params sections, as applied
    env: dict[str, str]  # what its stages run with
    left_out: bool = False  # the source had uncommitted changes, which the run does not have


def runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR) or Path.home() / ".cache" / "mlproject" / "runs")


def overrides(epochs: int | None = None, sources: list[dict] | None = None, prompts_file: str | None = None) -> dict:
    """The params a run's arguments stand for (None leaves params.yaml's value)."""
    values = {"train": {"epochs": epochs}, "scrape": {"sources": sources}, "generate": {"prompts_file": prompts_file}}
    return {
        section: {k: v for k, v in keys.items() if v is not None}
        for section, keys in values.items()
        if any(v is not None for v in keys.values())
    }


def parse_assignments(pairs: list[str]) -> dict:
    """`train.epochs=3` as {"train": {"epochs": 3}}, each value read as YAML."""
    nested: dict = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip() or "." not in key:
            raise ConfigError(f"{pair!r}: expected section.key=value, e.g. train.epochs=3")
        *sections, last = key.strip().split(".")
        place = nested
        for section in sections:
            place = place.setdefault(section, {})
        place[last] = yaml.safe_load(value)
    return nested


def merged(first: dict, second: dict) -> dict:
    out = dict(first)
    for key, value in second.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise StageFailed(f"{repo}: git {' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Remote:
    name: str
    address: str  # its URL (a local folder made absolute), or an object store's endpoint
    port: int | None  # an SSH remote's `port` option
    cache: str  # the checkout's DVC cache folder, which its workspaces share
    url: str | None = None  # set in each workspace (a folder made absolute, or the runner's remote)


def source_remote(repo: Path) -> Remote:
    """The checkout's default DVC remote (or the runner's, MLPROJECT_DVC_REMOTE) and its cache folder."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        # The cache folder itself (`cache.dir`), not its `files/md5` part: set as a workspace's
        # cache.dir, that part would nest a second cache inside the first.
        config, cache = dvc_repo.config, str(dvc_repo.cache.local_cache_dir)
        if os.environ.get(RUNNER_REMOTE):
            url = os.environ[RUNNER_REMOTE]
            url = url if urlparse(url).scheme else str(Path(url).resolve())
            return Remote("runner", url, None, cache, url)  # named so in the workspace's config
        name = config["core"].get("remote")
        if not name or name not in config["remote"]:
            raise StageFailed(
                f"{repo}: no default DVC remote; a run keeps what it makes there "
                f"(dvc remote add -d NAME URL, or set {RUNNER_REMOTE})"
            )
        section = config["remote"][name]
        folder = urlparse(section["url"]).scheme in ("", "file")  # the same one, wherever the workspace is
        return Remote(
            name,
            str(section.get("endpointurl") or section["url"]),
            section.get("port"),
            cache,
            section["url"] if folder else None,
        )


def point_at(workspace: Path, remote: Remote) -> None:
    """The workspace's local DVC config (`.dvc/config.local`, beside the source's keys copied
    there): the source's remote as its default and the source's cache as its own, so the machine
    keeps one copy of the data however many workspaces it holds. (DVC's Python API: three `dvc`
    commands would cost three interpreter starts per run.)"""
    from dvc.config import Config

    with Config(dvc_dir=str(workspace / ".dvc")).edit("local") as config:
        if remote.url:
            config["remote"].setdefault(remote.name, {})["url"] = remote.url
        config["core"]["remote"] = remote.name
        config["cache"]["dir"] = remote.cache


# DVC 3 writes a run-cache entry as `.<random>.tmp`, then renames it (dvc/stage/cache.py); a DVC
# killed in between (a sweep killed while its trials pull) leaves the temp file, and DVC reads only
# the newest file of a run's folder (StageCache._load): it takes the temp file for a corrupted entry,
# misses the run, and trains it again, or, restoring only (mlproject register --run), fails. No
# write takes a minute, so older temp files are nobody's. tests/test_workspace.py fails when DVC
# no longer reads run-caches so; where its layout changes, nothing matches and nothing is dropped.
STALE_TEMP_SECONDS = 60


def drop_stale_run_cache_temps(*caches: str | Path) -> list[Path]:
    """Delete the temp files killed DVCs left in these caches' (or local remotes') run-caches."""
    dropped, now = [], time.time()
    for cache in caches:
        for temp in Path(cache).glob("runs/??/*/.*.tmp"):
            try:
                if now - temp.stat().st_mtime > STALE_TEMP_SECONDS:
                    temp.unlink()
                    dropped.append(temp)
            except FileNotFoundError:  # dropped meanwhile by another workspace
                pass
    return dropped


def check_remote(remote: Remote) -> None:
    """One line naming the remote when it cannot be reached; before any stage runs. A folder must
    be writable under an existing parent; an SSH, HTTP or endpoint remote must accept a
    connection. (An object store without an endpoint is left to DVC.)"""
    url = remote.address
    parsed = urlparse(url)

    def unreachable(reason) -> StageFailed:
        named = RUNNER_REMOTE if os.environ.get(RUNNER_REMOTE) else f"'{remote.name}'"
        return StageFailed(f"DVC remote {named} ({url}) cannot be reached: {reason}; no stage ran")

    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme else url)
        if not folder.parent.is_dir():
            raise unreachable(f"{folder.parent} does not exist")
        try:
            folder.mkdir(exist_ok=True)
        except OSError as error:
            raise unreachable(error.strerror) from None
        if not os.access(folder, os.W_OK):
            raise unreachable("not writable")
        return
    port = parsed.port or remote.port or {"ssh": 22, "http": 80, "https": 443}.get(parsed.scheme)
    if parsed.hostname and port:
        try:
            socket.create_connection((parsed.hostname, port), timeout=REMOTE_TIMEOUT).close()
        except OSError as error:
            raise unreachable(error.strerror or error) from None


def tracking_uri(source: Path, workspace: Path) -> str | None:
    """The MLflow store a workspace's stages must share with the checkout it came from: a
    relative SQLite file (in MLFLOW_TRACKING_URI or params) means the source's file, not one
    inside the workspace."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or load_params(workspace / "params.yaml").mlflow.tracking_uri
    absolute = absolute_sqlite(uri, source)
    return absolute if absolute != uri else None


def absolute_sqlite(uri: str, folder: Path) -> str:
    """A SQLite database URL relative to the working directory, as one to its file in `folder`."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{folder / uri.removeprefix('sqlite:///')}"
    return uri


def open_workspace(
    source: str | Path,
    name: str,
    preset: str | None = None,
    values: list[str] | None = None,
    commit: str | None = None,
    **named,
) -> Workspace:
    """A fresh checkout of `source`'s last commit (or `commit`) under runs_dir(), pointed at its
    DVC remote and cache, with the preset, the named overrides (`overrides`) and `values`
    (key=value) applied to its params.yaml. Bad params or an unreachable remote fail here, in one
    line, before any stage."""
    source = Path(source).resolve()
    applied = merged(overrides(**named), parse_assignments(values or []))
    remote = source_remote(source)
    check_remote(remote)
    keep = keep_runs()
    try:
        runs_dir().mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=runs_dir()))  # never two runs in one
    except OSError as error:
        raise StageFailed(
            f"{RUNS_DIR} ({runs_dir()}): no workspace can be made there ({error.strerror}); "
            "point it at a folder this worker can write; no stage ran"
        ) from None
    _IN_USE[path] = lock_folder(path)  # new: no other process can hold it
    prune(runs_dir(), keep)
    try:
        commit, left_out = copy_source(source, path, commit)
        point_at(path, remote)
        parsed = urlparse(remote.address)
        drop_stale_run_cache_temps(remote.cache, *([parsed.path] if parsed.scheme in ("", "file") else []))
        params = path / "params.yaml"
        changed = apply_preset(params, path / "presets" / f"{preset}.yaml") if preset else []
        if applied:
            changed += apply_values(params, applied)
        if (path / ".git").is_dir():
            # The run's params differ from the commit by design (recorded as the run's overrides),
            # so they do not make the registered version `git_dirty`.
            git(path, "update-index", "--skip-worktree", "params.yaml")
        env = {
            OVERRIDES: json.dumps({**({"preset": preset} if preset else {}), **applied}, sort_keys=True),
            # A run's workspace is thrown away, and its runner may be: training keeps its
            # checkpoints with its MLflow run, for a rerun elsewhere (a runner may say "0").
            SHARED_CHECKPOINTS: os.environ.get(SHARED_CHECKPOINTS, "1"),
            # The stages run the workspace's code, the code DVC hashes, not the code of the checkout
            # the environment was installed from (an editable install points there).
            "PYTHONPATH": os.pathsep.join(filter(None, [str(path), os.environ.get("PYTHONPATH")])),
        }
        uri = tracking_uri(source, path)
        if uri:
            env["MLFLOW_TRACKING_URI"] = uri
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # nothing half-made is left to be mistaken for a run
        os.close(_IN_USE.pop(path))
        raise
    return Workspace(path, commit, changed, applied, env, left_out)


def keep_runs() -> int:
    value = os.environ.get(KEEP_RUNS, str(DEFAULT_KEEP_RUNS))
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{KEEP_RUNS}={value!r}: expected how many workspaces to keep, a whole number from 1")
    return int(value)


def lock_folder(path: Path) -> int | None:
    """An open descriptor of `path` holding its exclusive lock; None if another process holds it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete the workspaces of `folder` beyond the newest `keep` that no process works in."""
    workspaces = sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    removed = []
    for path in workspaces[keep:]:
        if path in _IN_USE:
            continue
        descriptor = lock_folder(path)
        if descriptor is None:  # a run works in it
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(descriptor)
        removed.append(path)
    if removed:
        print(
            f"workspaces: deleted {len(removed)} older than the newest {keep} in {folder} ({KEEP_RUNS}; "
            "what they made is in the DVC remote and MLflow)",
            flush=True,
        )
    return removed


# What a checkout that is not a git repository (an image's copy of the project) holds beside its
# sources: outputs, state and environments, which a workspace must not start with.
NOT_SOURCES = {
    ".git",
    ".venv",
    "data",
    "models",
    "reports",
    "outputs",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    "sweeps.db",
    "gx",
    ".prefect",
    ".servers",
    "dvc-remote",
    "dvc.lock",
    ".dvc/cache",
    ".dvc/tmp",
}


def copy_source(source: Path, path: Path, commit: str | None = None) -> tuple[str, bool]:
    """`source`'s last commit, or `commit`, (a clone) into the empty folder `path`, with its
    remote's keys (`.dvc/config.local`, which git leaves out); where `source` is no git
    repository, a copy of its sources. Returns the commit ("unknown" without git) and whether
    changes were left out."""
    if (source / ".git").exists():
        if commit and commit != "unknown":
            try:
                git(source, "cat-file", "-e", f"{commit}^{{commit}}")
            except StageFailed:
                raise StageFailed(
                    f"{source}: no commit {commit[:10]} there; fetch it into this worker's "
                    "checkout (the run it works for was made from it)"
                ) from None
            left_out = False
        else:
            commit = git(source, "rev-parse", "HEAD")
            left_out = bool(git(source, "status", "--porcelain", "--untracked-files=no"))
        git(path, "clone", "--quiet", "--no-checkout", str(source), ".")
        git(path, "checkout", "--quiet", "--detach", commit)
    else:
        commit, left_out = "unknown", False
        runs = runs_dir().resolve()

        def left_out_names(folder: str, names: list[str]) -> list[str]:
            inside = Path(folder).relative_to(source)
            return [
                n
                for n in names
                if (inside / n).as_posix() in NOT_SOURCES or n == "__pycache__" or Path(folder, n) == runs
            ]  # the workspaces, where they are inside the checkout

        shutil.copytree(source, path, dirs_exist_ok=True, symlinks=True, ignore=left_out_names)
    if (source / ".dvc" / "config.local").is_file():
        shutil.copy2(source / ".dvc" / "config.local", path / ".dvc" / "config.local")
    return commit, left_out


def stage_command(stage: str) -> list[str]:
    """The process that runs one stage in a workspace (its folder as the working directory)."""
    return [sys.executable, "-m", "mlproject.workspace", stage]


def run_stages(stages, workspace, env: dict, log: Path, say) -> None:
    """Each stage in the workspace, restored from the DVC remote where any run made it already;
    the output to `log`. A failed stage raises StageFailed with its last words."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    with log.open("a", encoding="utf-8") as out:
        for stage in stages:
            started = time.monotonic()
            out.write(f"\n=== {stage}\n")
            out.flush()
            done = subprocess.run(stage_command(stage), cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                why = last_words(log.read_text(encoding="utf-8", errors="replace"))
                raise StageFailed(f"stage {stage} failed: {why}")
            say(f"{stage} {time.monotonic() - started:.1f} s")


def last_words(output: str) -> str:
    """The line of a stage's output that says why it failed: its own error line where it printed one."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line and not line.startswith("ERROR: failed to reproduce")]
    return (errors or lines or ["no output"])[-1][:400]


def repro_and_push(stage: str) -> int:
    """The stage restored from the remote when its command, deps and params match a run anywhere
    (run-cache), else run; then what it made, and its run-cache entry, go to the remote. DVC's own
    commands, in one process: `dvc repro --pull --single-item STAGE`, `dvc push --run-cache STAGE`."""
    from dvc.cli import main as dvc

    return dvc(["repro", "--pull", "--single-item", stage]) or dvc(["push", "--run-cache", stage])


if __name__ == "__main__":
    sys.exit(repro_and_push(sys.argv[1]))
