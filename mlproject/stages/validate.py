"""`mlproject validate`: the Great Expectations suite splits documents into accepted and rejected."""

from pathlib import Path

from mlproject.config import Params


def run(params: Params, args) -> None:
    from mlproject.data.validate import validate

    p = params.paths
    report = validate(params.validate, p)
    print(
        f"validate: {report['accepted']} accepted, {report['rejected']} rejected "
        f"{report['rejected_by_reason'] or ''} -> {p.accepted_documents}; Data Docs: "
        f"{Path(p.data_docs) / 'index.html'}"
    )
