"""Scrape stage: collect documents from the configured sources into one JSONL with provenance.

Each source kind is a reader yielding documents (`READERS`): local files, one URL, a Project
Gutenberg book, or a crawl. HTTP goes through one polite fetcher; every URL ends in the report
with its outcome, and a journal lets a killed run resume without fetching stored pages again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote, urlparse, urlsplit

from mlproject.config import ConfigError, Paths, ScrapeConfig, Source, StageFailed
from mlproject.data.extract import extract, gutenberg_title, links, strip_gutenberg, title_of, words
from mlproject.data.fetch import Page, PageCache, PoliteFetcher, decode_body
from mlproject.data.fidelity import Recall, recall
from mlproject.data.text import normalise
from mlproject.fileio import read_jsonl, write_json, write_jsonl

GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/{id}/pg{id}.txt"
HTML_TYPES = ("text/html", "application/xhtml+xml")
SETTLED = ("fetched", "not_modified", "skipped_robots")


class ScrapeFailed(StageFailed):
    """Too many URLs failed; the message names them."""


# -- local files -------------------------------------------------------------------------------


def local_path(location: str) -> Path:
    """A filesystem path from a plain path or a file:// URL."""
    if location.startswith("file://"):
        return Path(unquote(urlparse(location).path))
    if "://" in location:
        raise ConfigError(f"{location}: kind 'files' reads local paths and file:// URLs; use kind url")
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


# A UTF-8 multi-byte sequence: in a file holding one, bytes that are not UTF-8 are damage (flagged
# per document); a file holding none and not UTF-8 is in a single-byte code page.
UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def read_local_text(raw: bytes) -> tuple[str, str]:
    """A local file's text and the charset it was read with: UTF-8 where it is UTF-8 or holds some
    (bad bytes stay escaped for `check_utf8` to flag); otherwise a single-byte file (Latin-1,
    Windows-1252...) read as an unlabelled web page is, so none of its text is lost."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        if UTF8_SEQUENCE.search(raw):
            return raw.decode("utf-8", errors="surrogateescape"), "utf-8"
    return decode_body(raw, "text/plain")


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
    if fmt == "paragraphs":
        return [(block.strip(), None) for block in re.split(r"\n\s*\n", text) if block.strip()]
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
            fnmatch.fnmatch(relative, pattern) for pattern in exclude
        ):
            files.append(path)
    return files


# -- one scrape run ----------------------------------------------------------------------------


class Journal:
    """URLs settled by a run that did not finish; a rerun takes them from the cache, unrequested."""

    def __init__(self, path: Path):
        self.path = path
        self.settled = {row["url"]: row for row in read_jsonl(path)} if path.is_file() else {}

    def record(self, page: Page) -> None:
        if page.outcome in SETTLED:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(page.record()) + "\n")

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Harvest:
    """The state of one scrape run: the fetcher, the journal and a record of every URL."""

    config: ScrapeConfig
    cache_dir: Path
    fetched_at: str
    records: list = field(default_factory=list)

    def __post_init__(self):
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.cache = PageCache(self.cache_dir)
        self.fetcher = PoliteFetcher(self.config.http, self.cache)
        self.journal = Journal(self.cache_dir / "journal.jsonl")

    def get(self, source: Source, url: str) -> Page:
        earlier = self.journal.settled.get(url)
        resumed = bool(earlier) and (earlier["outcome"] == "skipped_robots" or self.cache.get(url) is not None)
        if resumed:
            page = self._from_cache(earlier)
        else:
            page = self.fetcher.fetch(url, headers_from_env(source))
            self.journal.record(page)
        self.records.append({"source": source.name, **page.record(), "resumed": resumed})
        return page

    def _from_cache(self, record: dict) -> Page:
        cached = self.cache.get(record["url"])
        text = cached[1].decode(record["charset"], errors="replace") if cached else ""
        return Page(**record, text=text)

    def extracted(self, page: Page, extraction) -> None:
        """What extraction did to the page just got: its record gains the characters kept and
        dropped and the word recall (mlproject/data/fidelity.py)."""
        record = self.records[-1]
        assert record["url"] == page.url
        found = recall(extraction.reference, words(extraction.text))
        record.update(
            kept_chars=extraction.kept_chars,
            dropped_chars=extraction.dropped_chars,
            body_words=found.total,
            body_words_found=found.found,
        )

    def skip(self, source: Source, url: str, reason: str) -> None:
        self.records.append(
            {"source": source.name, "url": url, "outcome": "not_visited", "reason": reason, "resumed": False}
        )


def headers_from_env(source: Source) -> dict:
    headers = {}
    for header, variable in source.headers_from_env.items():
        if variable not in os.environ:
            raise ConfigError(
                f"scrape.sources '{source.name}'.headers_from_env.{header}: environment variable {variable} is not set"
            )
        headers[header] = os.environ[variable]
    return headers


def make_document(
    source: Source, locator: str, url: str, title: str, text: str, fetched_at: str, encoding_error: str | None = None
) -> dict:
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    document = {
        "id": hashlib.sha256(f"{source.name}\0{locator}".encode()).hexdigest()[:16],
        "source": source.name,
        "url": url,
        "locator": locator,
        "title": title,
        "text": text,
        "fetched_at": fetched_at,
        "sha256": sha256,
        "licence": source.licence,
    }
    if encoding_error:
        document["encoding_error"] = encoding_error
    return document


def page_documents(source: Source, page: Page, harvest: Harvest) -> list[dict]:
    """An HTML page is one document (its main text); a text file splits by the source's format.
    An unchanged page keeps the time it was first downloaded, so a rescrape that finds nothing
    new writes the very same documents and DVC reruns nothing downstream."""
    fetched_at = page.fetched_at or harvest.fetched_at
    if page.content_type in HTML_TYPES:
        extraction = extract(page.text, source.selector)
        harvest.extracted(page, extraction)
        return [make_document(source, page.url, page.final_url, title_of(page.text), extraction.text, fetched_at)]
    return [
        make_document(source, f"{page.url}#{i}", page.final_url, title or "", body, fetched_at)
        for i, (body, title) in enumerate(split_documents(page.text, source.format))
    ]


# -- the source kinds ----------------------------------------------------------------------------


def read_files(source: Source, harvest: Harvest) -> Iterator[dict]:
    root = local_path(source.location)
    if not root.exists():
        raise ConfigError(f"scrape.sources '{source.name}'.location: {root} does not exist")
    for path in matching_files(root, source.include, source.exclude):
        # Checking per document keeps one bad entry from condemning the rest of its file.
        text, charset = read_local_text(path.read_bytes())
        if charset != "utf-8":
            print(f"scrape: {path} is not UTF-8; read as {charset}", flush=True)
        for index, (body, title) in enumerate(split_documents(text, source.format)):
            body, encoding_error = check_utf8(body)
            document = make_document(
                source, f"{path}#{index}", path.as_uri(), title or path.stem, body, harvest.fetched_at, encoding_error
            )
            yield document if charset == "utf-8" else {**document, "charset": charset}


def read_url(source: Source, harvest: Harvest) -> Iterator[dict]:
    page = harvest.get(source, source.location)
    if page.outcome in ("fetched", "not_modified"):
        yield from page_documents(source, page, harvest)


def read_gutenberg(source: Source, harvest: Harvest) -> Iterator[dict]:
    location = source.location.strip()
    url = location if "://" in location else GUTENBERG_URL.format(id=location)
    page = harvest.get(source, url)
    if page.outcome in ("fetched", "not_modified"):
        title = gutenberg_title(page.text) or f"Project Gutenberg {location}"
        for index, (body, _) in enumerate(split_documents(strip_gutenberg(page.text), source.format)):
            yield make_document(
                source, f"{url}#{index}", page.final_url, title, body, page.fetched_at or harvest.fetched_at
            )


def read_crawl(source: Source, harvest: Harvest) -> Iterator[dict]:
    """Breadth first from the seeds, on allowed hosts, through links that match `follow`."""
    from tqdm import tqdm

    domains = set(source.allowed_domains) or {urlsplit(seed).netloc for seed in source.seeds}
    patterns = [re.compile(pattern) for pattern in source.follow]
    queue, seen, visited = deque((seed, 0) for seed in source.seeds), set(source.seeds), 0
    with tqdm(total=source.max_pages, desc=f"crawl {source.name}", unit="page", disable=None) as bar:
        while queue and visited < source.max_pages:
            url, depth = queue.popleft()
            page = harvest.get(source, url)
            visited += 1
            bar.update(1)
            if page.outcome not in ("fetched", "not_modified"):
                continue
            yield from page_documents(source, page, harvest)
            if depth >= source.max_depth or page.content_type not in HTML_TYPES:
                continue
            for link in links(page.text, page.final_url):
                if (
                    link not in seen
                    and urlsplit(link).netloc in domains
                    and (not patterns or any(p.search(link) for p in patterns))
                ):
                    seen.add(link)
                    queue.append((link, depth + 1))
    for url, _ in queue:
        harvest.skip(source, url, f"max_pages ({source.max_pages}) reached")


READERS = {"files": read_files, "url": read_url, "gutenberg": read_gutenberg, "crawl": read_crawl}


# -- the stage ---------------------------------------------------------------------------------


def drop_duplicates(documents: list[dict]) -> tuple[list[dict], list[dict]]:
    """Documents with the same normalised text kept once; the others listed with the first's URL."""
    first: dict[str, dict] = {}
    kept, duplicates = [], []
    for document in documents:
        key = normalise(document["text"])
        if key and key in first:
            duplicates.append(
                {
                    "id": document["id"],
                    "url": document["url"],
                    "locator": document["locator"],
                    "duplicate_of": first[key]["url"],
                    "duplicate_of_id": first[key]["id"],
                }
            )
            continue
        first.setdefault(key, document)
        kept.append(document)
    return kept, duplicates


def extraction_summary(source: Source, records: list[dict]) -> dict:
    """For a source of HTML pages: characters kept and dropped, and the word recall of its pages
    (printed, so a bad extraction is seen before training on it). What the rules that judge
    navigation by its shape removed counts as missing: the figure is a floor."""
    pages = [r for r in records if r["source"] == source.name and "body_words" in r]
    if not pages:
        return {}
    per_page = {r["url"]: Recall(r["body_words_found"], r["body_words"]) for r in pages}
    total = sum(per_page.values(), Recall())
    lowest = min(per_page, key=lambda url: per_page[url].share)
    print(
        f"scrape: {source.name}: {len(pages)} HTML pages, word recall {total.share:.2%}: "
        f"{total.missing} of {total.total} words of the paragraphs, list items and captions in their "
        f"main content are not in the documents (lowest {per_page[lowest].share:.2%}: {lowest})",
        flush=True,
    )
    return {
        "html_pages": len(pages),
        "kept_chars": sum(r["kept_chars"] for r in pages),
        "dropped_chars": sum(r["dropped_chars"] for r in pages),
        "body_words": total.total,
        "body_words_missing": total.missing,
        "word_recall": round(total.share, 5),
    }


def check_failures(records: list[dict], max_share: float, report_path: str) -> None:
    attempted = [r for r in records if r["outcome"] != "not_visited"]
    failed = [r for r in attempted if r["outcome"] == "failed"]
    if attempted and len(failed) / len(attempted) > max_share:
        named = "; ".join(f"{r['url']} ({r['reason']})" for r in failed[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise ScrapeFailed(
            f"{len(failed)} of {len(attempted)} URLs failed, more than "
            f"scrape.http.max_failed_share ({max_share}): {named}{more}; see {report_path}"
        )


def scrape(config: ScrapeConfig, paths: Paths) -> dict:
    """Read every source, write the documents and a report of every source and URL; return it."""
    documents_path, report_path = paths.raw_documents, paths.scrape_report
    harvest = Harvest(config, Path(paths.http_cache), datetime.now(timezone.utc).isoformat(timespec="seconds"))
    collected, per_source = [], {}
    for source in config.sources:
        found = list(READERS[source.kind](source, harvest))
        per_source[source.name] = {
            "kind": source.kind,
            "documents": len(found),
            "characters": sum(len(d["text"]) for d in found),
            "encoding_errors": sum("encoding_error" in d for d in found),
            **extraction_summary(source, harvest.records),
        }
        collected.extend(found)
    documents, duplicates = drop_duplicates(collected)
    report = {
        "documents": len(documents),
        "characters": sum(len(d["text"]) for d in documents),
        "fetched_at": harvest.fetched_at,
        "sources": per_source,
        "urls": dict(Counter(r["outcome"] for r in harvest.records)),
        "requests_sent": harvest.fetcher.requests_sent,
        "duplicates": duplicates,
        "pages": harvest.records,
    }
    write_json(report_path, report)
    check_failures(harvest.records, config.http.max_failed_share, report_path)
    if not documents:
        names = ", ".join(s.name for s in config.sources)
        raise ConfigError(f"scrape.sources ({names}): no documents found; see {report_path}")
    write_jsonl(documents_path, documents)
    harvest.journal.finish()
    return report
