"""Scrape stage: collect documents from the configured sources into one JSONL with provenance.

Each source kind is a function yielding documents; `READERS` maps a kind to it, so the HTTP
kinds (url, gutenberg, crawl) slot in beside `files` without touching the rest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlproject.config import ConfigError, Source
from mlproject.fileio import write_json, write_jsonl


def local_path(location: str) -> Path:
    """A filesystem path from a plain path or a file:// URL."""
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if "://" in location:
        raise ConfigError(f"{location}: only local paths and file:// URLs are supported by kind 'files'")
    return Path(location)


def check_utf8(text: str) -> tuple[str, str | None]:
    """Text read with surrogateescape: itself and None if it was valid UTF-8, else the text with
    U+FFFD in place of the bad bytes and a one-line reason (validate rejects it, keeping it)."""
    try:
        text.encode("utf-8")
        return text, None
    except UnicodeEncodeError as error:
        repaired = text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        return repaired, f"not valid UTF-8 (first bad byte at character {error.start})"


def split_fortunes(text: str) -> list[str]:
    """Entries of a fortunes file: blocks separated by lines holding only '%'."""
    entries, current = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append("\n".join(current))
            current = []
        else:
            current.append(line)
    entries.append("\n".join(current))
    return [entry.strip() for entry in entries if entry.strip()]


def split_documents(text: str, fmt: str) -> list[tuple[str, str | None]]:
    """(text, title) pairs of one file in the given format."""
    if fmt == "fortunes":
        return [(entry, None) for entry in split_fortunes(text)]
    if fmt == "jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [(str(row.get("text", "")), row.get("title")) for row in rows]
    return [(text.strip(), None)]


def matching_files(root: Path, include: list, exclude: list) -> list[Path]:
    if root.is_file():
        return [root]
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if any(fnmatch.fnmatch(relative, pattern) for pattern in include) and not any(
                fnmatch.fnmatch(relative, pattern) for pattern in exclude):
            files.append(path)
    return files


def read_files(source: Source, fetched_at: str) -> Iterator[dict]:
    root = local_path(source.location)
    if not root.exists():
        raise ConfigError(f"scrape.sources '{source.name}'.location: {root} does not exist")
    for path in matching_files(root, source.include, source.exclude):
        # Decoding per document keeps one bad entry from condemning the rest of its file.
        text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        for index, (body, title) in enumerate(split_documents(text, source.format)):
            body, encoding_error = check_utf8(body)
            yield make_document(source, f"{path}#{index}", path.as_uri(), title or path.stem,
                                body, fetched_at, encoding_error)


def make_document(source: Source, locator: str, url: str, title: str, text: str, fetched_at: str,
                  encoding_error: str | None) -> dict:
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    document = {
        "id": hashlib.sha256(f"{source.name}\0{locator}".encode()).hexdigest()[:16],
        "source": source.name, "url": url, "locator": locator, "title": title, "text": text,
        "fetched_at": fetched_at, "sha256": sha256, "licence": source.licence,
    }
    if encoding_error:
        document["encoding_error"] = encoding_error
    return document


READERS = {"files": read_files}


def scrape(sources: list[Source], documents_path: str, report_path: str) -> dict:
    """Read every source, write all documents and a per-source report; return the report."""
    fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    documents, per_source = [], {}
    for source in sources:
        found = list(READERS[source.kind](source, fetched_at))
        per_source[source.name] = {"kind": source.kind, "location": source.location,
                                   "documents": len(found),
                                   "characters": sum(len(d["text"]) for d in found),
                                   "encoding_errors": sum("encoding_error" in d for d in found)}
        documents.extend(found)
    if not documents:
        names = ", ".join(s.name for s in sources)
        raise ConfigError(f"scrape.sources ({names}): no documents found; check location and include")
    report = {"documents": len(documents), "characters": sum(len(d["text"]) for d in documents),
              "fetched_at": fetched_at, "sources": per_source}
    write_jsonl(documents_path, documents)
    write_json(report_path, report)
    return report
