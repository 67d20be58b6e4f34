"""A workspace per run: its own checkout of the commit, its params for that run only, the DVC
remote that restores what any earlier run made, a remote that cannot be reached named in one line,
and the deployment command's bad input."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlproject.cli import STAGES
from mlproject.config import ConfigError, StageFailed
from mlproject.workspace import KEEP_RUNS, RUNNER_REMOTE, RUNS_DIR, open_workspace, stage_command
from tests.conftest import BIN, ROOT, git, run


@pytest.fixture
def runs(tmp_path, monkeypatch):
    folder = tmp_path / "runs"
    monkeypatch.setenv(RUNS_DIR, str(folder))
    return folder


def test_a_runs_params_apply_in_its_own_workspace_and_never_in_the_checkout(project, runs, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    original = (project / "params.yaml").read_text()
    first = open_workspace(
        project,
        "brave-otter",
        values=["train.rnn.units=8", "evaluate.temperatures=[0.3]", "mlflow.tracking_uri=sqlite:///mlflow.db"],
        epochs=1,
        prompts_file="prompts/other.txt",
    )
    second = open_workspace(project, "brave-otter")
    assert first.path.parent == runs and first.path != second.path  # never two runs in one workspace
    params = yaml.safe_load((first.path / "params.yaml").read_text())
    assert (
        params["train"]["epochs"],
        params["train"]["rnn"]["units"],
        params["generate"]["prompts_file"],
        params["evaluate"]["temperatures"],
    ) == (1, 8, "prompts/other.txt", [0.3])
    assert any("train.epochs" in line for line in first.changed)
    assert first.commit == git(project, "rev-parse", "HEAD").stdout.strip()
    assert (project / "params.yaml").read_text() == original and not (project / "dvc.lock").exists()
    # The run's params are recorded as its overrides, so the version it registers is not git_dirty.
    assert git(first.path, "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert '"epochs": 1' in first.env["MLPROJECT_RUN_OVERRIDES"]
    assert first.env["MLFLOW_TRACKING_URI"] == f"sqlite:///{project / 'mlflow.db'}"  # the checkout's store
    from dvc.repo import Repo

    with Repo(str(first.path)) as workspace_dvc:  # the checkout's DVC cache itself, not one nested in it
        assert workspace_dvc.cache.local_cache_dir == str(project / ".dvc" / "cache")
    # Its stages run its own code (the commit DVC hashes), not that of the installed checkout.
    ran = run(["python", "-c", "import mlproject.cli; print(mlproject.cli.__file__)"], runs, env=first.env)
    assert ran.stdout.strip() == str(first.path / "mlproject" / "cli.py")


def workspaces(runs) -> list:
    return list(runs.iterdir()) if runs.exists() else []


@pytest.mark.parametrize(
    "values, named, expected",
    [
        ([], {"epochs": 0}, "train.epochs"),
        (["train.epochs"], {}, "expected section.key=value"),
        (["train.rnn.layers=two"], {}, "train.rnn.layers"),
    ],
)
def test_bad_params_fail_in_one_line_and_leave_no_workspace(project, runs, values, named, expected):
    with pytest.raises(ConfigError, match=expected) as refused:
        open_workspace(project, "bad", values=values, **named)
    assert "\n" not in str(refused.value) and workspaces(runs) == []


@pytest.mark.slow
def test_a_second_workspace_of_the_same_commit_and_params_restores_every_stage_from_the_remote(project, runs):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def pipeline(workspace) -> str:
        printed = []
        for stage in STAGES:
            result = subprocess.run(
                stage_command(stage), cwd=workspace.path, env={**env, **workspace.env}, text=True, capture_output=True
            )
            assert result.returncode == 0, f"{stage}: {result.stdout[-2000:]}{result.stderr[-2000:]}"
            printed.append(result.stdout)
        return "".join(printed)

    def made(workspace) -> dict[str, str]:
        files = [workspace.path / "reports" / "metrics.json", *sorted((workspace.path / "models" / "model").iterdir())]
        return {str(f.relative_to(workspace.path)): hashlib.md5(f.read_bytes()).hexdigest() for f in files}

    first = open_workspace(project, "first")  # the whole pipeline at once, then all of it to the remote
    ran = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=first.path, env={**env, **first.env}, text=True, capture_output=True
    )
    assert ran.returncode == 0 and "Running stage 'train'" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-2000:]
    run(["dvc", "push", "--run-cache"], first.path)
    figures = made(first)
    shutil.rmtree(first.path)  # a workspace can vanish: everything a later run needs is in the remote,
    shutil.rmtree(project / ".dvc" / "cache")  # not in this machine's cache
    second = open_workspace(project, "second")
    printed = pipeline(second)
    assert "Running stage" not in printed
    assert all(f"Stage '{stage}' is cached - skipping run" in printed for stage in STAGES), printed[-3000:]
    assert made(second) == figures
    assert not (project / "dvc.lock").exists() and not (project / "models").exists()
    # The registered model's files went beside the MLflow store, not into the deleted workspace.
    assert len(list((project / "mlruns").rglob("MLmodel"))) == 1


def test_a_runs_folder_keeps_its_newest_workspaces_and_those_in_use_and_refuses_bad_settings_in_one_line(
    project, runs, monkeypatch
):
    monkeypatch.setenv(KEEP_RUNS, "2")
    script = (
        "import sys, time; from mlproject.workspace import open_workspace; "
        "print(open_workspace(sys.argv[1], sys.argv[2]).path, flush=True); time.sleep(float(sys.argv[3]))"
    )
    busy = subprocess.Popen(
        [sys.executable, "-c", script, str(project), "busy", "600"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    try:
        in_use = Path(busy.stdout.readline().strip())
        ended = [
            Path(run(["python", "-c", script, str(project), f"ended-{i}", "0"], project).stdout.splitlines()[-1])
            for i in range(3)
        ]
        newest = open_workspace(project, "newest")
        assert set(runs.iterdir()) == {newest.path, ended[-1], in_use}  # the newest two, and the one in use
    finally:
        busy.kill()
        busy.wait()
    blocked = runs / "a-file"  # a runs folder under a file: not writable, even by root
    blocked.write_text("")
    monkeypatch.setenv(RUNS_DIR, str(blocked / "runs"))
    with pytest.raises(StageFailed, match=f"^{RUNS_DIR} \\({blocked}/runs\\): no workspace can be made there"):
        open_workspace(project, "refused")
    monkeypatch.setenv(KEEP_RUNS, "none")
    with pytest.raises(ConfigError, match=f"^{KEEP_RUNS}='none': expected how many workspaces to keep"):
        open_workspace(project, "refused")


def test_a_checkout_without_git_is_copied_without_its_outputs(project, runs):
    (project / "models").mkdir()
    (project / "models" / "stale.txt").write_text("an output of an earlier run")
    shutil.rmtree(project / ".git")  # as in the images, which leave .git out and tell DVC so
    run(["dvc", "config", "core.no_scm", "true"], project)
    workspace = open_workspace(project, "image", epochs=1)
    assert workspace.commit == "unknown"
    assert (workspace.path / "mlproject" / "data" / "tokens.py").is_file()  # sources, at any depth
    assert not (workspace.path / "models").exists()
    assert yaml.safe_load((workspace.path / "params.yaml").read_text())["train"]["epochs"] == 1


def test_a_runner_pointed_at_another_remote_keeps_what_it_makes_there(project, runs, tmp_path, monkeypatch):
    team_remote = tmp_path / "team-remote"
    monkeypatch.setenv(RUNNER_REMOTE, str(team_remote))
    workspace = open_workspace(project, "pointed")
    ran = subprocess.run(
        stage_command("scrape"),
        cwd=workspace.path,
        text=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **workspace.env},
    )
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert (team_remote / "runs").is_dir() and any((team_remote / "files").rglob("*"))  # its run-cache and data
    assert not (project / "dvc-remote").exists()  # the checkout's own remote is left alone
    monkeypatch.setenv(RUNNER_REMOTE, str(tmp_path / "no-such-folder" / "remote"))
    with pytest.raises(StageFailed, match=f"^DVC remote {RUNNER_REMOTE} \\({tmp_path}/no-such-folder/remote\\) cannot"):
        open_workspace(project, "unreachable")


@pytest.fixture
def sshd(tmp_path):
    """Debian's OpenSSH server on a free port of localhost, letting this user in with a key of
    this test's own (host key, keys and config in a folder of the test's); the address, user and key."""
    import getpass

    folder = tmp_path / "sshd"
    folder.mkdir()
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / key)], check=True)
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = closed_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation folder
    server = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(folder / "sshd_config")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "sshd did not listen within 20 s"
                time.sleep(0.1)
        yield f"127.0.0.1:{port}", getpass.getuser(), folder / "client_key"
    finally:
        server.kill()
        server.wait()


@pytest.mark.slow
def test_an_ssh_remote_carries_a_stage_to_another_workspace(project, runs, tmp_path, sshd, monkeypatch):
    """The team's second remote: SFTP to a real sshd. A stage run in one workspace is restored in
    another of the same commit after the first workspace and this machine's cache are gone; a
    runner pointed at it by MLPROJECT_DVC_REMOTE logs in with its user's own key."""
    address, user, key = sshd
    url = f"ssh://{address}{tmp_path / 'ssh-remote'}"
    for option, value in (("url", url), ("user", user), ("keyfile", str(key))):
        run(["dvc", "remote", "modify", "--local", "local", option, value], project)
    home = tmp_path / "home"  # the runner's user, whose ~/.ssh holds the key
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(key, home / ".ssh" / "id_ed25519")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home)}

    def scrape(workspace) -> str:
        ran = subprocess.run(
            stage_command("scrape"), cwd=workspace.path, env={**env, **workspace.env}, text=True, capture_output=True
        )
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        return ran.stdout

    first = open_workspace(project, "over-ssh")
    assert "Running stage 'scrape'" in scrape(first)
    assert (tmp_path / "ssh-remote" / "runs").is_dir() and any((tmp_path / "ssh-remote" / "files").rglob("*"))
    shutil.rmtree(first.path)
    shutil.rmtree(project / ".dvc" / "cache")
    assert "Stage 'scrape' is cached - skipping run" in scrape(open_workspace(project, "over-ssh"))
    assert not (project / "dvc-remote").exists()

    monkeypatch.setenv(RUNNER_REMOTE, f"ssh://{user}@{address}{tmp_path / 'runner-remote'}")
    scrape(open_workspace(project, "runner-over-ssh"))
    assert (tmp_path / "runner-remote" / "runs").is_dir()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "url", ["ssh://127.0.0.1:{port}/dvc", "http://127.0.0.1:{port}/dvc", "{tmp}/no-such-folder/dvc-remote"]
)
def test_a_remote_that_cannot_be_reached_fails_in_one_line_before_any_stage(project, runs, tmp_path, url):
    url = url.format(port=closed_port(), tmp=tmp_path)
    run(["dvc", "remote", "modify", "--local", "local", "url", url], project)
    started = time.monotonic()
    with pytest.raises(StageFailed) as refused:
        open_workspace(project, "unreachable")
    assert time.monotonic() - started < 30
    message = str(refused.value)
    assert message.startswith(f"DVC remote 'local' ({url}) cannot be reached") and "\n" not in message
    assert workspaces(runs) == []


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"PREFECT_API_URL": "http://127.0.0.1:{port}/api"},
            "no Prefect server answers at http://127.0.0.1:{port}/api",
        ),
        ({"PREFECT_API_URL": ""}, "PREFECT_API_URL is not set"),
    ],
)
def test_deployments_refuse_an_unreachable_server_in_one_line_within_seconds(env, expected, tmp_path):
    port = closed_port()
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "flows.deployments"],
        cwd=ROOT,
        text=True,
        capture_output=True,
        env={**os.environ, **{k: v.format(port=port) for k, v in env.items()}, "PREFECT_HOME": str(tmp_path)},
    )
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert expected.format(port=port) in result.stderr


def test_deployments_refuse_a_folder_that_is_not_a_project(tmp_path):
    result = run(["python", "-m", "flows.deployments", "--repo", str(tmp_path)], ROOT, check=False)
    assert result.returncode != 0 and f"--repo {tmp_path}: no dvc.yaml there" in result.stderr


def test_a_run_cache_entry_hidden_by_a_killed_dvcs_temp_file_is_found_again(tmp_path):
    """DVC reads only the newest file of a run's run-cache folder: a temp file a killed DVC left
    there hides the run. This fails when DVC stops doing so (then the workaround can go)."""
    from mlproject.workspace import drop_stale_run_cache_temps

    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    run(["dvc", "init", "-q"], repo)
    stamp = "import pathlib, time; pathlib.Path('out.txt').write_text(repr(time.time()))"
    (repo / "in.txt").write_text("a dep: a stage without one is never in the run-cache")
    stage = {"cmd": f'python -c "{stamp}"', "deps": ["in.txt"], "outs": ["out.txt"]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"make": stage}}))

    def repro_afresh() -> str:  # as a new workspace: no lock, no output; restored or run
        for made in ("dvc.lock", "out.txt"):
            (repo / made).unlink(missing_ok=True)
        run(["dvc", "repro", "-q"], repo)
        return (repo / "out.txt").read_text()

    first = repro_afresh()
    assert repro_afresh() == first  # restored from the run-cache
    [entry] = (repo / ".dvc" / "cache").glob("runs/??/*/*")
    folder = entry.parent  # the run's: one file per time it ran
    temp = folder / ".killed-mid-write.tmp"
    temp.write_text("half an entr")  # newer than the entry
    second = repro_afresh()
    assert second != first, "DVC found the run past a newer temp file: drop_stale_run_cache_temps can go"

    temp.write_text("half an entr")
    hour_ago = time.time() - 3600
    for made in folder.glob("[!.]*"):
        os.utime(made, (hour_ago, hour_ago))
    os.utime(temp, (hour_ago + 60, hour_ago + 60))  # the newest, and long stale
    assert drop_stale_run_cache_temps(repo / ".dvc" / "cache") == [temp]
    assert repro_afresh() in (first, second)  # restored, not run again
