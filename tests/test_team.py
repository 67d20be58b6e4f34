"""The team setup for real: PostgreSQL, an MLflow server and a Prefect server on it, a worker of
the process pool; the deployments created with the documented command and run from the Prefect
CLI; every outcome read back through Prefect's client and MlflowClient."""

from __future__ import annotations

import contextvars
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from mlflow import MlflowClient
from prefect.settings import PREFECT_API_URL, temporary_settings

from infra.servers import Postgres, Servers, free_port
from mlproject.cli import STAGES
from mlproject.fileio import copy_paths, read_jsonl
from mlproject.generation import read_prompts
from tasks.stages import RUNNERS
from tests.conftest import BIN, ROOT, git, make_tiny_project

FLOW_CODE = ["flows", "tasks", "infra", "presets"]
# Prefect's default (V2) UI starts Amplitude, which asks for its remote config even with the server's analytics off.
PREFECT_UI_OUTSIDE_HOSTS = {"sr-client-cfg.amplitude.com"}


def cli(args: list[str], cwd: Path, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        cwd=cwd,
        text=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **env},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def team():
    """The servers and two workers (pools cpu and gpu) serving a tiny project (with the flows' code,
    as a clone has it); the GPU pool's runs clone another checkout of it, which shares only the DVC
    remote (as a checkout on another machine would) and the servers."""
    # Not below pytest's private tmp folder: PostgreSQL's own user must be able to walk into it.
    root = Path(tempfile.mkdtemp(prefix="mlproject-team-"))
    root.chmod(0o755)
    project = make_tiny_project(root / "project")
    copy_paths(FLOW_CODE, ROOT, project)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "flows")
    gpu_checkout = root / "gpu-checkout"
    git(root, "clone", "-q", str(project), str(gpu_checkout))
    git(gpu_checkout, "config", "user.email", "t@example.org")
    cli(["dvc", "remote", "modify", "--local", "local", "url", str(project / "dvc-remote")], gpu_checkout, {})
    servers = Servers(root / "servers", free_port(), free_port(), free_port())
    try:
        servers.start(worker_dir=project)
        env = servers.client_environment()
        # Prefect reads its settings once per process: this module's clients and flows need them set.
        with (
            pytest.MonkeyPatch.context() as patch,
            temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}),
        ):
            for key, value in env.items():
                patch.setenv(key, value)
            yield servers, project, env, gpu_checkout
    finally:
        servers.stop()
        shutil.rmtree(root, ignore_errors=True)


def wait_for_flow_run(flow_run_id, seconds: float = 300):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state.is_final():
                return run
            time.sleep(2)
    raise AssertionError(f"flow run {flow_run_id} not finished within {seconds} s: {run.state.name}")


def run_training(project: Path, env: dict[str, str], *values: str) -> str:
    """`prefect deployment run training/weekly` with `values` (section.key=value), as a person types
    it; the flow run's id."""
    wanted = ["--param", f"values={json.dumps(list(values))}"] if values else []
    return triggered_run_id(cli(["prefect", "deployment", "run", "training/weekly", *wanted], project, env).stdout)


def runs_of(deployment: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))


def gpu_stages_of(flow_run_id) -> list:
    """The flow runs of `training-stages` that a training run started (even once its deployment is gone)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=["gpu"])))
        return [r for r in runs if (r.parameters.get("lineage") or {}).get("MLPROJECT_FLOW_RUN_ID") == str(flow_run_id)]


def task_runs_and_artifacts(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        # A subflow's tasks (the generation shards) belong to the subflow run.
        children = [
            r.id
            for r in client.read_flow_runs()
            if r.parent_task_run_id and client.read_task_run(r.parent_task_run_id).flow_run_id == flow_run_id
        ]
        runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id, *children]))
        return (
            {t.name: t.state.name for t in client.read_task_runs(flow_run_filter=runs)},
            {a.key for a in client.read_artifacts(flow_run_filter=runs)},
        )


def tasks_of(flow_run_id) -> dict[str, str]:
    """The state of each task run of this flow run itself (not of its subflows)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {t.name: t.state.name for t in runs}


def triggered_run_id(output: str) -> str:
    """The flow run id that `prefect deployment run` prints ("UUID: ...")."""
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def test_the_one_command_starts_every_server_and_kill_stops_them_all():
    import psutil

    root = Path(tempfile.mkdtemp(prefix="mlproject-servers-"))
    root.chmod(0o755)  # PostgreSQL's own user walks into it
    ports = [free_port(), free_port(), free_port()]
    command = [
        str(BIN / "python"),
        "-m",
        "infra.servers",
        "--state",
        str(root / "state"),
        *(f"--{name}-port={port}" for name, port in zip(("postgres", "mlflow", "prefect"), ports)),
    ]
    servers = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    started = []
    try:
        printed = []
        for line in servers.stdout:
            printed.append(line)
            if line.startswith("Prefect UI:"):
                break
        assert any(line.startswith("Ready") for line in printed), "".join(printed)
        for url in (f"http://127.0.0.1:{ports[1]}/health", f"http://127.0.0.1:{ports[2]}/api/health"):
            assert urllib.request.urlopen(url, timeout=5).status == 200
        socket.create_connection(("127.0.0.1", ports[0]), timeout=5).close()  # PostgreSQL (pg_ctl's daemon)
        started = psutil.Process(servers.pid).children(recursive=True)

        def command_line(process) -> str:  # a short-lived grandchild may have ended meanwhile
            try:
                return " ".join(process.cmdline())
            except (psutil.ZombieProcess, psutil.NoSuchProcess):
                return ""

        commands = " ".join(command_line(p) for p in started)
        assert all(name in commands for name in ("mlflow server", "prefect server", "prefect worker")), commands
        servers.send_signal(signal.SIGTERM)
        assert servers.wait(timeout=60) == 0
        gone, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, [" ".join(p.cmdline()) for p in alive]
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ports[0]), timeout=5)
    finally:  # what a failure left running
        if servers.poll() is None:
            servers.kill()
        for process in started:
            if process.is_running():
                process.kill()
        Postgres(root / "state" / "postgres", ports[0]).stop()
        shutil.rmtree(root, ignore_errors=True)


def test_two_deployed_training_runs_at_once_one_training_on_the_gpu_pool_end_with_the_better_champion(team):
    servers, project, env, gpu_checkout = team
    # Runs that stop sending heartbeats are marked Crashed after 60 s (90 by default): sooner here.
    deployed = cli(
        [
            "python",
            "-m",
            "flows.deployments",
            "--repo",
            str(project),
            "--gpu-repo",
            str(gpu_checkout),
            "--unresponsive-after",
            "60",
        ],
        ROOT,
        env,
    )
    assert "deployed training/weekly" in deployed.stdout and "deployed batch-generation/daily" in deployed.stdout
    assert "up to 2 runs at once" in deployed.stdout and "deployed training-stages/gpu: pool gpu" in deployed.stdout
    assert "deployed sweep/on-demand: no schedule" in deployed.stdout

    # Two people train two settings at once from the Prefect CLI, each run in its own workspace;
    # the second sends train and evaluate to the GPU pool (train.runner: gpu).
    triggered = [
        cli(["prefect", "deployment", "run", "training/weekly", *extra], project, env)
        for extra in ([], ["--param", 'values=["train.epochs=1", "train.runner=gpu"]'])
    ]
    both = [wait_for_flow_run(triggered_run_id(t.stdout), seconds=480) for t in triggered]
    assert all(run.state.is_completed() for run in both), [(r.name, r.state.message) for r in both]
    (start_a, end_a), (start_b, end_b) = ((r.start_time, r.end_time) for r in both)
    assert start_a < end_b and start_b < end_a, "the two runs did not overlap"
    # The first ran every stage on the cpu worker. The second ran its data stages there, train and
    # evaluate in a flow run on the gpu worker (its data restored from the remote), and got them
    # back through the remote for register, promote and generate.
    cpu_run, gpu_run = (tasks_of(r.id) for r in both)
    assert (cpu_run["train"], cpu_run["evaluate"]) == ("Completed", "Completed"), cpu_run
    assert (gpu_run["train"], gpu_run["evaluate"], gpu_run["register"]) == ("Restored", "Restored", "Completed"), (
        gpu_run
    )
    [on_gpu] = runs_of("gpu")
    assert on_gpu.work_pool_name == "gpu" and on_gpu.state.is_completed(), on_gpu.state.message
    assert on_gpu.parameters["commit"] == git(project, "rev-parse", "HEAD").stdout.strip()
    stages_there = tasks_of(on_gpu.id)
    assert (stages_there["train"], stages_there["evaluate"]) == ("Completed", "Completed"), stages_there
    assert {stages_there[stage] for stage in ("scrape", "validate", "tokenize")} == {"Skipped"}, stages_there
    assert not {"register", "promote", "generate"} & set(stages_there)
    # Both trained and promoted; whichever promoted first, the better is champion, the other challenger.
    mlflow = MlflowClient(tracking_uri=servers.mlflow_url, registry_uri=servers.mlflow_url)
    versions = {v.tags["prefect_flow_run_id"]: v for v in mlflow.search_model_versions("name = 'text-generator'")}
    assert set(versions) == {str(r.id) for r in both}
    better, worse = sorted(versions.values(), key=lambda v: float(v.tags["bits_per_byte"]))
    assert float(better.tags["bits_per_byte"]) < float(worse.tags["bits_per_byte"])
    assert mlflow.get_model_version_by_alias("text-generator", "champion").version == better.version
    assert mlflow.get_model_version_by_alias("text-generator", "challenger").version == worse.version
    trained = better.tags["prefect_flow_run_id"]

    # The schedule (every minute now) fires a run of the committed params: all restored, none rerun.
    cli(
        [
            "python",
            "-m",
            "flows.deployments",
            "--repo",
            str(project),
            "--training-cron",
            "* * * * *",
            "--unresponsive-after",
            "60",
        ],
        ROOT,
        env,
    )
    deadline = time.monotonic() + 200
    while not any(r.auto_scheduled and r.state.is_completed() for r in runs_of("weekly")):
        assert time.monotonic() < deadline, [(r.name, r.state.name) for r in runs_of("weekly")]
        time.sleep(3)
    cli(["prefect", "deployment", "schedule", "clear", "training/weekly", "--accept-yes"], project, env)
    [scheduled, *_] = [r for r in runs_of("weekly") if r.auto_scheduled and r.state.is_completed()]
    outcomes = {r.id: task_runs_and_artifacts(r.id) for r in [*both, scheduled]}
    assert {tasks_of(scheduled.id)[stage] for stage in STAGES} == {"Skipped"}, tasks_of(scheduled.id)
    assert all(
        {"run-params", "scrape-report", "validation-metrics", "promotion", "mlflow"} <= artifacts
        for _, artifacts in outcomes.values()
    )

    [training_run] = mlflow.search_runs(
        mlflow.get_experiment_by_name("text-generation").experiment_id, f"tags.prefect_flow_run_id = '{trained}'"
    )
    assert training_run.data.tags["prefect_flow_run_url"].endswith(f"/flow-run/{trained}")
    assert "validation_bits_per_byte" in training_run.data.metrics
    assert better.run_id == training_run.info.run_id
    # Each run worked in a workspace of its own and kept what it made in the DVC remote and MLflow:
    # the worker's checkout is as the commit left it, and the run's dvc.lock is with its MLflow run.
    assert better.tags["git_dirty"] == "false"
    assert not (project / "dvc.lock").exists() and not (project / "models").exists()
    assert git(project, "status", "--porcelain", "--untracked-files=no").stdout == ""
    assert len(list((servers.state_dir / "runs").iterdir())) >= 3
    assert (project / "dvc-remote" / "runs").is_dir()  # DVC's run-cache, for the next workspace
    assert [a.path for a in mlflow.list_artifacts(training_run.info.run_id, f"flow-runs/{trained}")] == [
        f"flow-runs/{trained}/dvc.lock"
    ]


def test_a_deployed_sweep_trains_its_trials_on_the_gpu_pool_its_study_in_postgres_its_best_through_the_gate(team):
    import optuna
    import yaml

    servers, project, env, _ = team
    # Both trials send train and evaluate to the GPU pool's worker, as a training run would.
    vary = {"train.rnn.units": [8, 16], "train.runner": ["gpu"]}
    sweep = {"search": "grid", "parallelism": 2, "pruner": "none", "params": vary}
    started = {r.id for r in runs_of("gpu")}
    (project / "sweeps").mkdir(exist_ok=True)
    (project / "sweeps" / "tiny.yaml").write_text(yaml.safe_dump(sweep))
    git(project, "add", "sweeps")
    git(project, "commit", "-qm", "a sweep")
    cli(["python", "-m", "flows.deployments", "--repo", str(project), "--unresponsive-after", "60"], ROOT, env)
    triggered = cli(["prefect", "deployment", "run", "sweep/on-demand", "--param", "name=tiny"], project, env)
    run = wait_for_flow_run(triggered_run_id(triggered.stdout), seconds=600)
    assert run.state.is_completed(), run.state.message
    tasks, artifacts = task_runs_and_artifacts(run.id)
    assert {name: state for name, state in tasks.items() if name.startswith("trial ")} == {
        "trial 0": "Completed",
        "trial 1": "Completed",
    }
    assert "sweep-tiny" in artifacts
    assert {tasks[f"{stage} (trial {n})"] for stage in ("train", "evaluate") for n in (0, 1)} == {"Restored"}, tasks
    on_gpu = [r for r in runs_of("gpu") if r.id not in started]
    assert len(on_gpu) == 2 and all(r.state.is_completed() for r in on_gpu), [r.state for r in on_gpu]
    assert sorted(r.parameters["values"][0] for r in on_gpu) == ["train.rnn.units=16", "train.rnn.units=8"]

    # The study is in the team's PostgreSQL (its own database), not in a file on the worker.
    storage = env["MLPROJECT_SWEEP_STORAGE"]
    assert storage.endswith("/optuna")
    [name] = [s.study_name for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith("tiny-")]
    study = optuna.load_study(study_name=name, storage=storage)
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.user_attrs["values"]["train.rnn.units"] for t in trials) == [8, 16]
    assert not list((servers.state_dir / "runs").glob("sweeps.db"))

    # One parent run on the MLflow server, the trials its children; the best registered, and the
    # promotion decided as for any run.
    mlflow = MlflowClient(tracking_uri=servers.mlflow_url, registry_uri=servers.mlflow_url)
    experiment = mlflow.get_experiment_by_name("text-generation").experiment_id
    [parent] = mlflow.search_runs([experiment], "tags.sweep = 'tiny'")
    children = mlflow.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.run_id for c in children) == sorted(t.user_attrs["mlflow_run_id"] for t in trials)
    best = min(trials, key=lambda t: t.value)
    [found] = mlflow.search_model_versions(f"run_id = '{best.user_attrs['mlflow_run_id']}'")
    version = mlflow.get_model_version("text-generator", found.version)
    assert {"champion", "challenger"} & set(version.aliases), version.aliases  # as the gate decided


def flow_run_log(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    lines = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200, offset=len(lines)
            )
            lines += [log.message for log in page]
            if len(page) < 200:
                return "\n".join(lines)


def test_a_gpu_worker_killed_mid_training_is_replaced_and_the_rerun_resumes_from_the_last_checkpoint(team):
    """A GPU runner lost mid-training (a preempted spot node, here a SIGKILLed worker and all its
    processes): the automation marks its flow run Crashed once its heartbeats stop, the training run
    runs its GPU stages again, and a worker elsewhere (another folder and runs folder) resumes from
    the checkpoint the lost one kept with its MLflow run."""
    import psutil

    servers, project, env, _ = team
    if not runs_of("gpu"):
        pytest.fail("needs the deployments (run the whole module)")
    mlflow = MlflowClient(tracking_uri=servers.mlflow_url)
    experiment = mlflow.get_experiment_by_name("text-generation").experiment_id
    earlier = {r.info.run_id for r in mlflow.search_runs([experiment])}
    triggered = cli(
        [
            "prefect",
            "deployment",
            "run",
            "training/weekly",
            "--param",
            'values=["train.epochs=3", "train.patience=0", "train.max_steps_per_epoch=100", "train.runner=gpu"]',
        ],
        project,
        env,
    )
    parent = triggered_run_id(triggered.stdout)

    deadline = time.monotonic() + 300
    while True:  # until the lost runner has kept its first epoch's checkpoint
        training = [
            r for r in mlflow.search_runs([experiment], "attributes.status = 'RUNNING'") if r.info.run_id not in earlier
        ]
        if training and "checkpoints/slot-1/state.json" in {
            a.path for a in mlflow.list_artifacts(training[0].info.run_id, "checkpoints/slot-1")
        }:
            break
        assert time.monotonic() < deadline, [(r.name, r.state.name) for r in runs_of("gpu")]
        time.sleep(0.5)
    lost = servers.processes["gpu-worker"]
    for process in [psutil.Process(lost.pid), *psutil.Process(lost.pid).children(recursive=True)]:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    lost.wait()
    (servers.state_dir / "gpu-worker-2").mkdir()
    servers.start_worker("gpu", servers.state_dir / "gpu-worker-2", "runs-gpu-2")

    run = wait_for_flow_run(parent, seconds=600)
    assert run.state.is_completed(), run.state.message
    crashed, rerun = sorted(gpu_stages_of(parent), key=lambda r: r.start_time)
    assert crashed.state.is_crashed() and "no heartbeat for" in crashed.state.message, crashed.state
    assert rerun.state.is_completed(), rerun.state.message
    log = flow_run_log(rerun.id)
    assert str(servers.state_dir / "runs-gpu-2") in log  # the replacement's own workspace
    resumed = re.search(r"fetched the checkpoint of epoch (\d) from MLflow run (\w+)", log)
    # The kill lands after epoch 1; on a fast machine the killed run may have finished all 3 epochs
    # (and kept the last one) before it: nothing is retrained either way.
    assert resumed and int(resumed.group(1)) in (1, 2, 3) and resumed.group(2) == training[0].info.run_id, log[-3000:]
    assert f"resuming from the checkpoint of epoch {resumed.group(1)}" in log
    assert "Epoch 1/3" not in log
    assert mlflow.get_run(training[0].info.run_id).info.status == "FINISHED"
    assert tasks_of(parent)["train"] == "Restored"


def test_a_run_that_wants_the_gpu_pool_when_none_is_deployed_fails_in_one_line_before_training(team):
    _, project, env, _ = team
    if not runs_of("gpu"):
        pytest.fail("needs the deployments (run the whole module)")
    cli(["prefect", "deployment", "delete", "training-stages/gpu"], project, env)
    run = wait_for_flow_run(run_training(project, env, "train.runner=gpu"))
    assert run.state.is_failed()
    message = run.state.message
    assert "train.runner = gpu: no worker serves the deployment training-stages/gpu" in message and "\n" not in message
    assert "scrape" not in tasks_of(run.id)


class WebhookReceiver(http.server.ThreadingHTTPServer):
    """A chat tool's incoming webhook on localhost: the JSON bodies posted to it, in order."""

    def __init__(self):
        self.received: list[dict] = []
        received = self.received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):  # quiet
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/team"


def test_a_deployed_run_that_fails_in_a_stage_posts_its_flow_stage_and_reason_to_the_team_webhook(team):
    _, project, env, _ = team
    receiver = WebhookReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        deployed = cli(
            ["python", "-m", "flows.deployments", "--repo", str(project), "--failure-webhook", receiver.url], ROOT, env
        )
        # The URL's path is a credential: it is not printed.
        assert f"a failed or crashed run is posted to {receiver.url.removesuffix('hooks/team')}..." in deployed.stdout
        assert "hooks/team" not in deployed.stdout
        # No validation documents: the tokenize stage fails, in one line of its own.
        run = wait_for_flow_run(run_training(project, env, "tokenize.validation_fraction=0"))
        assert run.state.is_failed(), run.state
        deadline = time.monotonic() + 120
        while not receiver.received:
            assert time.monotonic() < deadline, "no message reached the webhook"
            time.sleep(1)
        [message] = receiver.received
        text = message["text"]
        assert text.startswith(f"training/weekly: run {run.name} Failed: "), text
        assert (
            "stage tokenize failed: mlproject tokenize: error: tokenize.validation_fraction = 0.0: " in text
            and "expected both sides non-empty" in text
            and "\n" not in text
        ), text
    finally:
        receiver.shutdown()
        receiver.server_close()
    # Bad input: a webhook that is not a URL is refused in one line, before the server is asked.
    refused = cli(["python", "-m", "flows.deployments", "--failure-webhook", "hooks.org"], ROOT, env, check=False)
    assert refused.returncode == 2
    assert "--failure-webhook: 'hooks.org': expected an http:// or https:// URL with a host" in refused.stderr


def approval_run_of(flow_run_id, paused: bool, seconds: float = 300):
    """The `approval` flow run a training run waits on (once paused, where `paused`); the training
    run itself stays Running meanwhile."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            for run in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["approval"]))):
                parent = client.read_task_run(run.parent_task_run_id) if run.parent_task_run_id else None
                mine = parent is not None and str(parent.flow_run_id) == str(flow_run_id)
                if mine and (run.state.name == "Paused" or not paused):
                    if paused:
                        assert client.read_flow_run(flow_run_id).state.name == "Running"
                    return run
            training = client.read_flow_run(flow_run_id)
            assert not paused or not training.state.is_final(), (
                f"{training.name} ended {training.state.name}: {training.state.message}"
            )
            assert time.monotonic() < deadline, f"no paused approval run of {training.name} within {seconds} s"
            time.sleep(2)


def answer_in_the_prefect_ui(browser_page, env: dict, run, approve: bool, screenshot: Path) -> None:
    """What a person does: open the paused run's page, press Resume, read the form, tick approve
    or not, and submit."""
    from playwright.sync_api import expect

    page = browser_page.page
    page.goto(f"{env['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{run.id}")
    page.get_by_role("button", name="Resume", exact=True).click()
    form = page.get_by_role("dialog")
    expect(form.get_by_role("heading", name=re.compile("awaits your approval"))).to_be_visible()
    expect(form.get_by_role("columnheader", name="candidate", exact=True)).to_be_visible()  # the samples
    expect(form).to_contain_text("bits per byte")
    if approve:
        form.get_by_role("switch").click()
    browser_page.screenshot(screenshot)
    form.get_by_role("button", name="Submit", exact=True).click()
    expect(form).to_be_hidden()


def test_with_approval_required_a_deployed_run_waits_in_the_prefect_ui_until_a_person_answers(
    team, tmp_path, browser_page
):
    servers, project, env, _ = team
    if not runs_of("weekly"):
        pytest.fail("needs the deployments (run the whole module)")
    name = "reviewed-generator"
    mlflow = MlflowClient(tracking_uri=servers.mlflow_url, registry_uri=servers.mlflow_url)

    def trigger(*values: str) -> str:
        return run_training(project, env, "promote.approval=required", f"mlflow.model_name={name}", *values)

    def approval_of(version: str) -> str:
        return mlflow.get_model_version(name, version).tags["promotion.approval"]

    # The first version (one training step) awaits; a person approves it: champion, then batch generation.
    training = trigger("train.epochs=1", "train.max_steps_per_epoch=1")
    paused = approval_run_of(training, paused=True)
    assert paused.name == "approval of version 1"
    answer_in_the_prefect_ui(browser_page, env, paused, True, tmp_path / "approve.png")
    run = wait_for_flow_run(training)
    assert run.state.is_completed(), run.state.message
    assert (tasks_of(paused.id)["approve 1"], tasks_of(run.id)["generate"]) == ("Completed", "Completed")
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
    assert approval_of("1").startswith(f"approved by a person in the Prefect UI (training run {run.name}), at ")

    # A far better one awaits too; the person leaves approve unticked: it stays challenger.
    training = trigger()
    paused = approval_run_of(training, paused=True)
    assert "better beyond doubt" in mlflow.get_model_version(name, "2").tags["promotion.reason"]
    answer_in_the_prefect_ui(browser_page, env, paused, False, tmp_path / "reject.png")
    run = wait_for_flow_run(training)
    assert run.state.is_completed() and tasks_of(paused.id)["reject 2"] == "Completed", run.state.message
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
    assert mlflow.get_model_version_by_alias(name, "challenger").version == "2"
    assert approval_of("2").startswith("rejected by a person in the Prefect UI")

    # Nobody answers within promote.approval_timeout: challenger, and the run goes on.
    run = wait_for_flow_run(trigger("train.epochs=1", "promote.approval_timeout=20s"))
    answered = approval_run_of(run.id, paused=False)
    assert run.state.is_completed() and tasks_of(answered.id)["reject 3"] == "Completed", run.state.message
    assert mlflow.get_model_version_by_alias(name, "champion").version == "1"
    assert mlflow.get_model_version_by_alias(name, "challenger").version == "3"
    assert approval_of("3").startswith("no answer before its deadline")


def test_the_prefect_ui_lists_each_completed_training_run(team, tmp_path, browser_page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    _, _, env, *_ = team
    completed = [r for r in runs_of("weekly") if r.state.is_completed()]
    if not completed:
        pytest.fail("needs a completed run of the deployed training (run the whole module)")
    page = browser_page.page
    # The address `make servers` prints: it opens the default UI, where a person clicks Runs.
    page.goto(env["PREFECT_API_URL"].removesuffix("/api"))
    page.get_by_role("link", name="Runs", exact=True).click()
    for _ in range(3):  # the page fetches the list once: a request lost on a busy machine lists none
        try:
            page.get_by_role("link", name=completed[0].name, exact=True).wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.reload()
    for run in completed:
        link = page.get_by_role("link", name=run.name, exact=True)
        expect(link).to_have_attribute("href", re.compile(f"/flow-run/{run.id}$"))
        expect(page.get_by_role("listitem").filter(has=link).first).to_contain_text("Completed")  # its card
    browser_page.screenshot(tmp_path / "prefect-runs.png")

    # Which worker ran each stage: the run that sent train and evaluate to the GPU pool shows them
    # `Restored` beside the task `training-stages/gpu`, and its subflow run on work pool `gpu`.
    [sent] = [r for r in completed if r.parameters.get("values") == ["train.epochs=1", "train.runner=gpu"]]
    page.goto(f"{env['PREFECT_API_URL'].removesuffix('/api')}/runs/flow-run/{sent.id}")
    expect(page.get_by_text("Work Pool").first).to_be_visible()
    page.get_by_text("Task Runs", exact=True).first.click()
    for task_run in ("tokenize", "training-stages/gpu", "train", "evaluate", "register"):
        expect(page.get_by_text(task_run, exact=True).first).to_be_visible()
    expect(page.get_by_text("Restored", exact=True)).to_have_count(2)
    expect(page.locator('a[href$="/work-pools/work-pool/cpu"]')).to_be_visible()  # the run's own pool
    page.get_by_text("Subflow Runs", exact=True).first.click()
    [subflow] = gpu_stages_of(sent.id)
    expect(page.get_by_role("link", name=subflow.name, exact=True)).to_have_attribute(
        "href", re.compile(f"/flow-run/{subflow.id}$")
    )
    expect(page.locator('a[href$="/work-pools/work-pool/gpu"]')).to_be_visible()  # the subflow run's pool
    browser_page.screenshot(tmp_path / "prefect-gpu-subflow.png")
    assert {urlparse(url).hostname for url in browser_page.blocked} <= PREFECT_UI_OUTSIDE_HOSTS, browser_page.blocked


def test_scrape_task_retries_transient_failures():
    assert RUNNERS["scrape"].retries == 2


def test_generation_deployment_works_after_a_postgres_restart(team):
    servers, project, env, *_ = team
    if not any(r.state.is_completed() for r in runs_of("weekly")):
        pytest.fail("needs the champion of the deployed training run (run the whole module)")
    servers.postgres.restart()
    triggered = cli(["prefect", "deployment", "run", "batch-generation/daily", "--param", "shard_size=2"], project, env)
    run = wait_for_flow_run(triggered_run_id(triggered.stdout))
    assert run.state.is_completed(), run.state.message
    rows = read_jsonl(project / "outputs/batch/generations.jsonl")
    assert [row["prompt"] for row in rows] == read_prompts(project / "prompts/default.txt")
    tasks, artifacts = task_runs_and_artifacts(run.id)
    shards = {name: state for name, state in tasks.items() if name.startswith("shard ")}
    assert len(shards) == -(-len(rows) // 2) and set(shards.values()) == {"Completed"}
    assert "batch-generations" in artifacts


def dask_worker_pids() -> list[int]:
    import psutil

    pids = []
    for process in psutil.Process().children(recursive=True):
        try:  # children come and go: one may have exited, or be a zombie, by the time it is read
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in command and "resource_tracker" not in command:
            pids.append(process.pid)
    return pids


def test_a_dask_worker_killed_mid_batch_loses_and_duplicates_no_prompt(team):
    servers, project, *_ = team
    from flows.generation import generation_flow

    # Distinct prompts, so a lost or doubled one shows in the order.
    prompts = [
        f"{prompt} {word}" for word in ("a", "de", "el") for prompt in read_prompts(project / "prompts/default.txt")
    ]
    (project / "many-prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
    killed = []

    def kill_a_worker_once_shards_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = dask_worker_pids()
            if pids and any(name.startswith("shard ") for name in running_task_names()):
                os.kill(pids[0], 9)
                killed.append(pids[0])
            time.sleep(0.2)

    # In this test's Prefect settings (a context variable, which a new thread does not inherit).
    killer = threading.Thread(target=contextvars.copy_context().run, args=(kill_a_worker_once_shards_run,), daemon=True)
    killer.start()
    path = generation_flow(str(project), prompts_file="many-prompts.txt", shard_size=3, workers=2)
    killer.join()
    assert killed, "no Dask worker was killed: the test proved nothing"
    assert [row["prompt"] for row in read_jsonl(Path(path))] == prompts


def running_task_names() -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterState, TaskRunFilterStateName

    running = TaskRunFilter(state=TaskRunFilterState(name=TaskRunFilterStateName(any_=["Running"])))
    with get_client(sync_client=True) as client:
        return [t.name for t in client.read_task_runs(task_run_filter=running)]


def test_postgres_keeps_its_data_where_its_user_can_reach_it_wherever_the_clone_is():
    root = Path(tempfile.mkdtemp(prefix="mlproject-private-"))  # mode 0700: user postgres cannot enter it
    postgres = Servers(root / "state", free_port(), free_port(), free_port()).postgres
    try:
        postgres.start()
        postgres.create_database("mlflow")
        assert (root / "state" / "postgres" / "PG_VERSION").is_file()  # reached from the state folder
        assert os.geteuid() != 0 or root not in postgres.data_dir.parents  # as root: kept outside it
    finally:
        postgres.stop()
        shutil.rmtree(postgres.data_dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
