"""`make test-stack`: the images built, the stack started and a training run through it, as a user
would do it, with one verdict line per step (its time) and the image sizes.

    python -m infra.check_stack [--keep] [--preset NAME]

It runs the stack as a compose project of its own (`mlproject-check`: its own containers and
volumes, on the same ports as `make stack`, so stop that one first) and removes it and its volumes
at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from infra import stack
from infra.images import CPU, CUDA, POSTGRES, ROOT, image_size, megabytes, podman, podman_environment
from infra.stack import MLFLOW, PREFECT
from infra.wait import wait
from mlproject.cli import STAGES  # every stage a training run runs, which a second run restores

PROJECT = "mlproject-check"
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"


class Failed(Exception):
    """A step's one line of why."""


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def prefect(*args: str) -> str:
    result = subprocess.run([str(BIN / "prefect"), *args], capture_output=True, text=True)
    if result.returncode:
        raise Failed(f"prefect {' '.join(args[:3])}: {last_line(result)}")
    return result.stdout


def finished_run(name: str, *parameters: str, minutes: float = 30):
    """`prefect deployment run NAME --param ...` from the host, as README says; the run once final."""
    from prefect.client.orchestration import get_client

    printed = prefect("deployment", "run", name, *[word for p in parameters for word in ("--param", p)])
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", printed).group(1)
    deadline = time.monotonic() + minutes * 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(5)
    raise Failed(f"{name} run {run_id} did not finish within {minutes:.0f} min")


def run_deployment(name: str, *parameters: str):
    run = finished_run(name, *parameters)
    if not run.state.is_completed():
        raise Failed(f"{name} run {run.name}: {run.state.name}: {run.state.message}")
    return run


def task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return {t.name: t.state.name for t in runs}


def container(service: str) -> str:
    return stack.container(service, PROJECT)


# --- the steps ------------------------------------------------------------------------------------


def step_images() -> str:
    log = Path(tempfile.gettempdir()) / "mlproject-check-stack-images.log"  # podman's build output
    with log.open("w") as output:
        result = subprocess.run([sys.executable, "-m", "infra.images"], stdout=output, stderr=subprocess.STDOUT)
    if result.returncode:
        raise Failed(f"python -m infra.images: status {result.returncode}; its output is in {log}")
    return ", ".join(f"{name} {megabytes(image_size(name))}" for name in (CPU, POSTGRES, CUDA))


def step_stack_up() -> str:
    stack.up(PROJECT)
    return "PostgreSQL, MLflow, Prefect, deployments and worker up; training/weekly deployed inside the stack"


def step_training(preset: str, state: dict) -> str:
    run = run_deployment("training/weekly", f"preset={preset}")
    state["training"] = run
    return f"training/weekly run {run.name} ({preset}) completed in {run.total_run_time.total_seconds():.0f} s"


def step_champion(state: dict) -> str:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(MLFLOW)
    client = MlflowClient()
    found = [(m.name, client.get_model_version_by_alias(m.name, "champion")) for m in client.search_registered_models()
             if "champion" in m.aliases]  # fmt: skip
    if not found:
        raise Failed(f"no registered model at {MLFLOW} has the alias champion")
    name, version = found[0]
    with tempfile.TemporaryDirectory() as folder:
        path = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=folder)
        files = sum(1 for file in Path(path).rglob("*") if file.is_file())
    state["champion"] = (name, version.version)
    return f"{name} version {version.version} is champion; its {files} files came from the stack's artifact store"


def step_uis(state: dict) -> str:
    """Both UIs in Chromium, as a person opens them from the host; a screenshot of a page that
    does not show what it should."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    run, (model, _) = state["training"], state["champion"]
    pages = [
        (f"{PREFECT}/runs/flow-run/{run.id}", [run.name, "Completed"]),
        (f"{MLFLOW}/#/models/{model}", [model, "@ champion"]),
    ]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        try:
            for url, texts in pages:
                page.goto(url)
                for text in texts:
                    try:
                        expect(page.get_by_text(text).first).to_be_visible(timeout=60_000)
                    except (AssertionError, PlaywrightError):
                        shot = Path(tempfile.gettempdir()) / "mlproject-check-stack-ui.png"
                        page.screenshot(path=str(shot))
                        raise Failed(f"{url} shows no {text!r} within 60 s (screenshot {shot})") from None
        finally:
            browser.close()
    return f"Chromium: the Prefect UI shows run {run.name} Completed; the MLflow UI shows {model} @ champion"


def step_generation() -> str:
    from mlproject.config import load_params

    run = run_deployment("batch-generation/daily")
    path = f"/app/{load_params(ROOT / 'params.yaml').paths.batch_generations}"  # the deployment's repo_dir: /app
    read = subprocess.run(
        ["podman", "exec", container("worker"), "cat", path], env=podman_environment(), capture_output=True, text=True
    )
    rows = [json.loads(line) for line in read.stdout.splitlines() if line.strip()]
    if not rows:
        raise Failed(f"batch-generation run {run.name} completed but {path} in the worker holds no row")
    return f"batch-generation/daily run {run.name} completed; {path} (a named volume) holds {len(rows)} generations"


def step_down_and_up(preset: str, state: dict) -> str:
    from mlflow import MlflowClient

    stack.down(PROJECT)
    stack.up(PROJECT)
    name, version = state["champion"]
    kept = MlflowClient(MLFLOW).get_model_version_by_alias(name, "champion").version
    if kept != version:
        raise Failed(f"after down and up, champion of {name} is version {kept}, not {version}")
    run = run_deployment("training/weekly", f"preset={preset}")
    states = task_states(run.id)
    ran = [stage for stage in STAGES if stage in states and states[stage] != "Skipped"]
    if ran:
        raise Failed(f"the second training run after down and up ran {ran} again: {json.dumps(states)}")
    return f"down and up kept champion {name} v{version}; the second run {run.name} skipped all {len(STAGES)} stages"


def step_faults(preset: str) -> str:
    # A server that dies (its process killed, as the kernel's OOM killer does; podman's restart
    # policy leaves alone a container stopped by `podman kill` or `podman stop`): the policy brings it back.
    def state(field: str) -> int:
        return int(podman("inspect", "--format", f"{{{{.{field}}}}}", container("mlflow"), capture=True))

    restarts, started = state("RestartCount"), time.monotonic()
    os.kill(state("State.Pid"), signal.SIGKILL)
    while state("RestartCount") == restarts:
        if time.monotonic() - started > 120:
            raise Failed("MLflow's killed container was not restarted within 120 s")
        time.sleep(1)
    wait([f"{MLFLOW}/health"], seconds=300)
    back = time.monotonic() - started
    # A server that stays down: a run that needs it fails in one line naming it.
    podman("stop", container("mlflow"), capture=True)
    try:
        run = finished_run("training/weekly", f"preset={preset}", "epochs=1")  # train runs again: it needs MLflow
    finally:
        podman("start", container("mlflow"), capture=True)
        wait([f"{MLFLOW}/health"], seconds=300)
    message = (run.state.message or "").strip()
    if run.state.is_completed() or "\n" in message or "mlflow:5000" not in message:
        raise Failed(f"with MLflow stopped, run {run.name} ended {run.state.name}: {message[:300]!r}")
    # A wrong credential: one line, no traceback.
    wrong = subprocess.run(
        ["podman", "run", "--rm", "--network", f"{PROJECT}_default", CPU,
         "python", "-m", "infra.wait", "--seconds", "30", "postgresql+psycopg2://postgres:wrong@postgres:5432/mlflow"],
        env=podman_environment(), capture_output=True, text=True,
    )  # fmt: skip
    said = [line for line in wrong.stderr.strip().splitlines() if line]
    if wrong.returncode == 0 or len(said) != 1 or "password authentication failed" not in said[0]:
        raise Failed(f"a wrong database password: status {wrong.returncode}, said {said}")
    return (
        f"killed MLflow answered again after {back:.0f} s (restart policy); with it stopped, run {run.name} "
        f"{run.state.name}: {message!r}; a wrong password: {said[0]!r}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.check_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack and its volumes when done")
    parser.add_argument("--preset", default="default", help="the training run's preset (default: default)")
    args = parser.parse_args(argv)
    # The stack's servers, for the Prefect CLI and clients (read when Prefect is first imported).
    os.environ.update(
        PREFECT_API_URL=f"{PREFECT}/api", MLFLOW_TRACKING_URI=MLFLOW, MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"
    )
    state: dict = {}
    steps = [
        ("images", step_images),
        ("stack up", step_stack_up),
        ("training run", lambda: step_training(args.preset, state)),
        ("champion", lambda: step_champion(state)),
        ("UIs", lambda: step_uis(state)),
        ("batch generation", step_generation),
        ("down and up", lambda: step_down_and_up(args.preset, state)),
        ("faults", lambda: step_faults(args.preset)),
    ]
    failed = False
    started = time.monotonic()
    try:
        for name, step in steps:
            begun = time.monotonic()
            try:
                said = step()
            except (Failed, SystemExit, Exception) as error:  # noqa: BLE001 - every step ends in one verdict
                said = str(error).strip().splitlines()[0] if str(error).strip() else ""
                why = said if isinstance(error, (Failed, SystemExit)) else f"{type(error).__name__}: {said}"
                print(f"FAIL {name} ({time.monotonic() - begun:.0f} s): {why}", flush=True)
                failed = True
                break
            print(f"ok   {name} ({time.monotonic() - begun:.0f} s): {said}", flush=True)
    finally:
        if not args.keep:
            stack.down(PROJECT, volumes=True)
    print(f"{'FAILED' if failed else 'passed'}: make test-stack in {(time.monotonic() - started) / 60:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
