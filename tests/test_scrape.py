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
    report = scrape(ScrapeConfig(sources=[source]), paths_in(tmp_path, raw_documents=tmp_path / "docs.jsonl", scrape_report="report.json", http_cache="cache"))
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
    report = scrape(ScrapeConfig(sources=[source]), paths_in(tmp_path, raw_documents=tmp_path / "d.jsonl", scrape_report="r.json", http_cache="cache"))
    assert report["documents"] == 2


def test_non_utf8_file_is_flagged_not_dropped(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("Año de nieves\n%\nbueno\n".encode("latin-1"))
    source = Source(name="s", location=str(tmp_path / "latin1.txt"))
    scrape(ScrapeConfig(sources=[source]), paths_in(tmp_path, raw_documents=tmp_path / "d.jsonl", scrape_report="r.json", http_cache="cache"))
    documents = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert "not valid UTF-8" in documents[0]["encoding_error"]
    assert "encoding_error" not in documents[1]


def test_missing_source_names_it_and_keeps_earlier_output(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text("earlier\n")
    with pytest.raises(ConfigError, match="'gone'.location: .*does not exist"):
        scrape(ScrapeConfig(sources=[Source(name="gone", location=str(tmp_path / "missing"))]), paths_in(tmp_path, raw_documents=out, scrape_report="r.json", http_cache="cache"))
    assert out.read_text() == "earlier\n"
