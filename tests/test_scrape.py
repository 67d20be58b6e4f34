"""The scrape stage reads local sources into documents with provenance."""

import json

import pytest

from mlproject.config import ConfigError, ScrapeConfig, Source
from mlproject.data.scrape import scrape, split_fortunes
from tests.conftest import SAMPLE_CORPUS, paths_in


def test_fortunes_entries_split_on_percent_lines():
    text = "Uno\ndos líneas\n%\nTres\n%\n\n%\nCuatro\n"
    assert split_fortunes(text) == ["Uno\ndos líneas", "Tres", "Cuatro"]


def test_documents_carry_provenance(tmp_path):
    source = Source(name="refranes", location=SAMPLE_CORPUS.as_uri(), licence="public domain")
    report = scrape(
        ScrapeConfig(sources=[source]),
        paths_in(tmp_path, raw_documents=tmp_path / "docs.jsonl", scrape_report="report.json", http_cache="cache"),
    )
    documents = [json.loads(line) for line in (tmp_path / "docs.jsonl").read_text().splitlines()]
    assert report["documents"] == len(documents) == 700
    first = documents[0]
    assert first["text"] == "A año tuerto, el huerto."
    assert first["source"] == "refranes" and first["licence"] == "public domain"
    assert first["url"] == SAMPLE_CORPUS.as_uri() and first["fetched_at"]
    assert len(first["sha256"]) == 64 and len({d["id"] for d in documents}) == 700


def test_folder_include_and_exclude(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "off").mkdir(parents=True)
    (folder / "a.fortunes").write_text("uno\n%\ndos\n")
    (folder / "a.fortunes.dat").write_bytes(b"\x00\x01")
    (folder / "off" / "b.fortunes").write_text("fuera\n")
    source = Source(name="s", location=str(folder), include=["*.fortunes"], exclude=["off/*"])
    report = scrape(
        ScrapeConfig(sources=[source]),
        paths_in(tmp_path, raw_documents=tmp_path / "d.jsonl", scrape_report="r.json", http_cache="cache"),
    )
    assert report["documents"] == 2


def scraped(tmp_path, name: str) -> list[dict]:
    source = Source(name="s", location=str(tmp_path / name))
    scrape(
        ScrapeConfig(sources=[source]),
        paths_in(tmp_path, raw_documents=tmp_path / "d.jsonl", scrape_report="r.json", http_cache="cache"),
    )
    return [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]


def test_a_latin1_file_is_read_whole_in_its_charset_not_cut_down(tmp_path):
    entries = [f"Año {i}: más leña al fuego, señor" for i in range(50)] + ["bueno", "malo"]
    (tmp_path / "latin1.txt").write_bytes("\n%\n".join(entries).encode("latin-1"))
    documents = scraped(tmp_path, "latin1.txt")
    assert [d["text"] for d in documents] == entries
    assert all(d["charset"] == "cp1252" and "encoding_error" not in d for d in documents)


def test_bad_bytes_in_a_utf8_file_are_flagged_per_document_not_dropped(tmp_path):
    (tmp_path / "mixed.txt").write_bytes(
        "Año de nieves\n%\n".encode() + "año de bienes".encode("latin-1") + "\n%\nbueno\n".encode()
    )
    documents = scraped(tmp_path, "mixed.txt")
    assert [d["text"] for d in documents] == ["Año de nieves", "a\ufffdo de bienes", "bueno"]
    assert "not valid UTF-8" in documents[1]["encoding_error"]
    assert "encoding_error" not in documents[0] and "charset" not in documents[0]


def test_missing_source_names_it_and_keeps_earlier_output(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(ConfigError, match="'gone'.location: .*does not exist"):
        scrape(
            ScrapeConfig(sources=[Source(name="gone", location=str(tmp_path / "missing"))]),
            paths_in(tmp_path, raw_documents=out, scrape_report="r.json", http_cache="cache"),
        )
    assert out.read_text() == "earlier\n"
