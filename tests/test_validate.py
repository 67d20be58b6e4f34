"""Great Expectations splits documents into accepted and rejected, keeping every reason."""

import json
import re

import pytest

from mlproject.config import ValidateConfig
from mlproject.data.validate import CorpusRejected, validate
from mlproject.fileio import write_jsonl
from tests.conftest import paths_in


def doc(i, text, **extra):
    return {"id": f"d{i}", "text": text, "sha256": str(i), **extra}


def run_validate(tmp_path, documents, config):
    write_jsonl(tmp_path / "raw.jsonl", documents)
    paths = [tmp_path / n for n in ("accepted.jsonl", "rejected.jsonl", "report.json", "docs")]
    layout = paths_in(
        tmp_path,
        raw_documents="raw.jsonl",
        accepted_documents=paths[0],
        rejected_documents=paths[1],
        validation_report=paths[2],
        data_docs=paths[3],
    )
    return validate(config, layout), paths


def test_rejected_documents_are_kept_with_reasons(tmp_path):
    good = [doc(i, f"Refrán número {i}, bien dicho.") for i in range(20)]
    bad = [
        doc(100, ""),
        doc(101, "x" * 300),
        doc(102, "Refrán número 3,  BIEN dicho."),
        doc(103, "A\ufffdo", encoding_error="not valid UTF-8 (first bad byte at offset 1)"),
    ]
    config = ValidateConfig(min_chars=2, max_chars=200, min_documents=5, min_corpus_chars=100)
    report, (accepted, rejected, report_path, docs) = run_validate(tmp_path, good + bad, config)
    assert report["documents"] == 24 and report["accepted"] == 20 and report["rejected"] == 4
    reasons = {r["id"]: r["reasons"] for r in map(json.loads, rejected.read_text().splitlines())}
    assert any("empty" in r for r in reasons["d100"])
    assert any("length outside 2..200" in r for r in reasons["d101"])
    assert any("duplicate" in r for r in reasons["d102"])
    assert any("not valid UTF-8" in r for r in reasons["d103"])
    assert len(accepted.read_text().splitlines()) == 20
    assert json.loads(report_path.read_text())["rejected_by_reason"]
    assert (docs / "index.html").is_file()


def test_corpus_too_small_fails_with_one_line_and_keeps_accepted_file(tmp_path):
    (tmp_path / "accepted.jsonl").write_text("earlier\n")
    documents = [doc(i, f"Frase {i} corta") for i in range(3)]
    config = ValidateConfig(min_documents=10, min_corpus_chars=10)
    with pytest.raises(CorpusRejected) as error:
        run_validate(tmp_path, documents, config)
    assert "3 of 3 documents accepted" in str(error.value) and "validate.min_documents" in str(error.value)
    assert "\n" not in str(error.value)
    assert (tmp_path / "accepted.jsonl").read_text() == "earlier\n"


def test_all_non_utf8_corpus_is_rejected(tmp_path):
    documents = [doc(i, "A\ufffdo", encoding_error="not valid UTF-8") for i in range(12)]
    with pytest.raises(CorpusRejected, match="0 of 12 documents accepted"):
        run_validate(tmp_path, documents, ValidateConfig(min_documents=1, min_corpus_chars=1))
    assert len((tmp_path / "rejected.jsonl").read_text().splitlines()) == 12


def test_web_junk_is_rejected_with_its_reason(tmp_path):
    good = [doc(i, f"Refrán número {i}: más vale tarde que nunca, dice la abuela.") for i in range(12)]
    junk = [
        doc(200, "Texto con <div class='x'>etiquetas</div> sin limpiar."),
        doc(201, "Texto con &nbsp; entidades sueltas."),
        doc(202, "Utilizamos cookies para mejorar su experiencia. Aceptar cookies."),
        doc(203, "Inicio | Noticias | Contacto"),
        doc(204, "Это совсем не испанский текст, а русский."),
    ]
    config = ValidateConfig(min_documents=5, min_corpus_chars=100, language="es")
    report, (_, rejected, _, _) = run_validate(tmp_path, good + junk, config)
    reasons = {r["id"]: " ".join(r["reasons"]) for r in map(json.loads, rejected.read_text().splitlines())}
    assert "markup" in reasons["d200"] and "markup" in reasons["d201"]
    assert "boilerplate" in reasons["d202"] and "boilerplate" in reasons["d203"]
    assert "alphabet" in reasons["d204"]
    assert report["accepted"] == 12 and set(reasons) == {"d200", "d201", "d202", "d203", "d204"}
    assert sum(report["rejected_by_reason"].values()) == 5


def test_a_corpus_of_duplicates_fails(tmp_path):
    documents = [doc(i, "Siempre el mismo refrán repetido.") for i in range(6)] + [
        doc(10 + i, f"Refrán distinto número {i}.") for i in range(3)
    ]
    config = ValidateConfig(min_documents=1, min_corpus_chars=10, max_duplicate_share=0.3)
    with pytest.raises(CorpusRejected, match="documents are duplicates"):
        run_validate(tmp_path, documents, config)


SPANISH = [
    "El viento del norte trajo lluvia durante toda la semana, y los campesinos celebraron que "
    "por fin los pozos volvieran a llenarse después de tres años de sequía.",
    "La biblioteca municipal abrirá sus puertas también los domingos, para que quienes trabajan "
    "entre semana puedan pedir prestados libros y leer el periódico con calma.",
    "Mi abuela decía que quien madruga encuentra el pan todavía caliente en la panadería de la "
    "esquina, y que por eso nunca se quedaba dormida ni un solo día del año.",
]
ENGLISH = [
    "The northern wind brought rain for the whole week, and the farmers were glad that the wells "
    "were finally filling up again after three long years of drought.",
    "The city library will also open on Sundays, so that people who work during the week can "
    "borrow books and read the newspaper in peace and quiet.",
]


def test_documents_in_another_language_are_rejected_with_the_language_found(tmp_path):
    documents = (
        [doc(i, f"{text} ({i})") for i, text in enumerate(SPANISH * 4)]
        + [doc(100 + i, text) for i, text in enumerate(ENGLISH)]
        + [doc(200, "Good morning to you all.")]
    )  # too short to identify: alphabet check only
    config = ValidateConfig(min_documents=5, min_corpus_chars=100, language="es")
    report, (accepted, rejected, _, _) = run_validate(tmp_path, documents, config)
    reasons = {r["id"]: r["reasons"] for r in map(json.loads, rejected.read_text().splitlines())}
    assert set(reasons) == {"d100", "d101"}
    for reason in (reasons["d100"][0], reasons["d101"][0]):
        assert re.fullmatch(
            r"written in another language than es \(validate\.language\): "
            r"identified as en \((0\.[7-9]\d|1\.00)\)",
            reason,
        ), reason
    assert report["rejected_by_reason"] == {"written in another language than es (validate.language)": 2}
    assert "d200" in accepted.read_text()

    both = ValidateConfig(min_documents=5, min_corpus_chars=100, language=["es", "en"])
    report, _ = run_validate(tmp_path, documents, both)
    assert report["rejected"] == 0


def test_a_text_that_shows_a_few_entities_is_kept_and_residue_is_not(tmp_path):
    manual = " ".join(SPANISH) * 12 + " En XML, la entidad &quot; escribe unas comillas y &lt; el signo menor."
    residue = " ".join(SPANISH) + " <div class='pie'>Aviso</div> &nbsp;&nbsp; <span>Más</span>"
    documents = [doc(i, f"{text} ({i})") for i, text in enumerate(SPANISH * 4)] + [doc(300, manual), doc(301, residue)]
    config = ValidateConfig(min_documents=5, min_corpus_chars=100, max_chars=10000)
    report, (accepted, rejected, _, _) = run_validate(tmp_path, documents, config)
    assert '"d300"' in accepted.read_text()
    reasons = {r["id"]: r["reasons"] for r in map(json.loads, rejected.read_text().splitlines())}
    assert list(reasons) == ["d301"] and "validate.max_markup_per_1000_chars" in reasons["d301"][0]


def test_an_empty_corpus_is_one_line_and_overwrites_nothing(tmp_path):
    (tmp_path / "accepted.jsonl").write_text("earlier\n")
    with pytest.raises(CorpusRejected, match="raw.jsonl: no documents to validate") as error:
        run_validate(tmp_path, [], ValidateConfig())
    assert "\n" not in str(error.value)
    assert (tmp_path / "accepted.jsonl").read_text() == "earlier\n"
    assert not (tmp_path / "rejected.jsonl").exists() and not (tmp_path / "report.json").exists()
