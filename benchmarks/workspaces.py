"""What a workspace per run costs: a run in a fresh workspace against one in place, and two runs at
once against two in sequence.

    python -m benchmarks.workspaces                    # the tests' tiny project (about 10 min)
    python -m benchmarks.workspaces --project CLONE    # a clone of this project whose pipeline ran
    python -m benchmarks.run --render-only             # puts it in RESULTS.md (section 11)

Writes benchmarks/RESULTS-workspaces.json. In place is `dvc repro` in a clone of the project (as a
person runs it); in a workspace is what a flow run's stages do, without Prefect: a clone of the
commit (`mlproject.workspace.open_workspace`), then each stage restored from the DVC remote or run
and pushed (`python -m mlproject.workspace STAGE`). Each measurement alternates the two sides and
gives fresh values to the params it changes, so no side finds the other's run in the run-cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "RESULTS-workspaces.json"


def environment() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def in_place(clone: Path, values: list[str], env: dict[str, str]) -> float:
    """`dvc repro` in `clone` with `values` applied to its params.yaml (then put back)."""
    from mlproject.params_file import apply_values
    from mlproject.workspace import parse_assignments

    params = clone / "params.yaml"
    original = params.read_text()
    if values:
        apply_values(params, parse_assignments(values))
    try:
        start = time.perf_counter()
        subprocess.run(["dvc", "repro"], cwd=clone, env={**environment(), **env}, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        params.write_text(original)


def in_workspace(project: Path, values: list[str]) -> float:
    """A fresh workspace of `project`'s commit with `values`, every stage restored or run, pushed."""
    from mlproject.cli import STAGES
    from mlproject.workspace import open_workspace, stage_command

    start = time.perf_counter()
    workspace = open_workspace(project, "benchmark", values=values)
    for stage in STAGES:
        subprocess.run(
            stage_command(stage),
            cwd=workspace.path,
            env={**environment(), **workspace.env},
            check=True,
            capture_output=True,
        )
    return time.perf_counter() - start


def at_once(project: Path, runs: list[list[str]]) -> float:
    """Wall time of the runs in workspaces side by side (threads, each driving its processes)."""
    failures = []

    def one(values):
        try:
            in_workspace(project, values)
        except Exception as error:  # noqa: BLE001 - reported below, with the values that failed
            failures.append(f"{values}: {error}")

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(values,)) for values in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("; ".join(failures))
    return time.perf_counter() - start


def progress(message: str) -> None:
    print(f"[workspaces] {message}", flush=True)


def measure(project: Path, tiny: Path, repeats: int) -> dict:
    """`project`: a DVC project whose pipeline ran and was pushed (the in-place clone is made
    here); `tiny`: the same for the runs-at-once comparison, which trains every time."""
    from mlproject.config import load_params
    from mlproject.workspace import copy_source, point_at, source_remote, tracking_uri

    # Values no earlier run of this benchmark gave, so the run-cache cannot answer for them.
    length = load_params(project / "params.yaml").generate.max_length + 10 * (int(time.time()) % 10_000)
    with tempfile.TemporaryDirectory() as folder:
        clone = Path(folder) / "in-place"  # with the project's remote and cache, as a workspace has them
        clone.mkdir()
        copy_source(project, clone)
        point_at(clone, source_remote(project))
        uri = tracking_uri(project, clone)  # the project's MLflow store, as its workspaces use it
        env = {"MLFLOW_TRACKING_URI": uri} if uri else {}
        progress("in place: the first dvc repro (what the project ran is in the cache they share)")
        in_place(clone, [], env)
        unchanged = {"in_place": [], "workspace": []}
        changed = {"in_place": [], "workspace": []}
        for repeat in range(repeats):
            progress(f"unchanged pipeline: repeat {repeat + 1}/{repeats}")
            unchanged["in_place"].append(in_place(clone, [], env))
            unchanged["workspace"].append(in_workspace(project, []))
            progress(f"generate.max_length changed (generate reruns): repeat {repeat + 1}/{repeats}")
            changed["in_place"].append(in_place(clone, [f"generate.max_length={length + 1 + 2 * repeat}"], env))
            changed["workspace"].append(in_workspace(project, [f"generate.max_length={length + 2 + 2 * repeat}"]))
    together = {"sequence": [], "at_once": []}
    units = 32
    for repeat in range(repeats):
        progress(f"two training runs, in sequence then at once: repeat {repeat + 1}/{repeats}")
        pairs = [[[f"train.rnn.units={units + 4 * repeat + 1 + 2 * side + k}"] for k in (0, 1)] for side in (0, 1)]
        start = time.perf_counter()
        for values in pairs[0]:
            in_workspace(tiny, values)
        together["sequence"].append(time.perf_counter() - start)
        together["at_once"].append(at_once(tiny, pairs[1]))
    median = statistics.median
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "repeats": repeats,
        "project": str(project),
        "cpus": os.cpu_count(),
        "unchanged": unchanged,
        "changed": changed,
        "together": together,
        "unchanged_in_place_s": median(unchanged["in_place"]),
        "unchanged_workspace_s": median(unchanged["workspace"]),
        "changed_in_place_s": median(changed["in_place"]),
        "changed_workspace_s": median(changed["workspace"]),
        "sequence_s": median(together["sequence"]),
        "at_once_s": median(together["at_once"]),
    }


def lines(figures: dict | None) -> list[str]:
    """Section 11 of RESULTS.md (run.py renders it when RESULTS-workspaces.json exists)."""
    if not figures:
        return []
    f = figures
    beyond = f["unchanged_workspace_s"] - f["unchanged_in_place_s"]
    return [
        "## 11. A workspace per run",
        "",
        f"Measured {f['date']} by `python -m benchmarks.workspaces` ({f['cpus']} CPUs; medians of "
        f"{f['repeats']}, the sides alternating), on {f['project_words']}. In place: `dvc repro` in a clone. "
        "In a workspace: what a flow run's stages do, without Prefect (a clone of the commit, then "
        "each stage restored from the DVC remote or run, and pushed, in one process per stage).",
        "",
        "| run | in place (s) | in a workspace (s) | workspace beyond in place (s) |",
        "|---|---|---|---|",
        f"| nothing changed (every stage restored) | {f['unchanged_in_place_s']:.1f} | "
        f"{f['unchanged_workspace_s']:.1f} | **{beyond:.1f}** (target: under 15) |",
        f"| `generate.max_length` changed (generate reruns) | {f['changed_in_place_s']:.1f} | "
        f"{f['changed_workspace_s']:.1f} | {f['changed_workspace_s'] - f['changed_in_place_s']:.1f} |",
        "",
        f"Two training runs of the tests' tiny project with different `train.units` (each the whole pipeline, "
        f"the data stages restored): **{f['sequence_s']:.1f} s** one after the other, **{f['at_once_s']:.1f} s** "
        f"side by side ({f['sequence_s'] / f['at_once_s']:.2f} times as fast) on {f['cpus']} cores. The pair in "
        "sequence runs first in each repeat, so a ratio above the number of cores is partly the order (files "
        "the second pair finds in the page cache), not the overlap alone. On the tiny project a stage is mostly "
        "its interpreter starting and importing TensorFlow or MLflow, one core each, which is why two runs "
        "overlap this well; two real trainings would share the cores instead.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--project",
        help="a clone of this project whose pipeline ran (dvc repro) and was "
        "pushed (dvc push --run-cache); default: the tests' tiny project, run here first",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    from tests.conftest import make_tiny_project

    with tempfile.TemporaryDirectory() as folder:
        os.environ["MLPROJECT_RUNS_DIR"] = str(Path(folder) / "runs")
        tiny = make_tiny_project(Path(folder) / "tiny")
        progress("the tiny project's first run, pushed to its remote")
        for command in (["dvc", "repro"], ["dvc", "push", "--run-cache"]):
            subprocess.run(command, cwd=tiny, env=environment(), check=True, capture_output=True)
        project = Path(args.project).resolve() if args.project else tiny
        figures = measure(project, tiny, args.repeats)
    figures["project_words"] = (
        f"the project in {args.project}"
        if args.project
        else "the tests' tiny project (the sample corpus, a 32-unit GRU)"
    )
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(lines(figures)))


if __name__ == "__main__":
    main()
