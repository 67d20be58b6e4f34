"""`mlproject evaluate`: the trained model's figures on the validation text, and sample generations."""

from mlproject.config import EvaluateConfig, Params, Paths
from mlproject.fileio import write_json, write_jsonl


def evaluate(config: EvaluateConfig, seed: int, paths: Paths) -> tuple[dict, list[dict]]:
    from mlproject.models import kinds
    from mlproject.models.evaluation import sample_rows, score_validation_by_document

    model = kinds.load(paths.model)
    metrics, documents = score_validation_by_document(model, paths.tokens, config)
    baseline = model.baseline or {}
    if all(
        baseline.get(k) == v
        for k, v in [
            ("validation_md5", metrics["validation_md5"]),
            ("window", config.window),
            ("stride", config.stride),
        ]
    ):
        metrics["zero_shot_bits_per_byte"] = baseline["bits_per_byte"]  # before training, same text
    samples = sample_rows(model, config, seed)
    write_json(paths.document_scores, documents)
    write_json(paths.metrics, metrics)
    write_jsonl(paths.samples, samples)
    return metrics, samples


def run(params: Params, args) -> None:
    p = params.paths
    metrics, samples = evaluate(params.evaluate, params.seed, p)
    print(
        f"evaluate: {metrics['bits_per_character']:.4f} bits per character, "
        f"{metrics['bits_per_byte']:.4f} bits per byte, perplexity {metrics['perplexity']:.3f} "
        f"per {metrics['level']} over {metrics['characters']} characters -> {p.metrics}"
    )
    if "zero_shot_bits_per_byte" in metrics:
        print(
            f"evaluate: the base model scored {metrics['zero_shot_bits_per_byte']:.4f} bits per byte "
            "before training (zero-shot)"
        )
    for sample in samples:
        print(f"  T={sample['temperature']}: {(sample['prompt'] + sample['text'])[:100]!r}")
