"""Text out of fetched pages: main content of HTML, links to follow, Gutenberg licence removal.

Pure functions over strings, so each is tested on a few lines of HTML without any server.
"""

from __future__ import annotations

import re
from urllib.parse import urldefrag, urljoin, urlsplit

GUTENBERG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)
GUTENBERG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.I | re.M)


def soup(html: str):
    import warnings

    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)  # XHTML pages are read as HTML
        return BeautifulSoup(html, "lxml")


def title_of(html: str) -> str:
    tag = soup(html).title
    return " ".join(tag.get_text().split()) if tag else ""


def tidy(text: str) -> str:
    """Lines stripped of trailing spaces, runs of blank lines cut to one."""
    lines = [line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Navigation that sits inside the main content on many sites: tables of contents (DocBook,
# MediaWiki, Sphinx), breadcrumbs and previous/next bars. Removed before any extraction.
NAVIGATION = ["nav", "[role=navigation]", ".toc", "#toc", ".toctree-wrapper", ".breadcrumb",
              ".breadcrumbs", ".navheader", ".navfooter", "script", "style", "noscript"]


def without_navigation(html: str):
    document = soup(html)
    for node in document.select(", ".join(NAVIGATION)):
        node.decompose()
    return document


def main_text(html: str, selector: str = "") -> str:
    """The text a reader came for: the selected elements, or what trafilatura finds as main content."""
    document = without_navigation(html)
    if selector:
        return tidy("\n\n".join(node.get_text("\n") for node in document.select(selector)))
    import trafilatura

    # Tables come out as Markdown pipes, which a text generator would learn as prose: left out.
    text = trafilatura.extract(str(document), include_comments=False, include_tables=False,
                               favor_precision=True, deduplicate=False)
    return tidy(text or "")


def links(html: str, base_url: str) -> list[str]:
    """Absolute http(s) links of <a href>, without fragments, in page order, each once."""
    seen, found = set(), []
    for anchor in soup(html).find_all("a", href=True):
        url = urldefrag(urljoin(base_url, anchor["href"].strip())).url
        if urlsplit(url).scheme in ("http", "https") and url not in seen:
            seen.add(url)
            found.append(url)
    return found


def strip_gutenberg(text: str) -> str:
    """The book between Project Gutenberg's START and END lines (the licence is outside them)."""
    start, end = GUTENBERG_START.search(text), GUTENBERG_END.search(text)
    body = text[start.end() if start else 0:end.start() if end else len(text)]
    return body.strip()


def gutenberg_title(text: str) -> str:
    match = re.search(r"^Title:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else ""
