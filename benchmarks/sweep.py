"""What a sweep costs and finds: `mlproject sweep char-rnn-size` from a fresh clone, its trials one
at a time and two side by side, against the default preset's own pipeline run.

    python -m benchmarks.sweep                     # about 2 hours on 2 cores
    python -m benchmarks.sweep --parallelism 2 --keep-default   # one side only
    python -m benchmarks.run --render-only         # puts it in RESULTS.md (section 12)

Writes benchmarks/RESULTS-sweep.json (each side is kept when the other is measured alone). Each run
is a new user's: a clone of this commit (`git clone`), its own MLflow store, DVC remote and study,
nothing restored from an earlier run. The default preset's figure is `dvc repro evaluate` in a clone
of its own, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.workspaces import environment  # the venv's commands first on PATH, as there

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "RESULTS-sweep.json"
SWEEP = "char-rnn-size"


def fresh_clone(into: Path) -> Path:
    clone = into / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    return clone


def run_logged(command: list[str], cwd: Path, log: Path) -> float:
    """Wall seconds of `command`, its output copied to `log` and to this terminal as it comes."""
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for line in process.stdout:
            out.write(line)
            print(f"    {line}", end="", flush=True)
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed in {cwd} (rc {process.returncode}); see {log}")
    return time.perf_counter() - start


def default_preset() -> dict:
    """The default preset's bits per byte and wall time: the pipeline up to evaluate, as `make run` trains."""
    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        clone = fresh_clone(Path(tmp))
        seconds = run_logged(["dvc", "repro", "evaluate"], clone, Path(tmp) / "repro.log")
        metrics = json.loads((clone / "reports" / "metrics.json").read_text())
    return {"bits_per_byte": metrics["bits_per_byte"], "seconds": round(seconds, 1)}


def sweep(parallelism: int) -> dict:
    """`mlproject sweep char-rnn-size --parallelism N` in a fresh clone: wall time and its report."""
    with tempfile.TemporaryDirectory(prefix=f"bench-sweep-{parallelism}-") as tmp:
        clone = fresh_clone(Path(tmp))
        # The clone's own code drives the sweep (`-c` puts the clone first on the path), as its stages run it.
        cli = "import sys; from mlproject.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", cli, "sweep", SWEEP, "--parallelism", str(parallelism)]
        seconds = run_logged(command, clone, Path(tmp) / "sweep.log")
        report = json.loads((clone / "reports" / "sweep.json").read_text())
    return {
        "seconds": round(seconds, 1),
        "trials": [
            {k: t[k] for k in ("trial", "state", "bits_per_byte", "pruned_at_epoch", "values", "seconds")}
            for t in report["trials"]
        ],
        "best": {k: report["best"][k] for k in ("trial", "bits_per_byte", "values")},
        "margin_over_second_bpb": report["best"].get("margin_over_second_bpb"),
        "decision": report["promotion"]["decision"],
    }


def shown(values: dict) -> str:
    return ", ".join(f"{key.split('.')[-1]} {value:.4g}" for key, value in values.items())


def trial_words(trial: dict) -> str:
    words = f"{trial['trial']}: {shown(trial['values'])}, {trial['state']}"
    if trial.get("pruned_at_epoch") is not None:
        words += f" at epoch {trial['pruned_at_epoch']}"
    if trial["bits_per_byte"] is not None:
        words += f" at {trial['bits_per_byte']:.4f}"
    if trial["seconds"] is not None:
        words += f" in {trial['seconds']:.0f} s"
    return words


def lines(figures: dict | None) -> list[str]:
    """Section 12 of RESULTS.md (run.py renders it when RESULTS-sweep.json exists)."""
    if not figures or not figures.get("sides"):
        return []
    f, default = figures, figures["default"]
    out = [
        "## 12. A sweep",
        "",
        f"Measured {f['date']} by `python -m benchmarks.sweep` ({f['cpus']} CPUs, {f['machine']}): "
        f"`mlproject sweep {SWEEP}` (the default GRU's units, layers and learning rate; Optuna's TPE, "
        "8 trials, the median pruner from epoch 2) from a fresh clone, as a new user runs it. The default "
        f"preset, `dvc repro evaluate` in a clone of its own: **{default['bits_per_byte']:.4f} bits per "
        f"byte** in {default['seconds']:.0f} s.",
        "",
        "| trials side by side | wall time | complete | pruned | failed | best trial | its bits per byte "
        "| better than the default by | margin over the second | promotion |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for parallelism, side in sorted(f["sides"].items()):
        states = [t["state"] for t in side["trials"]]
        best = side["best"]
        margin = side["margin_over_second_bpb"]
        out.append(
            f"| {parallelism} | {side['seconds'] / 60:.1f} min | {states.count('complete')} | "
            f"{states.count('pruned')} | {states.count('fail')} | {best['trial']} "
            f"({shown(best['values'])}) | "
            f"**{best['bits_per_byte']:.4f}** | {default['bits_per_byte'] - best['bits_per_byte']:.4f} | "
            f"{'' if margin is None else f'{margin:.4f}'} | {side['decision']} |"
        )
    out += ["", "Each trial (state, bits per byte, seconds from its workspace to its score):", ""]
    for parallelism, side in sorted(f["sides"].items()):
        trials = "; ".join(trial_words(t) for t in side["trials"])
        out += [f"- {parallelism} side by side: {trials}.", ""]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallelism", type=int, action="append", help="measure this side only (repeatable)")
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument(
        "--keep-default", action="store_true", help="keep the default preset's figure recorded in --out, if any"
    )
    args = parser.parse_args()
    out = Path(args.out)
    figures = json.loads(out.read_text()) if out.is_file() else {"sides": {}}
    if not (args.keep_default and "default" in figures):
        print("the default preset (dvc repro evaluate in a fresh clone)", flush=True)
        figures["default"] = default_preset()
    for parallelism in args.parallelism or [1, 2]:
        print(f"sweep {SWEEP}, {parallelism} side by side (fresh clone)", flush=True)
        figures["sides"][str(parallelism)] = sweep(parallelism)
        figures.update(
            date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            cpus=os.cpu_count(),
            machine=platform.processor() or platform.machine(),
        )
        out.write_text(json.dumps(figures, indent=2) + "\n")  # each side kept as soon as it is measured
    print("\n".join(lines(figures)))


if __name__ == "__main__":
    main()
