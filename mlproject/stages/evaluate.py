"""`mlproject evaluate`: the trained model's figures on the validation text, sample generations and
what they show of its writing (copying, looping, language, length)."""

from pathlib import Path

from mlproject.config import EvaluateConfig, Params, Paths, StageFailed
from mlproject.fileio import write_json, write_jsonl


def evaluate(config: EvaluateConfig, seed: int, paths: Paths, languages: list[str] = ()) -> tuple[dict, list[dict]]:
    """`languages`: the corpus languages (validate.language) the samples should be written in."""
    from mlproject.data import word_ngrams
    from mlproject.models import kinds
    from mlproject.models.evaluation import sample_rows, score_validation_by_document
    from mlproject.models.writing import writing_figures

    if not Path(paths.word_ngrams).is_file():
        raise StageFailed(f"{paths.word_ngrams}: missing (the training text's word n-grams); run the tokenize stage")
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
    metrics["writing"] = writing_figures(
        [sample["text"] for sample in samples], word_ngrams.load(paths.word_ngrams), list(languages)
    )
    write_json(paths.document_scores, documents)
    write_json(paths.metrics, metrics)
    write_jsonl(paths.samples, samples)
    return metrics, samples


def run(params: Params, args) -> None:
    p = params.paths
    from mlproject.models.writing import words

    metrics, samples = evaluate(params.evaluate, params.seed, p, params.validate.languages)
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
    print(f"evaluate: the samples' writing: {words(metrics['writing'])}")
    for sample in samples:
        print(f"  T={sample['temperature']}: {(sample['prompt'] + sample['text'])[:100]!r}")
