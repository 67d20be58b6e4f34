"""`mlproject promote`: alias champion for the new version only if it beats the champion."""

from mlproject.config import Params


def run(params: Params, args) -> None:
    from mlproject.tracking.promotion import promote
    from mlproject.tracking.registry import connect

    connect(params.mlflow)
    report = promote(params.promote, params.mlflow, params.evaluate, params.paths)
    champion = report["champion_bits_per_byte"]
    print(f"promote: version {report['candidate_version']} -> {report['decision']} "
          f"({report['candidate_bits_per_byte']:.4f} bits per byte vs champion "
          f"{'none' if champion is None else f'{champion:.4f}'}): {report['reason']}")
