"""The team's servers on one machine: a throwaway PostgreSQL cluster, an MLflow tracking server and
a Prefect server on it, and a Prefect worker. `make servers` and the integration tests start them
through these same functions; infra/compose.yaml runs the same commands in containers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from mlproject.cli import QUIET_ENVIRONMENT
from mlproject.search.study import STORAGE as STUDY_STORAGE
from mlproject.workspace import RUNS_DIR

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")  # Debian's postgresql-15 (make servers installs it)
# The work pools the deployments run in (flows/deployments.py): every flow on the CPU pool, and
# a training run's train and evaluate stages on the GPU pool where `train.runner` says so.
WORK_POOL, GPU_POOL = "cpu", "gpu"
BIN = Path(sys.executable).parent
# What every process of the servers runs with: the CLI's quiet environment (no telemetry, no noise),
# and MLflow's GenAI jobs (judges, trace roll-ups) off: by default its server runs them in eight
# processes of their own, which this project never uses (benchmarks/RESULTS.md, section 13).
QUIET = {**QUIET_ENVIRONMENT, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_command(database_url: str, artifacts: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The tracking server: runs and registry in PostgreSQL, artifacts served by the server itself."""
    return [
        "mlflow",
        "server",
        "--backend-store-uri",
        database_url,
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def prefect_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The Prefect server (API, UI, scheduler); its database is PREFECT_API_DATABASE_CONNECTION_URL."""
    return ["prefect", "server", "start", "--host", host, "--port", str(port)]


def worker_command(pool: str) -> list[str]:
    """A worker that runs the deployments' flow runs as local processes."""
    return ["prefect", "worker", "start", "--pool", pool, "--type", "process"]


def postgres_url(port: int, database: str, driver: str, host: str = "127.0.0.1") -> str:
    # SQLAlchemy 2 reads a plain postgresql:// as psycopg 3: name the driver each server uses.
    return f"postgresql+{driver}://postgres@{host}:{port}/{database}"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, what: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    """Until `url` answers 200; a server that exits or stays silent fails in one line naming it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before answering at {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not answer at {url} within {seconds:.0f} s")


def as_postgres(command: list[str], text: bool = False) -> subprocess.CompletedProcess:
    """A PostgreSQL tool, as the `postgres` user when we are root (PostgreSQL refuses root); a
    failure is one line with the tool's own last words."""
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command, capture_output=True, text=True
    )
    if result.returncode != 0:
        words = (result.stderr or result.stdout).strip().splitlines() or ["no output"]
        hint = (
            " (user postgres must be able to enter every folder above it)" if "Permission denied" in words[-1] else ""
        )
        raise RuntimeError(f"{Path(command[0]).name} failed: {words[-1]}{hint}")
    return result


@dataclass
class Postgres:
    """A throwaway cluster in `data_dir`, trusting local connections, on 127.0.0.1:`port`."""

    data_dir: Path
    port: int

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir, "postgres", "postgres")
        if not (self.data_dir / "PG_VERSION").exists():
            as_postgres(
                [
                    str(POSTGRES_BIN / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                ]
            )
        self.pg_ctl("start")

    def pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1"
        as_postgres(
            [
                str(POSTGRES_BIN / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.data_dir / "server.log"),
                "-w",
                action,
            ]
        )

    def restart(self) -> None:
        self.pg_ctl("restart")

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"])

    def create_database(self, name: str) -> None:
        exists = as_postgres(
            [
                str(POSTGRES_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{name}'",
            ]
        ).stdout.strip()
        if not exists:
            as_postgres(
                [str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name]
            )


def postgres_data_dir(state_dir: Path) -> Path:
    """Where the cluster keeps its data: `state_dir`/postgres, unless we are root and the
    `postgres` user cannot enter `state_dir` (a clone in root's home or in a `mktemp -d` folder);
    then a folder in that user's home named after `state_dir`, linked from `state_dir`/postgres."""
    import hashlib
    import pwd

    inside = state_dir / "postgres"
    if os.geteuid() != 0 or inside.is_symlink() or postgres_can_enter(state_dir):
        return inside.resolve() if inside.is_symlink() else inside
    home = Path(pwd.getpwnam("postgres").pw_dir) / "mlproject"
    outside = home / hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
    home.mkdir(parents=True, exist_ok=True)
    shutil.chown(home, "postgres", "postgres")
    # A new link: whatever an earlier cluster of this folder left there (before `make clean`
    # removed the link) or an earlier start failed to fill is not this state's.
    shutil.rmtree(outside, ignore_errors=True)
    if inside.is_dir() and not (inside / "PG_VERSION").exists():
        shutil.rmtree(inside)
    inside.symlink_to(outside)
    print(
        f"servers: user postgres cannot enter {state_dir}; PostgreSQL keeps its data in {outside} "
        f"(linked from {inside})",
        flush=True,
    )
    return outside


def postgres_can_enter(folder: Path) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(folder)]).returncode == 0


@dataclass
class Servers:
    """PostgreSQL, MLflow and Prefect (and optionally a worker) under `state_dir`; stop() ends them all."""

    state_dir: Path
    postgres_port: int = 5433
    mlflow_port: int = 5000
    prefect_port: int = 4200
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def postgres(self) -> Postgres:
        return Postgres(postgres_data_dir(self.state_dir), self.postgres_port)

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def prefect_api_url(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    def client_environment(self) -> dict[str, str]:
        """What a client (the CLI, a worker, a test) needs to reach these servers."""
        return {
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "PREFECT_API_URL": self.prefect_api_url,
            STUDY_STORAGE: postgres_url(self.postgres_port, "optuna", "psycopg2"),  # the sweeps' studies
        }

    def spawn(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
        """A server in its own process group (they start workers of their own), logging to a file."""
        log = open(self.state_dir / f"{name}.log", "ab")
        path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **QUIET, "PATH": path, **env},
            cwd=cwd,
            start_new_session=True,
        )
        self.processes[name] = process
        return process

    def start(self, worker_dir: Path | None = None) -> None:
        """Start everything, each ready before the next; with `worker_dir`, a worker of the CPU pool
        there and one of the GPU pool in a folder of its own (on one machine both are processes)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        for database in ("mlflow", "prefect", "optuna"):
            self.postgres.create_database(database)
        prefect = self.spawn(
            "prefect",
            prefect_command(self.prefect_port),
            {
                "PREFECT_HOME": str(self.state_dir / "prefect-home"),
                # The UI reads its API's address from here, not from --port: on any other port than
                # 4200 it would ask 4200 (another server's data, or nothing).
                "PREFECT_UI_API_URL": self.prefect_api_url,
                "PREFECT_API_DATABASE_CONNECTION_URL": postgres_url(self.postgres_port, "prefect", "asyncpg"),
            },
        )
        mlflow = self.spawn(
            "mlflow",
            mlflow_command(
                postgres_url(self.postgres_port, "mlflow", "psycopg2"),
                str(self.state_dir / "mlflow-artifacts"),
                self.mlflow_port,
            ),
            {},
        )
        wait_for(f"{self.prefect_api_url}/health", "the Prefect server", 180, prefect)
        wait_for(f"{self.mlflow_url}/health", "the MLflow server", 180, mlflow)
        if worker_dir is not None:
            self.start_worker(WORK_POOL, worker_dir, "runs")
            gpu_dir = self.state_dir / "gpu-worker"
            gpu_dir.mkdir(exist_ok=True)
            self.start_worker(GPU_POOL, gpu_dir, "runs-gpu")

    def start_worker(self, pool: str, workdir: Path, runs: str) -> subprocess.Popen:
        # Each flow run clones its checkout's commit into a workspace of its own under `runs`; the
        # two workers share nothing on disk but the DVC remote the checkout names.
        name = "worker" if pool == WORK_POOL else f"{pool}-worker"
        return self.spawn(
            name,
            worker_command(pool),
            {
                **self.client_environment(),
                "PREFECT_HOME": str(self.state_dir / f"{name}-home"),
                RUNS_DIR: str(self.state_dir / runs),
            },
            cwd=workdir,
        )

    def stop(self) -> None:
        # The workers first (they report to the servers), all at once, then the servers, all at
        # once: whole groups, on SIGINT (a worker ignores SIGTERM), then KILL after 20 s.
        workers = [p for name, p in self.processes.items() if name.endswith("worker")]
        for group in (workers, [p for p in self.processes.values() if p not in workers]):
            interrupted = []
            for process in group:
                try:
                    os.killpg(process.pid, signal.SIGINT)
                    interrupted.append(process)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 20
            for process in interrupted:
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.processes.clear()
        self.postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.servers",
        description="Start PostgreSQL, an MLflow server and a Prefect server on it, a Prefect worker "
        f"of pool {WORK_POOL} running flows from this folder and one of pool {GPU_POOL}; Ctrl-C stops "
        "them all. State and logs in --state.",
    )
    parser.add_argument("--state", default=".servers", help="folder for the database, artifacts and logs")
    parser.add_argument("--postgres-port", type=int, default=5433)
    parser.add_argument("--mlflow-port", type=int, default=5000)
    parser.add_argument("--prefect-port", type=int, default=4200)
    args = parser.parse_args(argv)
    servers = Servers(Path(args.state).resolve(), args.postgres_port, args.mlflow_port, args.prefect_port)
    print(
        f"starting PostgreSQL on 127.0.0.1:{args.postgres_port}, then the Prefect and MLflow servers "
        f"(about 30 s; logs in {args.state}/) ...",
        flush=True,
    )

    def stop_on_sigterm(signum, frame):  # `kill` stops them all too, as Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        servers.start(worker_dir=Path.cwd())
        print("Ready. In another shell:")
        for key, value in servers.client_environment().items():
            print(f"  export {key}={value}")
        print(
            f"  make deployments             # the training and generation deployments, "
            f"pools {WORK_POOL} and {GPU_POOL}"
        )
        print("  .venv/bin/prefect deployment run training/weekly")
        print(
            f"Prefect UI: http://127.0.0.1:{args.prefect_port}   MLflow UI: {servers.mlflow_url}   "
            "Ctrl-C stops everything.",
            flush=True,
        )
        while all(p.poll() is None for p in servers.processes.values()):
            time.sleep(1)
        failed = [name for name, p in servers.processes.items() if p.poll() is not None]
        print(f"servers: {', '.join(failed)} exited; see {args.state}/{failed[0]}.log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as error:
        print(f"servers: {error}", file=sys.stderr)
        return 1
    finally:
        servers.stop()


if __name__ == "__main__":
    sys.exit(main())
