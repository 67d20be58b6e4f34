"""`mlproject tokenize`: the vocabulary and the train/validation split by document hash."""

from mlproject.config import Params


def run(params: Params, args) -> None:
    from mlproject.data.tokens import tokenize

    summary = tokenize(params.tokenize, params.paths)
    print(
        f"tokenize: {summary['level']} vocabulary of {summary['vocabulary']}, "
        f"{summary['training_tokens']} training tokens, {summary['validation_characters']} "
        f"validation characters ({summary['validation_documents']} documents) -> {params.paths.tokens}"
    )
