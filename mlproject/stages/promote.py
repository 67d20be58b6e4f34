"""`mlproject promote`: alias champion for the new version only if it beats the champion beyond doubt."""

from mlproject.config import Params


def run(params: Params, args) -> None:
    from mlproject.tracking.promotion import NOT_COMPARED, promote
    from mlproject.tracking.registry import connect

    connect(params.mlflow)
    report = promote(
        params.promote,
        params.mlflow,
        params.evaluate,
        params.paths,
        rescore_champion=args.rescore_champion,
        seed=params.seed,
    )
    if report["decision"] == NOT_COMPARED:
        print(
            f"promote: version {report['candidate_version']} not compared: {report['reason']}; the aliases "
            f"stay as they were (champion: {report['champion_now'] or 'none'})"
        )
        return
    champion = report["champion_bits_per_byte"]
    print(
        f"promote: version {report['candidate_version']} -> {report['decision']} "
        f"({report['candidate_bits_per_byte']:.4f} bits per byte vs champion "
        f"{'none' if champion is None else f'{champion:.4f}'}): {report['reason']}"
    )
