"""Validate stage: a Great Expectations suite splits documents into accepted and rejected.

Per-document expectations mark documents to reject (each with a one-line reason); corpus-level
expectations then decide whether what is accepted can train a model at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from mlproject.config import Paths, StageFailed, ValidateConfig
from mlproject.data.data_docs import make_offline
from mlproject.data.language import identify
from mlproject.data.text import BOILERPLATE, foreign_share, markup_per_1000_chars, normalise
from mlproject.fileio import read_jsonl, write_json, write_jsonl


class CorpusRejected(StageFailed):
    """What was accepted cannot train a model; the message says why in one line."""


def other_language(text: str, config: ValidateConfig) -> str | None:
    """'<language> (<probability>)' when a long enough document is identified, confidently enough,
    as a language other than the expected ones; None otherwise."""
    if not config.languages or len(text) < config.language_min_chars:
        return None
    language, probability = identify(text)
    if language in config.languages or probability < config.language_min_confidence:
        return None
    return f"{language} ({probability:.2f})"


def document_frame(documents: list[dict], config: ValidateConfig) -> pd.DataFrame:
    """One row per document with the derived columns the expectations read."""
    seen: dict[str, str] = {}
    duplicate_of = []
    for document in documents:
        key = normalise(document["text"])
        duplicate_of.append(seen.get(key) if key else None)
        seen.setdefault(key, document["id"])
    return pd.DataFrame(
        {
            "id": [d["id"] for d in documents],
            "text": [d["text"].strip() for d in documents],
            "encoding_error": [d.get("encoding_error") for d in documents],
            "duplicate_of": duplicate_of,
            "markup_per_1000_chars": [markup_per_1000_chars(d["text"].strip()) for d in documents],
            "foreign_share": [foreign_share(d["text"], config.languages) for d in documents],
            "other_language": [other_language(d["text"].strip(), config) for d in documents],
        }
    )


def document_expectations(config: ValidateConfig):
    import great_expectations as gx

    E = gx.expectations
    expected = "/".join(config.languages) or "any"
    return [
        E.ExpectColumnValuesToBeNull(
            column="encoding_error", meta={"reason": "not valid UTF-8: bytes were replaced, the text is corrupt"}
        ),
        E.ExpectColumnValuesToNotMatchRegex(column="text", regex="^$", meta={"reason": "empty: nothing to learn from"}),
        E.ExpectColumnValueLengthsToBeBetween(
            column="text",
            min_value=config.min_chars,
            max_value=config.max_chars,
            meta={
                "reason": f"length outside {config.min_chars}..{config.max_chars} characters "
                "(validate.min_chars, validate.max_chars)"
            },
        ),
        E.ExpectColumnValuesToBeNull(
            column="duplicate_of", meta={"reason": "duplicate of an earlier document: repeats overweight one text"}
        ),
        E.ExpectColumnValuesToBeBetween(
            column="markup_per_1000_chars",
            max_value=config.max_markup_per_1000_chars,
            meta={
                "reason": f"markup or HTML residue: more than {config.max_markup_per_1000_chars} tags or entities per "
                "1,000 characters (validate.max_markup_per_1000_chars) would be learnt as text"
            },
        ),
        E.ExpectColumnValuesToNotMatchRegexList(
            column="text",
            regex_list=[f"(?m){p}" for p in BOILERPLATE],
            meta={"reason": "boilerplate (cookie banner, navigation, newsletter): not the author's text"},
        ),
        E.ExpectColumnValuesToBeBetween(
            column="foreign_share",
            max_value=config.max_foreign_share,
            meta={
                "reason": f"more than {config.max_foreign_share:.0%} of characters outside the "
                f"{expected} alphabet (validate.max_foreign_share): wrong language or junk"
            },
        ),
        E.ExpectColumnValuesToBeNull(
            column="other_language",
            meta={
                "reason": f"written in another language than {expected} (validate.language)",
                "detail": "identified as",
            },
        ),
    ]


def corpus_expectations(config: ValidateConfig):
    import great_expectations as gx

    E = gx.expectations
    return [
        E.ExpectColumnSumToBeBetween(
            column="accepted",
            min_value=config.min_documents,
            meta={"reason": f"fewer than {config.min_documents} accepted documents (validate.min_documents)"},
        ),
        E.ExpectColumnSumToBeBetween(
            column="accepted_chars",
            min_value=config.min_corpus_chars,
            meta={"reason": f"fewer than {config.min_corpus_chars} accepted characters (validate.min_corpus_chars)"},
        ),
        E.ExpectColumnMeanToBeBetween(
            column="duplicate",
            max_value=config.max_duplicate_share,
            meta={
                "reason": f"more than {config.max_duplicate_share:.0%} of documents are duplicates "
                "(validate.max_duplicate_share): the source repeats itself"
            },
        ),
    ]


def run_suite(context, name: str, expectations, frame: pd.DataFrame):
    """Validate `frame` against a suite through a checkpoint that also updates the Data Docs."""
    import great_expectations as gx

    source = context.data_sources.add_or_update_pandas(name)
    batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    suite = context.suites.add_or_update(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    suite.save()
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={"result_format": "COMPLETE"},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(result.run_results.values())).results


def reasons_by_row(results, frame: pd.DataFrame) -> dict[int, list[tuple[str, str]]]:
    """Each rejected row's reasons, as (the expectation's reason, what the row is told): an
    expectation with a `detail` adds the row's own value (the language a document was identified
    as, and how sure)."""
    reasons: dict[int, list[tuple[str, str]]] = {}
    for result in results:
        meta, column = result.expectation_config.meta, result.expectation_config.kwargs["column"]
        for index in result.result.get("unexpected_index_list") or []:
            detail = f": {meta['detail']} {frame[column][index]}" if "detail" in meta else ""
            reasons.setdefault(index, []).append((meta["reason"], meta["reason"] + detail))
    return reasons


def open_context(workdir: Path):
    import great_expectations as gx

    context = gx.get_context(mode="file", project_root_dir=str(workdir))
    context.variables.progress_bars = {"globally": False}
    return context


def validate(config: ValidateConfig, paths: Paths) -> dict:
    """Split documents into accepted and rejected files; raise CorpusRejected if too little is left."""
    documents_path, rejected_path = paths.raw_documents, paths.rejected_documents
    documents = read_jsonl(documents_path)
    if not documents:
        raise CorpusRejected(f"{documents_path}: no documents to validate; has scrape found any? (see its report)")
    frame = document_frame(documents, config)
    with tempfile.TemporaryDirectory(prefix="gx-") as workdir:
        context = open_context(Path(workdir))
        reasons = reasons_by_row(run_suite(context, "documents", document_expectations(config), frame), frame)
        accepted_rows = [i for i in range(len(documents)) if i not in reasons]
        is_accepted = frame.index.isin(accepted_rows).astype(int)
        corpus = pd.DataFrame(
            {
                "accepted": is_accepted,
                "accepted_chars": frame["text"].str.len() * is_accepted,
                "duplicate": frame["duplicate_of"].notna().astype(int),
            }
        )
        corpus_results = run_suite(context, "corpus", corpus_expectations(config), corpus)
        publish_data_docs(Path(workdir), Path(paths.data_docs))
    accepted = [documents[i] for i in accepted_rows]
    rejected = [{**documents[i], "reasons": [told for _, told in reasons[i]]} for i in sorted(reasons)]
    corpus_failures = [r.expectation_config.meta["reason"] for r in corpus_results if not r.success]
    report = {
        "documents": len(documents),
        "accepted": len(accepted),
        "rejected": len(rejected),
        "accepted_characters": int(corpus["accepted_chars"].sum()),
        "duplicate_share": float(corpus["duplicate"].mean()) if len(corpus) else 0.0,
        "rejected_by_reason": dict(Counter(reason for row in reasons.values() for reason, _ in row)),
        "corpus_checks_failed": corpus_failures,
    }
    assert report["accepted"] + report["rejected"] == report["documents"]
    # The rejected file and the report explain a failure, so they are written either way; the
    # accepted file is only replaced when it can train a model.
    write_jsonl(rejected_path, rejected)
    write_json(paths.validation_report, report)
    if corpus_failures:
        raise CorpusRejected(
            f"{documents_path}: {len(accepted)} of {len(documents)} documents accepted, which "
            f"cannot train a model: {corpus_failures[0]}; rejected documents and reasons are in "
            f"{rejected_path}"
        )
    write_jsonl(paths.accepted_documents, accepted)
    return report


def publish_data_docs(workdir: Path, target: Path) -> None:
    """Move the freshly built Data Docs site, made to open offline, into place in one rename."""
    site = workdir / "gx" / "uncommitted" / "data_docs" / "local_site"
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(site, staging)
    make_offline(staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
