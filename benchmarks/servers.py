"""What the MLflow server costs to start, with MLflow's GenAI jobs (its default) and without them
(`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`, as `make servers` and the compose stack start it).

    python -m benchmarks.servers                   # about 4 minutes
    python -m benchmarks.run --render-only         # puts it in RESULTS.md (section 13)

Writes benchmarks/RESULTS-servers.json. Each start is `mlflow server` on a SQLite store of its own
(PostgreSQL's server is the same either way), the two sides alternating; once /health answers and
the server has settled (SETTLE_S), the processes of its group, their CPU time since they started
and their resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.workspaces import environment  # the venv's commands first on PATH, as there
from infra.servers import BIN, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "RESULTS-servers.json"
SETTLE_S = 20  # MLflow starts its job consumers after /health answers
SIDES = {"with GenAI jobs (MLflow's default)": "true", "without (this project's servers)": "false"}


def one_start(jobs: str, folder: Path) -> dict:
    import psutil

    port = free_port()
    env = {**environment(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": jobs}
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(folder / "mlflow.log", "wb") as log:
        server = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        started = time.monotonic()
        wait_for(f"http://127.0.0.1:{port}/health", "mlflow", 120, server)
        ready = time.monotonic() - started
        time.sleep(SETTLE_S)
        group = [p for p in psutil.process_iter() if _group(p) == server.pid]
        cpu = sum(sum(p.cpu_times()[:2]) for p in group)
        memory = sum(p.memory_info().rss for p in group)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    return {"processes": len(group), "cpu_s": cpu, "rss_mb": memory / 2**20, "ready_s": ready}


def _group(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except (ProcessLookupError, PermissionError):
        return None


def measure(repeats: int) -> dict:
    runs = {side: [] for side in SIDES}
    for repeat in range(repeats):
        for side, jobs in SIDES.items():  # alternating, so drift on a shared machine hits both
            print(f"mlflow server {side}: start {repeat + 1}/{repeats}", flush=True)
            with tempfile.TemporaryDirectory() as folder:
                runs[side].append(one_start(jobs, Path(folder)))
    return {side: {key: statistics.median(r[key] for r in found) for key in found[0]} for side, found in runs.items()}


def lines(figures: dict | None) -> list[str]:
    """Section 13 of RESULTS.md (run.py renders it when RESULTS-servers.json exists)."""
    if not figures:
        return []
    out = [
        "## 13. Starting the MLflow server",
        "",
        f"Measured {figures['date']} by `python -m benchmarks.servers` ({figures['cpus']} CPUs, "
        f"{figures['machine']}): `mlflow server` on a SQLite store, median of {figures['repeats']} starts "
        f"per side, the sides alternating, {SETTLE_S} s after its health check answered. MLflow 3 runs "
        "GenAI jobs (judges, trace roll-ups) in consumer processes of their own unless "
        "`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`; this project has no such jobs, so `make servers`, the "
        "compose stack and the tests start it without them.",
        "",
        "| server | processes | CPU time to start | resident memory | health check answered after |",
        "|---|---|---|---|---|",
    ]
    for side, f in figures["sides"].items():
        out.append(
            f"| {side} | {f['processes']:.0f} | {f['cpu_s']:.1f} s | {f['rss_mb']:,.0f} MB | {f['ready_s']:.1f} s |"
        )
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    figures = {
        "sides": measure(args.repeats),
        "repeats": args.repeats,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(lines(figures)))


if __name__ == "__main__":
    main()
