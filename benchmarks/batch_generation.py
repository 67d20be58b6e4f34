"""Batch generation throughput: the generation flow on a local Dask cluster of 1, 2 and 4 workers
against the single-process generate stage, on the same prompts and the same champion.

    python -m benchmarks.batch_generation               # writes benchmarks/RESULTS-batch.json
    python -m benchmarks.run --render-only              # puts it in RESULTS.md (section 8)

Each figure is a whole run's wall time, process start, model loading and (for the flow) the
cluster's start included, because that is what a person waits for; the sides alternate per repeat.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {
    "full": {"prompts": 256, "length": 200, "shard": 32, "workers": [1, 2, 4], "repeats": 3},
    "tiny": {"prompts": 8, "length": 10, "shard": 4, "workers": [1, 2], "repeats": 1},
}
FLOW = (
    "import sys; from flows.generation import generation_flow\n"
    "if __name__ == '__main__':\n"
    "    generation_flow(sys.argv[1], prompts_file='bench-prompts.txt', shard_size=int(sys.argv[2]),"
    " workers=int(sys.argv[3]))\n"
)


def timed(command: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, text=True, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def measure(size: dict) -> dict:
    from infra.servers import free_port, prefect_command, wait_for
    from tests.conftest import make_tiny_project, tiny_params, write_params

    with tempfile.TemporaryDirectory() as tmp:
        project = make_tiny_project(Path(tmp) / "project")
        params = tiny_params(project)
        params["generate"].update(max_length=size["length"], prompts_file="bench-prompts.txt")
        write_params(project, params)
        base = (ROOT / "prompts/default.txt").read_text(encoding="utf-8").split("\n")
        prompts = [f"{base[i % 8]} {i}" for i in range(size["prompts"])]
        (project / "bench-prompts.txt").write_text("\n".join(prompts) + "\n", encoding="utf-8")
        port = free_port()  # for this run's Prefect server
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        }
        timed(["dvc", "repro"], project, env)  # the champion both sides serve
        # A Prefect server for the flow runs: on the temporary one each Dask worker starts its own.
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / prefect_command(port)[0]), *prefect_command(port)[1:]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for(f"http://127.0.0.1:{port}/api/health", "the Prefect server", 180, server)
            script = Path(tmp) / "flow.py"
            script.write_text(FLOW, encoding="utf-8")
            stage, flows = [], {n: [] for n in size["workers"]}
            for repeat in range(size["repeats"]):
                print(f"batch generation: repeat {repeat + 1}/{size['repeats']}", file=sys.stderr, flush=True)
                stage.append(timed(["mlproject", "generate"], project, env))
                for workers in size["workers"]:
                    flows[workers].append(
                        timed([sys.executable, str(script), str(project), str(size["shard"]), str(workers)], ROOT, env)
                    )
        finally:
            os.killpg(server.pid, 2)
            server.wait()
    texts = size["prompts"] * size["length"]
    rows = [{"runner": "generate stage (one process)", "seconds": statistics.median(stage)}]
    rows += [
        {"runner": f"generation flow, {n} Dask worker{'s' * (n > 1)}", "seconds": statistics.median(s)}
        for n, s in flows.items()
    ]
    for row in rows:
        row["chars_per_s"] = texts / row["seconds"]
        row["vs_stage"] = rows[0]["seconds"] / row["seconds"]
    return {
        "prompts": size["prompts"],
        "length": size["length"],
        "shard_size": size["shard"],
        "repeats": size["repeats"],
        "rows": rows,
    }


def lines(batch: dict | None) -> list[str]:
    """Section 8 of RESULTS.md (run.py renders it when RESULTS-batch.json exists)."""
    if not batch:
        return []
    out = [
        "## 8. Batch generation over Dask",
        "",
        f"{batch['prompts']} prompts of {batch['length']} characters each from the tiny project's champion "
        f"(a char-RNN), shards of {batch['shard_size']}; median wall time of {batch['repeats']} "
        "alternating runs, process start, model loading and the cluster's start included "
        "(`python -m benchmarks.batch_generation`).",
        "",
        "| runner | seconds | characters/s | speed-up vs the stage |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {r['runner']} | {r['seconds']:.1f} | {r['chars_per_s']:.0f} | {r['vs_stage']:.2f} |" for r in batch["rows"]
    ]
    return out + [
        "",
        "A speed-up below 1 means that starting the cluster and loading the model on each worker "
        "cost more than spreading the prompts saved, on this machine's cores; the fan-out is for "
        "workers on more cores or machines than one process can use.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS-batch.json"))
    args = parser.parse_args()
    from mlproject.fileio import write_json

    figures = measure(SIZES[args.size])
    write_json(args.out, figures)
    print("\n".join(lines(figures)))


if __name__ == "__main__":
    main()
