"""`make stack` and `make stack-down`: infra/compose.yaml's services in podman, from the images of
`make images`.

    python -m infra.stack up|down [--project NAME]

`up` returns once MLflow answers and the deployments exist (made inside the stack), so that
`prefect deployment run training/weekly` works at once; `down` stops and removes the containers
and keeps the named volumes (the database, MLflow's artifacts, the runs, the DVC remote, the
batch generations).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from infra.images import CPU, POSTGRES, ROOT, image_exists, podman_environment
from infra.wait import wait

PROJECT = "mlproject"  # compose.yaml's name: containers mlproject_worker_1, volumes mlproject_worker-data...
COMPOSE_FILE = ROOT / "infra" / "compose.yaml"
MLFLOW, PREFECT = "http://127.0.0.1:5000", "http://127.0.0.1:4200"
# What answers once the stack is up: MLflow, and the Prefect server with the deployments in it.
READY = [f"{MLFLOW}/health", f"{PREFECT}/api/deployments/name/training/weekly"]
BIN = Path(sys.executable).parent


def compose(*args: str, project: str = PROJECT, check: bool = True) -> subprocess.CompletedProcess:
    """podman-compose on compose.yaml as `project`; a failure is one line with its last words."""
    command = [str(BIN / "podman-compose"), "--project-name", project, "--file", str(COMPOSE_FILE), *args]
    result = subprocess.run(command, env=podman_environment(), capture_output=True, text=True)
    if check and result.returncode:
        lines = (result.stderr or result.stdout or "(no output)").strip().splitlines()
        raise SystemExit(f"stack: podman-compose {' '.join(args)} failed ({result.returncode}): {lines[-1]}")
    return result


def container(service: str, project: str = PROJECT) -> str:
    return f"{project}_{service}_1"


def up(project: str = PROJECT, seconds: float = 600) -> None:
    missing = [image for image in (CPU, POSTGRES) if not image_exists(image)]
    if missing:
        raise SystemExit(f"stack: no image {', '.join(missing)}; build the images first: make images")
    print(f"stack {project}: starting PostgreSQL, MLflow, Prefect, the deployments and a worker", flush=True)
    compose("up", "--detach", project=project)
    wait(READY, seconds)
    print(f"stack {project} is up: MLflow {MLFLOW}, Prefect {PREFECT}", flush=True)


def down(project: str = PROJECT, volumes: bool = False) -> None:
    compose("down", *(["--volumes"] if volumes else []), project=project)
    print(f"stack {project}: stopped{', volumes removed' if volumes else '; its volumes are kept'}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--project", default=PROJECT, help=f"the compose project's name (default {PROJECT})")
    args = parser.parse_args(argv)
    up(args.project) if args.action == "up" else down(args.project)
    return 0


if __name__ == "__main__":
    sys.exit(main())
