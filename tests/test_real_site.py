"""A crawl of a real website that no one on the team wrote: the Debian Reference (Spanish, from
Debian's debian-reference-es, installed by `make test`), served on localhost by Python's stock
http.server, which answers conditional requests from Last-Modified."""

import json
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlproject.config import HttpConfig, ScrapeConfig, Source
from mlproject.data.extract import soup
from mlproject.data.scrape import scrape
from mlproject.data.text import BOILERPLATE, MARKUP
from tests.conftest import paths_in

SITE = Path("/usr/share/debian-reference")
PAGES = sorted(p.name for p in SITE.glob("*.es.html"))
NAVIGATION = ["Anterior", "Siguiente", "Subir", "Inicio", "Tabla de contenidos"]


@pytest.fixture(scope="module")
def served():
    requests = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.path, dict(self.headers)))
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(SITE)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def test_crawl_of_a_real_site_is_complete_clean_and_incremental(served, tmp_path):
    base, requests = served
    source = Source(
        name="debian-reference",
        kind="crawl",
        seeds=[f"{base}/index.es.html"],
        follow=[r"\.es\.html$"],
        max_depth=3,
        max_pages=100,
    )
    config = ScrapeConfig(sources=[source], http=HttpConfig(delay_seconds=0.0))
    paths = (tmp_path / "docs.jsonl", tmp_path / "report.json", tmp_path / "cache")

    layout = paths_in(tmp_path, raw_documents=paths[0], scrape_report=paths[1], http_cache=paths[2])
    report = scrape(config, layout)
    documents = [json.loads(line) for line in paths[0].read_text().splitlines()]
    assert len(PAGES) == 15
    assert sorted(d["url"].rsplit("/", 1)[1] for d in documents) == PAGES
    assert report["urls"] == {"fetched": 15}
    by_page = {d["url"].rsplit("/", 1)[1]: d for d in documents}
    assert by_page["ch01.es.html"]["title"] == "Capítulo 1. Tutoriales de GNU/Linux"
    assert by_page["ch01.es.html"]["text"].startswith(
        "Capítulo 1. Tutoriales de GNU/Linux\n\nAprender a usar un sistema informático"
    )
    assert report["sources"]["debian-reference"]["word_recall"] >= 0.995
    for document in documents:
        text = document["text"]
        # A tag or entity in a document is one the page shows as text (ch11 lists XML's entities).
        shown = " ".join(soup((SITE / document["url"].rsplit("/", 1)[1]).read_text()).get_text().split())
        assert all(match.group() in shown for match in MARKUP.finditer(text)), document["url"]
        assert not any(re.search(f"(?m){p}", text) for p in BOILERPLATE), document["url"]
        assert not [w for w in NAVIGATION if re.search(rf"(?m)^\s*{w}\s*$", text)], document["url"]
        assert "|---" not in text  # no tables rendered as Markdown
    chapters = [d for name, d in by_page.items() if name.startswith("ch")]
    assert len(chapters) == 12 and min(len(d["text"]) for d in chapters) > 5000

    before = len(requests)
    second = scrape(config, layout)
    assert second["urls"] == {"not_modified": 15} and second["documents"] == 15
    page_requests = [h for p, h in requests[before:] if p.endswith(".es.html")]
    assert len(page_requests) == 15 and all("If-Modified-Since" in h for h in page_requests)
