"""How soon the page shows text: for every registered version of a project's store, the seconds
from pressing Generate to the first text shown and to the whole text, through the page's own code
(`Studio.writer`), the version loaded (and warmed up) first as picking it does.

    python -m benchmarks.first_text --params params.yaml [--max-length 200] [--repeats 3]

Prints one row per version and writes them to benchmarks/RESULTS-first-text.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

OUT = Path(__file__).with_name("RESULTS-first-text.json")


def timings(studio, version: str, settings: tuple, repeats: int) -> dict:
    load_started = time.perf_counter()
    studio.model(version)
    load = time.perf_counter() - load_started
    first, whole, shown = [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        answers = studio.writer(version, "La vida ", settings)
        next(answers)
        first.append(time.perf_counter() - started)
        shown = 1 + sum(1 for _ in answers)
        whole.append(time.perf_counter() - started)
    return {
        "load_s": load,
        "first_text_s": statistics.median(first),
        "whole_text_s": statistics.median(whole),
        "updates": shown,
    }


def main() -> None:
    from mlproject.config import ServeConfig, load_params
    from mlproject.serving.page import Studio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--max-length", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    params = load_params(args.params)
    studio = Studio(params.mlflow.model_name, ServeConfig(cached_versions=1), params.mlflow.tracking_uri)
    settings = (args.max_length, 0.7, 0, 0.95, 1)  # max_length, temperature, top_k, top_p, seed
    rows = []
    for row in studio.versions():
        figures = timings(studio, row.version, settings, args.repeats)
        rows.append({"version": row.version, "kind": row.kind, "max_length": args.max_length, **figures})
        print(
            f"v{row.version} ({row.kind}): loaded in {figures['load_s']:.1f} s; first text after "
            f"{figures['first_text_s']:.2f} s, all {args.max_length} tokens after {figures['whole_text_s']:.2f} s "
            f"({figures['updates']} updates)",
            flush=True,
        )
    OUT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
