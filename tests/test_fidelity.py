"""Corpus fidelity: every word of a page's main text reaches the document, navigation does not, and
the scrape report says how much was kept. Pages are served on localhost and crawled for real."""

import json
import subprocess
import sys

import pytest

from mlproject.config import HttpConfig, ScrapeConfig, Source
from mlproject.data.extract import main_text
from mlproject.data.scrape import scrape
from tests.conftest import ROOT, paths_in
from tests.website import Site, html

NAVIGATION = (
    '<div class="navheader"><table><tr><td><a href="a.html">Anterior</a></td><td>Capítulo 2</td>'
    '<td><a href="c.html">Siguiente</a></td></tr></table></div>'
    '<div class="breadcrumbs"><a href="/">Portada</a> › <a href="/guia">Guía</a></div>'
    '<div class="toc"><p><b>Tabla de contenidos</b></p><dl><dt><a href="#s1">Ajustes</a></dt></dl></div>'
    '<div id="cookie-banner"><p>Utilizamos cookies. <a href="#">Aceptar</a></p></div>'
)
FOOTER = (
    '<div class="navfooter"><a href="a.html">Anterior</a> <a href="index.html">Inicio</a></div>'
    "<footer>Copyright 2024 Los autores. Aviso legal.</footer>"
)
# Each case the extraction used to lose, in the markup DocBook and Sphinx write.
SENTENCES = {
    "inline GUI label": (
        '<p>Para ver la ventana, asegúrese de que <span class="guimenuitem">Opacidad</span> no está en 0.</p>',
        "asegúrese de que Opacidad no está en 0.",
    ),
    "menu path": (
        '<p>Abra <span class="menuchoice"><span class="guimenu">Panel de control</span> → '
        '<span class="guisubmenu">Sistema</span> → <span class="guimenuitem">Avanzado</span></span> '
        'y pulse <span class="guibutton">Aceptar</span> o <kbd class="keycap">Intro</kbd>.</p>',
        "Abra Panel de control → Sistema → Avanzado y pulse Aceptar o Intro.",
    ),
    "caption": (
        '<div class="figure"><p class="title"><b>Figura 2.1. La pantalla de inicio</b></p>'
        '<div class="mediaobject"><img src="inicio.png" alt="pantalla"/></div></div>'
        '<figure><img src="b.png"/><figcaption>El menú <em>Archivo</em> abierto.</figcaption></figure>',
        "Figura 2.1. La pantalla de inicio",
    ),
    "definition list": (
        '<div class="variablelist"><dl><dt><span class="term"><code class="literal">-v</code>'
        "</span></dt><dd><p>Muestra <em>cada</em> paso.</p></dd></dl></div>",
        "Muestra cada paso.",
    ),
    "admonition": (
        '<div class="note"><table border="0"><tr><td rowspan="2"><img alt="[Nota]" src="note.png"/>'
        "</td><th>Nota</th></tr><tr><td><p>Guarde sus cambios antes de salir del programa.</p>"
        "</td></tr></table></div>",
        "Guarde sus cambios antes de salir del programa.",
    ),
    "link in a sentence": (
        '<p>Lea el <a href="manual.html">manual de referencia</a> antes de empezar.</p>',
        "Lea el manual de referencia antes de empezar.",
    ),
    "code and a table": (
        "<table><caption>Tabla 1. Órdenes</caption><tr><td><code>ls</code></td>"
        "<td>lista los ficheros</td></tr></table>",
        "lista los ficheros",
    ),
}
PAGE = (
    NAVIGATION
    + '<div class="chapter"><h2 id="s1">2. Ajustes</h2>'
    + "".join(markup for markup, _ in SENTENCES.values())
    + "</div>"
    + FOOTER
)


@pytest.mark.parametrize("case", SENTENCES)
def test_each_case_keeps_its_sentence_whole(case):
    markup, sentence = SENTENCES[case]
    assert sentence in main_text(f"<html><body>{NAVIGATION}<div>{markup}</div>{FOOTER}</body></html>")


def test_a_crawled_page_keeps_every_word_and_no_navigation(tmp_path):
    with Site() as site:
        site.routes["/capitulo.html"] = [html("Capítulo 2", PAGE)]
        source = Source(name="manual", kind="crawl", seeds=[site.url("/capitulo.html")], max_depth=0)
        layout = paths_in(tmp_path, raw_documents="docs.jsonl", scrape_report="report.json", http_cache="cache")
        report = scrape(ScrapeConfig(sources=[source], http=HttpConfig(delay_seconds=0.0)), layout)
    text = json.loads((tmp_path / "docs.jsonl").read_text())["text"]
    for _, sentence in SENTENCES.values():
        assert sentence in text
    assert "El menú Archivo abierto." in text and "-v" in text and "Tabla 1. Órdenes" in text
    for word in ("Anterior", "Siguiente", "Portada", "Tabla de contenidos", "cookies", "Copyright", "Inicio"):
        assert word not in text, word
    page = next(r for r in report["pages"] if r["url"].endswith("/capitulo.html"))
    assert page["body_words"] > 50 and page["body_words_found"] == page["body_words"]
    assert page["kept_chars"] == len(text) and page["dropped_chars"] > 0
    assert report["sources"]["manual"]["word_recall"] == 1.0


def test_the_report_shows_words_a_selector_left_out(tmp_path):
    with Site() as site:
        site.routes["/capitulo.html"] = [html("Capítulo 2", PAGE)]
        source = Source(name="manual", kind="url", location=site.url("/capitulo.html"), selector="div.note")
        layout = paths_in(tmp_path, raw_documents="docs.jsonl", scrape_report="report.json", http_cache="cache")
        report = scrape(ScrapeConfig(sources=[source], http=HttpConfig(delay_seconds=0.0)), layout)
    assert report["sources"]["manual"]["word_recall"] < 0.5
    assert report["sources"]["manual"]["body_words_missing"] > 30


def test_fidelity_benchmark_runs_at_tiny_size_and_meets_its_targets(tmp_path):
    out = tmp_path / "fidelity.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.fidelity", "--size", "tiny", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [r["generator"] for r in figures["rows"]] == [
        "docbook",
        "sphinx",
        "wiki",
        "blog",
        "handwritten",
        "docbook-held-out",
    ]
    for row in figures["rows"]:
        assert row["pages"] == 1 and row["body_words"] > 100
        ours, before = row["sides"]["this project"], row["sides"]["before (precision, no tables)"]
        assert ours["recall"] >= figures["target"], row
        assert ours["leaked"] <= before["leaked"], row
    assert "## 9. Corpus fidelity" in result.stdout
