"""Scraping the web, against a real server on localhost that misbehaves in every way we know."""

import json
import os
import signal
import subprocess
import time

import pytest

from mlproject.config import HttpConfig, ScrapeConfig, Source
from mlproject.data.extract import main_text, strip_gutenberg
from mlproject.data.fetch import decode_body
from mlproject.data.scrape import ScrapeFailed, scrape
from tests.conftest import BIN, paths_in, tiny_params, write_params
from tests.website import Reply, Site, html

NAV = (
    '<nav><a href="/">Inicio</a> | <a href="/a">Refranes</a> | <a href="/b">Dichos</a></nav>'
    '<div class="cookies">Utilizamos cookies para mejorar su experiencia. Aceptar cookies</div>'
)
FOOTER = "<footer>© 2025 Refranero. Todos los derechos reservados. Aviso legal.</footer>"


def article(*paragraphs: str) -> str:
    return NAV + "<main><article>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</article></main>" + FOOTER


PROVERBS = {
    "/": [
        "Bienvenido al refranero, una colección de dichos populares de la lengua española.",
        "Cada página reúne refranes sobre un tema con su explicación y su origen probable.",
    ],
    "/a": [
        "Más vale pájaro en mano que ciento volando, dice el refrán más conocido de todos.",
        "Quien mucho abarca poco aprieta, y quien poco aprieta no llega a ninguna parte.",
    ],
    "/b": [
        "A buen entendedor pocas palabras bastan, porque el que entiende no necesita más.",
        "No hay mal que por bien no venga, aunque a veces tarde mucho en llegar el bien.",
    ],
    "/flaky": ["En casa de herrero cuchillo de palo, porque nadie cuida de lo suyo propio."],
    "/busy": ["Al mal tiempo buena cara, que la lluvia no dura para siempre en ningún lugar."],
    "/slow": ["Poco a poco se va lejos, y despacio se llega antes que corriendo sin cabeza."],
    "/broken": ["Dime con quién andas y te diré quién eres, aunque el marcado esté roto."],
    "/dup1": ["Camarón que se duerme se lo lleva la corriente, y esto se repite dos veces."],
}
LATIN1 = (
    "El corazón del niño guarda la leña del año pasado junto al fogón de la montaña. "
    "Año de nieves, año de bienes, dice la tía Begoña mientras señala el camión. "
) * 4
LINKS = [
    "/a",
    "/b",
    "/flaky",
    "/busy",
    "/timeout",
    "/slow",
    "/private/secret",
    "/loop1",
    "/latin1",
    "/big",
    "/broken",
    "/dup1",
    "/dup2",
    "/missing",
    "/image.png",
    "https://elsewhere.example/x",
]
BOOK = (
    "The Project Gutenberg eBook of Refranes\nTitle: Refranes escogidos\n\n"
    "*** START OF THE PROJECT GUTENBERG EBOOK REFRANES ***\n\nDonde una puerta se cierra, otra "
    "se abre.\n\n*** END OF THE PROJECT GUTENBERG EBOOK REFRANES ***\n\nSection 1. General Terms "
    "of Use and Redistributing Project Gutenberg-tm electronic works\n"
)


def build_site(site: Site) -> None:
    links = "".join(f'<li><a href="{link}">{link}</a></li>' for link in LINKS)
    index = article(*PROVERBS["/"]) + "<ul>" + links + "</ul>"
    site.routes.update(
        {
            "/robots.txt": [
                Reply(body=b"User-agent: *\nDisallow: /private/\n", headers={"Content-Type": "text/plain"})
            ],
            "/": [html("Refranero", index)],
            "/a": [html("Refranes", article(*PROVERBS["/a"]))],
            "/b": [html("Dichos", article(*PROVERBS["/b"]))],
            "/flaky": [Reply(500, b"oops"), html("Herrero", article(*PROVERBS["/flaky"]))],
            "/busy": [Reply(429, b"slow down", {"Retry-After": "1"}), html("Tiempo", article(*PROVERBS["/busy"]))],
            "/timeout": [Reply(delay=3.0, body=b"late")],
            "/slow": [
                Reply(
                    delay=0.3,
                    body=html("Despacio", article(*PROVERBS["/slow"])).body,
                    headers={"Content-Type": "text/html; charset=utf-8"},
                )
            ],
            "/private/secret": [html("Secreto", article("No debería leerse."))],
            "/loop1": [Reply(302, headers={"Location": "/loop2"}, validators=False)],
            "/loop2": [Reply(302, headers={"Location": "/loop1"}, validators=False)],
            "/latin1": [
                Reply(
                    body=f"<html><body><p>{LATIN1}</p></body></html>".encode("latin-1"),
                    headers={"Content-Type": "text/html"},
                )
            ],
            "/big": [html("Grande", "<p>" + "relleno " * 20000 + "</p>")],
            "/broken": [
                Reply(
                    body=(
                        "<html><body><div><p>" + PROVERBS["/broken"][0] + "<b>sin cerrar"
                        "<p>Otro párrafo <i>mal anidado</b></i><div>"
                    ).encode(),
                    headers={"Content-Type": "text/html; charset=utf-8"},
                )
            ],
            "/dup1": [html("Camarón", article(*PROVERBS["/dup1"]))],
            "/dup2": [html("Camarón otra vez", article(*PROVERBS["/dup1"]))],
            "/image.png": [Reply(body=b"\x89PNG....", headers={"Content-Type": "image/png"})],
            "/book.txt": [Reply(body=BOOK.encode(), headers={"Content-Type": "text/plain; charset=utf-8"})],
        }
    )


HTTP = HttpConfig(
    delay_seconds=0.01,
    connect_timeout=1.0,
    read_timeout=1.0,
    max_retries=2,
    backoff_seconds=0.05,
    max_retry_after=2.0,
    max_bytes=50_000,
    max_failed_share=0.5,
)


def crawl_config(site: Site, **http) -> ScrapeConfig:
    source = Source(name="refranero", kind="crawl", seeds=[site.url("/")], max_depth=1, max_pages=50)
    return ScrapeConfig(sources=[source], http=HttpConfig(**{**HTTP.__dict__, **http}))


def run_scrape(tmp_path, config):
    report = scrape(
        config, paths_in(tmp_path, raw_documents="docs.jsonl", scrape_report="report.json", http_cache="cache")
    )
    documents = [json.loads(line) for line in (tmp_path / "docs.jsonl").read_text().splitlines()]
    return report, documents


def by_path(report: dict, site: Site) -> dict:
    return {r["url"].replace(site.url(""), ""): r for r in report["pages"]}


@pytest.fixture
def site():
    with Site() as running:
        build_site(running)
        yield running


def test_crawl_collects_exactly_the_good_pages_and_says_why_for_the_rest(site, tmp_path):
    report, documents = run_scrape(tmp_path, crawl_config(site))
    collected = {d["url"].replace(site.url(""), "") for d in documents}
    assert collected == {"/", "/a", "/b", "/flaky", "/busy", "/slow", "/latin1", "/broken", "/dup1"}

    pages = by_path(report, site)
    assert pages["/timeout"]["outcome"] == "failed" and "timed out" in pages["/timeout"]["reason"]
    assert pages["/private/secret"] == {
        **pages["/private/secret"],
        "outcome": "skipped_robots",
        "reason": "disallowed by robots.txt",
    }
    assert "redirect loop" in pages["/loop1"]["reason"]
    assert "larger than scrape.http.max_bytes" in pages["/big"]["reason"]
    assert pages["/missing"]["reason"] == "HTTP 404"
    assert "content type image/png" in pages["/image.png"]["reason"]
    assert [d["url"] for d in report["duplicates"]] == [site.url("/dup2")]
    assert "https://elsewhere.example/x" not in {r["url"] for r in report["pages"]}  # other host
    assert set(report["urls"]) == {"fetched", "failed", "skipped_robots"}

    # Retries: a 500 then a 200; a 429 whose Retry-After (1 s) was honoured.
    assert len(site.requests_for("/flaky")) == 2
    busy = [t for t, p, _ in site.log if p == "/busy"]
    assert len(busy) == 2 and busy[1] - busy[0] >= 0.95
    assert len(site.requests_for("/timeout")) == 3  # the first try and max_retries = 2
    assert site.requests_for("/private/secret") == []

    texts = {d["url"].replace(site.url(""), ""): d["text"] for d in documents}
    assert PROVERBS["/a"][0] in texts["/a"] and "cookies" not in texts["/a"] and "Inicio" not in texts["/a"]
    assert "derechos reservados" not in texts["/a"]
    assert "corazón del niño" in texts["/latin1"] and "Begoña" in texts["/latin1"]
    assert PROVERBS["/broken"][0] in texts["/broken"]
    assert {d["title"] for d in documents} >= {"Refranes", "Dichos"}
    assert site.requests_for("/")[0]["User-Agent"] == HTTP.user_agent


def test_second_run_sends_conditional_requests_and_collects_nothing_new(site, tmp_path):
    first, documents = run_scrape(tmp_path, crawl_config(site))
    before = len(site.log)
    second, again = run_scrape(tmp_path, crawl_config(site))
    later = site.log[before:]
    page_requests = [h for _, p, h in later if p in ("/", "/a", "/b", "/slow", "/dup1")]
    assert page_requests and all("If-None-Match" in h for h in page_requests)
    assert second["urls"].get("fetched", 0) == 0
    assert again == documents  # byte for byte, fetched_at included: DVC sees nothing new


def test_delay_per_host_is_respected(site, tmp_path):
    run_scrape(tmp_path, crawl_config(site, delay_seconds=0.25, read_timeout=0.5))
    times = [t for t, p, _ in site.log]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Seen from the server, one request handled late shortens the next gap by as much: on a busy
    # machine by tens of milliseconds. Without the delay the gaps are a few milliseconds.
    assert len(gaps) > 10 and min(gaps) >= 0.18 and sum(gaps) >= 0.245 * len(gaps)


def test_too_many_failures_fail_the_stage_naming_urls(site, tmp_path):
    with pytest.raises(ScrapeFailed) as error:
        run_scrape(tmp_path, crawl_config(site, max_failed_share=0.1))
    message = str(error.value)
    assert "URLs failed, more than scrape.http.max_failed_share (0.1)" in message
    assert site.url("/missing") in message and "\n" not in message
    assert not (tmp_path / "docs.jsonl").exists()
    assert json.loads((tmp_path / "report.json").read_text())["urls"]["failed"] == 5


def test_gutenberg_book_loses_its_licence_header_and_footer(site, tmp_path):
    source = Source(name="libro", kind="gutenberg", location=site.url("/book.txt"), format="text")
    _, documents = run_scrape(tmp_path, ScrapeConfig(sources=[source], http=HTTP))
    assert documents[0]["text"] == "Donde una puerta se cierra, otra se abre."
    assert documents[0]["title"] == "Refranes escogidos"


def test_url_source_with_credentials_from_the_environment(site, tmp_path, monkeypatch):
    monkeypatch.setenv("REFRANERO_TOKEN", "s3cret")
    source = Source(
        name="a", kind="url", location=site.url("/a"), headers_from_env={"Authorization": "REFRANERO_TOKEN"}
    )
    report, documents = run_scrape(tmp_path, ScrapeConfig(sources=[source], http=HTTP))
    assert site.requests_for("/a")[0]["Authorization"] == "s3cret"
    assert "s3cret" not in json.dumps(report) and len(documents) == 1


def test_credentials_do_not_follow_a_redirect_to_another_host(site, tmp_path, monkeypatch):
    with Site() as other:
        other.routes["/a"] = [html("Fuera", article("Otro sitio con otro refrán sin credenciales."))]
        site.routes["/away"] = [Reply(302, headers={"Location": other.url("/a")}, validators=False)]
        monkeypatch.setenv("REFRANERO_TOKEN", "s3cret")
        source = Source(
            name="a", kind="url", location=site.url("/away"), headers_from_env={"Authorization": "REFRANERO_TOKEN"}
        )
        run_scrape(tmp_path, ScrapeConfig(sources=[source], http=HTTP))
        assert site.requests_for("/away")[0]["Authorization"] == "s3cret"
        assert "Authorization" not in other.requests_for("/a")[0]


def test_killed_crawl_resumes_without_refetching_stored_pages(site, tmp_path):
    site.routes["/slow"] = [Reply(delay=60, body=b"never")]  # the crawl hangs here; we kill it
    params = tiny_params(tmp_path)
    params["scrape"]["sources"] = [
        {"name": "refranero", "kind": "crawl", "seeds": [site.url("/")], "max_depth": 1, "max_pages": 50}
    ]
    params["scrape"]["http"] = {**HTTP.__dict__, "read_timeout": 120.0, "content_types": list(HTTP.content_types)}
    write_params(tmp_path, params)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    process = subprocess.Popen(
        [str(BIN / "mlproject"), "scrape"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not site.requests_for("/slow") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = {p for p in site.paths_requested() if p not in ("/robots.txt", "/slow")}
    assert {"/", "/a", "/b", "/flaky", "/busy"} <= stored

    site.routes["/slow"] = [html("Despacio", article(*PROVERBS["/slow"]))]
    before = len(site.log)
    result = subprocess.run([str(BIN / "mlproject"), "scrape"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    again = [p for _, p, _ in site.log[before:]]
    fetched_before = stored - {"/timeout", "/loop1", "/loop2", "/missing", "/big", "/image.png"}
    assert not (set(again) & fetched_before), set(again) & fetched_before
    assert "/slow" in again
    report = json.loads((tmp_path / "reports" / "scrape.json").read_text())
    assert sum(r["resumed"] for r in report["pages"]) >= len(fetched_before)
    documents = (tmp_path / "data" / "raw" / "documents.jsonl").read_text()
    assert PROVERBS["/a"][0] in documents and PROVERBS["/slow"][0] in documents


def test_decode_body_falls_back_from_a_wrong_declared_charset():
    text, charset = decode_body(LATIN1.encode("latin-1"), "text/plain; charset=utf-8")
    assert text == LATIN1 and charset != "utf-8"
    assert decode_body(b'<meta charset="iso-8859-1"><p>ni\xf1o', "text/html") == (
        '<meta charset="iso-8859-1"><p>niño',
        "iso-8859-1",
    )


def test_selector_keeps_only_the_chosen_elements():
    page = "<html><body><nav>Menú</nav><div class='letra'>Primera línea<br>Segunda</div></body></html>"
    assert main_text(page, "div.letra") == "Primera línea\nSegunda"


def test_strip_gutenberg_without_markers_keeps_text():
    assert strip_gutenberg("solo texto") == "solo texto"
