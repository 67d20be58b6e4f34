"""Polite HTTP for the scrape stage: robots.txt, a delay per host, bounded retries, and a cache.

Every request of every source kind goes through one `PoliteFetcher`, so the same rules hold
everywhere: the user agent, the delay per host, connect and read timeouts, retries with exponential
backoff on timeouts, 429 and 5xx (honouring Retry-After), a redirect limit, a size limit, a
content-type check, and charset detection. Bodies are cached with their ETag and Last-Modified, so
a rerun sends conditional requests and downloads only what changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import requests

from mlproject.config import HttpConfig
from mlproject.fileio import write_json

REDIRECTS = {301, 302, 303, 307, 308}


class FetchError(Exception):
    """A URL that could not be had; the message is the one-line reason for the report."""


@dataclass(frozen=True)
class Page:
    url: str
    outcome: str  # fetched | not_modified | skipped_robots | failed
    reason: str = ""
    final_url: str = ""
    status: int | None = None
    content_type: str = ""
    charset: str = ""
    fetched_at: str = ""  # when these bytes were downloaded (kept while the server says not modified)
    text: str = ""

    def record(self) -> dict:
        """What the scrape report keeps of a page: everything but its text."""
        return {k: v for k, v in self.__dict__.items() if k != "text"}


class PageCache:
    """Bodies and their validators per URL, each written the moment its page arrives."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "pages"
        self.root.mkdir(parents=True, exist_ok=True)

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()
        return self.root / f"{key}.body", self.root / f"{key}.json"

    def get(self, url: str) -> tuple[dict, bytes] | None:
        body, meta = self._paths(url)
        if not (body.is_file() and meta.is_file()):
            return None
        return json.loads(meta.read_text()), body.read_bytes()

    def put(self, url: str, meta: dict, body: bytes) -> None:
        body_path, meta_path = self._paths(url)
        partial = body_path.with_suffix(".partial")
        partial.write_bytes(body)
        partial.replace(body_path)
        write_json(meta_path, meta)  # the metadata lands last: an entry without it is ignored


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either of its two forms (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


LATIN_SINGLE_BYTE = {
    "cp1250",
    "cp1252",
    "cp1254",
    "cp1257",
    "latin_1",
    "iso8859_2",
    "iso8859_3",
    "iso8859_4",
    "iso8859_9",
    "iso8859_10",
    "iso8859_13",
    "iso8859_14",
    "iso8859_15",
    "iso8859_16",
    "mac_roman",
    "mac_latin2",
    "cp850",
    "cp437",
    "cp858",
}
META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def decode_body(body: bytes, content_type: str) -> tuple[str, str]:
    """Text and the charset it was read with: the header's, then a <meta> tag's, then UTF-8,
    then a statistical guess (charset_normalizer), then Windows-1252 as the last resort."""
    import charset_normalizer

    declared = re.search(r"charset=([^\s;]+)", content_type, re.IGNORECASE)
    meta = META_CHARSET.search(body[:4096]) if "html" in content_type else None
    candidates = [
        declared.group(1).strip("\"'") if declared else None,
        meta.group(1).decode("ascii") if meta else None,
        "utf-8",
    ]
    for charset in filter(None, candidates):
        try:
            return body.decode(charset), charset.lower()
        except (LookupError, UnicodeDecodeError):
            continue
    guess = charset_normalizer.from_bytes(body).best()
    if guess is not None and guess.encoding not in LATIN_SINGLE_BYTE:
        return str(guess), guess.encoding
    # Among the single-byte Latin code pages a statistical guess is a coin toss (ñ in cp1252 is ń
    # in cp1250); an unlabelled Western page is windows-1252, as browsers read it.
    return body.decode("cp1252", errors="replace"), "cp1252"


class PoliteFetcher:
    def __init__(
        self, http: HttpConfig, cache: PageCache, headers: dict | None = None, session: requests.Session | None = None
    ):
        self.http, self.cache = http, cache
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": http.user_agent, **(headers or {})})
        self._last_request: dict[str, float] = {}
        self._robots: dict[str, tuple[RobotFileParser | None, str]] = {}
        self.requests_sent = 0

    # -- the rules ---------------------------------------------------------------------------
    def _wait_for_host(self, url: str) -> None:
        host = urlsplit(url).netloc
        robots, _ = self._robots.get(host, (None, ""))
        crawl_delay = (robots.crawl_delay(self.http.user_agent) if robots else None) or 0
        delay = max(self.http.delay_seconds, float(crawl_delay))
        if host in self._last_request:
            remaining = self._last_request[host] + delay - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
        self._last_request[host] = time.monotonic()

    def _request(self, url: str, headers: dict) -> requests.Response:
        """One GET with retries on timeouts, connection errors, 429 and 5xx."""
        reason = ""
        for attempt in range(self.http.max_retries + 1):
            self._wait_for_host(url)
            wait = self.http.backoff_seconds * 2**attempt
            try:
                self.requests_sent += 1
                response = self.session.get(
                    url,
                    headers=headers,
                    allow_redirects=False,
                    stream=True,
                    timeout=(self.http.connect_timeout, self.http.read_timeout),
                )
            except requests.Timeout:
                reason = f"timed out (connect {self.http.connect_timeout} s, read {self.http.read_timeout} s)"
            except requests.ConnectionError as error:
                reason = f"connection failed ({type(error).__name__})"
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                reason = f"HTTP {response.status_code}"
                wait = retry_after_seconds(response) or wait
                response.close()
            if attempt < self.http.max_retries:
                time.sleep(min(wait, self.http.max_retry_after))
        raise FetchError(f"{reason} after {self.http.max_retries + 1} attempts")

    def allowed(self, url: str) -> tuple[bool, str]:
        """robots.txt of the URL's host: 4xx means no rules; unreachable means stay away."""
        parts = urlsplit(url)
        if parts.netloc not in self._robots:
            robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
            try:
                response = self._request(robots_url, {})
                status, text = response.status_code, response.text
                response.close()
            except FetchError as error:
                status, text = None, str(error)
            if status is not None and 200 <= status < 300:
                parser = RobotFileParser(robots_url)
                parser.parse(text.splitlines())
                self._robots[parts.netloc] = (parser, "")
            elif status is not None and 400 <= status < 500:
                self._robots[parts.netloc] = (None, "")
            else:
                self._robots[parts.netloc] = (None, f"robots.txt unavailable ({text or status})")
        parser, problem = self._robots[parts.netloc]
        if problem:
            return False, problem
        if parser is not None and not parser.can_fetch(self.http.user_agent, url):
            return False, "disallowed by robots.txt"
        return True, ""

    def _read_limited(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.http.max_bytes:
            raise FetchError(f"larger than scrape.http.max_bytes ({declared} > {self.http.max_bytes} bytes)")
        chunks, size = [], 0
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > self.http.max_bytes:
                raise FetchError(f"larger than scrape.http.max_bytes (over {self.http.max_bytes} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- one URL -----------------------------------------------------------------------------
    def fetch(self, url: str, headers: dict | None = None) -> Page:
        """The page, or a Page whose outcome says why there is none; never raises for the web's faults."""
        try:
            return self._fetch(url, headers or {})
        except FetchError as error:
            return Page(url, "failed", str(error))

    def _fetch(self, url: str, extra: dict) -> Page:
        cached = self.cache.get(url)
        headers = dict(extra)
        if cached:
            if cached[0].get("etag"):
                headers["If-None-Match"] = cached[0]["etag"]
            if cached[0].get("last_modified"):
                headers["If-Modified-Since"] = cached[0]["last_modified"]
        current, chain = url, [url]
        for _ in range(self.http.max_redirects + 1):
            ok, why = self.allowed(current)
            if not ok:
                return Page(url, "skipped_robots", why, final_url=current)
            response = self._request(current, headers)
            if response.status_code not in REDIRECTS:
                break
            response.close()
            target = urljoin(current, response.headers.get("Location", ""))
            if target in chain:
                raise FetchError(f"redirect loop: {' -> '.join(chain + [target])}")
            chain.append(target)
            # Validators belong to the first URL only; credentials never leave their host.
            same_host = urlsplit(target).netloc == urlsplit(url).netloc
            current, headers = target, dict(extra) if same_host else {}
        else:
            raise FetchError(f"more than scrape.http.max_redirects ({self.http.max_redirects}) redirects")
        with response:
            if response.status_code == 304 and cached:
                meta, body = cached
                return Page(
                    url,
                    "not_modified",
                    final_url=meta["final_url"],
                    status=304,
                    content_type=meta["content_type"],
                    charset=meta["charset"],
                    fetched_at=meta.get("fetched_at", ""),
                    text=body.decode(meta["charset"], errors="replace"),
                )
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code}")
            content_type = response.headers.get("Content-Type", "")
            mime = content_type.split(";")[0].strip().lower()
            if mime not in self.http.content_types:
                raise FetchError(f"content type {mime or 'missing'} not in scrape.http.content_types")
            body = self._read_limited(response)
        text, charset = decode_body(body, content_type)
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.cache.put(
            url,
            {
                "etag": response.headers.get("ETag"),
                "last_modified": response.headers.get("Last-Modified"),
                "final_url": current,
                "content_type": mime,
                "charset": charset,
                "fetched_at": fetched_at,
            },
            body,
        )
        return Page(
            url,
            "fetched",
            final_url=current,
            status=response.status_code,
            content_type=mime,
            charset=charset,
            fetched_at=fetched_at,
            text=text,
        )
