"""Text out of fetched pages: main content of HTML, links to follow, Gutenberg licence removal.

Pure functions over strings, so each is tested on a few lines of HTML without any server.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
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


# What is never main text: elements that are not text or not shown, and the landmarks a page
# itself marks as navigation, banner, footer, sidebar or search.
MARKED_CHROME = [
    "script",
    "style",
    "noscript",
    "template",
    "button",
    "select",
    "[hidden]",
    "[aria-hidden=true]",
    "[role=dialog]",
    "nav",
    "[role=navigation]",
    "[role=banner]",
    "[role=contentinfo]",
    "[role=complementary]",
    "[role=search]",
]
# Navigation known by the names site generators give it: tables of contents, breadcrumbs,
# previous/next bars, sidebars, edit links, permalinks, cookie banners. Matched on whole class or
# id names, never on parts of them: an inline element's class (guimenu, guibutton, menuchoice...)
# says what it shows in a sentence, not that it is chrome; only "cookie" and "consent" name the
# whole box whatever it holds.
NAMED_CHROME = [
    ".toc",
    "#toc",
    ".toctree-wrapper",
    ".breadcrumb",
    ".breadcrumbs",
    ".navheader",
    ".navfooter",
    ".sphinxsidebar",
    ".related",
    ".headerlink",
    "#sidebar",
    ".skip-link",
    "#header",
    "#footer",
    ".mw-editsection",
    "#mw-navigation",
    "#mw-panel",
    "#catlinks",
    "#siteSub",
    "#jump-to-nav",
    ".mw-jump-link",
    ".printfooter",
    "div[id*=cookie i]",
    "div[class*=cookie i]",
    "div[id*=consent i]",
    "div[class*=consent i]",
]
# Page-level banners, footers, sidebars and contact lines; inside an article or the main content
# they belong to it.
LANDMARKS = ["header", "footer", "aside", "address"]
# Where a page marks its main content, everything outside it is chrome.
MAIN = "main, [role=main]"

# Elements that end a line; of those, the ones that also end a paragraph (a blank line).
BLOCKS = {
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "center",
    "dd",
    "details",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "legend",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "td",
    "th",
    "tr",
    "ul",
}
PARAGRAPHS = {"blockquote", "dl", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table", "ul"}


# A box outside any paragraph, of at most this many words, half of them or more link text, is a
# link bar ("Back to the home page", a site title linking home, "[D]" description links).
LINK_BAR_WORDS = 30
# What a reader came for, in any page: paragraphs, list items, definition lists and captions.
BODY = ["p", "li", "dt", "dd", "caption", "figcaption"]
HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
WORD = re.compile(r"\w+")


def remove_named_chrome(document) -> None:
    """Take out what the page or its generator names as not main text: MARKED_CHROME,
    NAMED_CHROME and page-level LANDMARKS."""
    remove(document.select(", ".join(MARKED_CHROME + NAMED_CHROME)))
    remove(
        [
            node
            for node in document.find_all(LANDMARKS)
            if not node.find_parent(["article", "main"]) and not node.find_parent(attrs={"role": "main"})
        ]
    )


def remove_unnamed_navigation(document) -> None:
    """Take out navigation known by its shape alone: links standing alone on their line to a
    place in the same page (a table of contents), link bars, then the headings these leave with
    nothing under them."""
    remove(
        [link for link in document.select('a[href^="#"]') if alone_on_its_line(link) and not link.find_parent(HEADINGS)]
    )
    remove([box for box in document.find_all(["div", "table"]) if is_link_bar(box)])
    remove(empty_headings(document))


def remove(nodes: list) -> None:
    for node in nodes:
        if not node.decomposed:  # inside one already removed
            node.decompose()


def alone_on_its_line(node) -> bool:
    """Nothing but blanks between the element and the line breaks on either side of it."""
    return node.parent.name in BLOCKS and all(
        blank_until_a_break(siblings) for siblings in (node.previous_siblings, node.next_siblings)
    )


def blank_until_a_break(siblings) -> bool:
    from bs4 import NavigableString

    for sibling in siblings:
        if isinstance(sibling, NavigableString):
            if sibling.strip():
                return False
        elif sibling.name == "br" or sibling.name in BLOCKS:
            return True
        elif sibling.get_text().strip():
            return False
    return True


def empty_headings(document) -> list:
    """Headings with no text before the next heading of the same or a higher rank, other than
    headings that are empty themselves (those of a table of contents without its links)."""
    from bs4 import NavigableString
    from bs4.element import PreformattedString

    headings = document.find_all(HEADINGS)
    rank = {id(h): int(h.name[1]) for h in headings}
    empty = set()
    for heading in reversed(headings):
        for element in heading.next_elements:
            if id(element) in rank:
                if rank[id(element)] <= rank[id(heading)]:
                    empty.add(id(heading))
                    break
                if id(element) not in empty:
                    break
            elif (
                isinstance(element, NavigableString)
                and not isinstance(element, PreformattedString)
                and element.strip()
                and not any(id(parent) in rank for parent in element.parents)
            ):
                break
        else:
            empty.add(id(heading))
    return [heading for heading in headings if id(heading) in empty]


def is_link_bar(box) -> bool:
    """A box outside any paragraph, short, and half or more of its words link text."""
    if box.decomposed or box.find(BODY):
        return False
    words = len(WORD.findall(box.get_text(" ")))
    linked = sum(len(WORD.findall(link.get_text(" "))) for link in box.find_all("a", href=True))
    return 0 < words <= LINK_BAR_WORDS and linked * 2 >= words


LINE_END, PARAGRAPH_END = object(), object()  # pushed to close a block element


def text_of(node) -> str:
    """The text of an element as a reader sees it: inline elements (of any class) stay inside their
    sentence, each block on its own line, table cells one per line, preformatted text as it is."""
    from bs4 import NavigableString
    from bs4.element import PreformattedString  # comments, doctypes, CDATA

    lines: list[str] = []
    line: list[str] = []

    def end_line():
        text = " ".join("".join(line).split())
        line.clear()
        if text:
            lines.append(text)

    stack: list = [node]
    while stack:
        item = stack.pop()
        if item is LINE_END or item is PARAGRAPH_END:
            end_line()
            if item is PARAGRAPH_END:
                lines.append("")
        elif isinstance(item, NavigableString):
            if not isinstance(item, PreformattedString):
                line.append(str(item))
        elif item.name == "br":
            end_line()
        elif item.name == "pre":
            end_line()
            lines.extend([*item.get_text().strip("\n").split("\n"), ""])
        elif item.name in BLOCKS:
            end_line()
            stack.append(PARAGRAPH_END if item.name in PARAGRAPHS else LINE_END)
            stack.extend(reversed(item.contents))
        else:
            stack.extend(reversed(item.contents))
    end_line()
    return tidy("\n".join(lines))


def words(text: str) -> Counter:
    return Counter(WORD.findall(unicodedata.normalize("NFC", text).casefold()))


def body_words(region) -> Counter:
    """Words of the outermost paragraphs, list items, definition terms and captions in `region`."""
    return words_of(outermost(region.find_all(BODY)))


def outermost(nodes: list) -> list:
    """The nodes not inside another of them, so no word is counted twice."""
    inside = {id(node) for node in nodes}
    return [node for node in nodes if not any(id(parent) in inside for parent in node.parents)]


def words_of(nodes: list) -> Counter:
    return sum((words(text_of(node)) for node in nodes), Counter())


@dataclass
class Extraction:
    """A page's main text, and what extraction did: the characters of the page's visible text it
    kept and dropped, and the words of the paragraphs, list items and captions of its main content
    without named chrome (`reference`: before the rules that judge by shape alone, or a source's
    selector, removed anything), for the scrape report's word recall."""

    text: str
    kept_chars: int
    dropped_chars: int
    reference: Counter


def extract(html: str, selector: str = "") -> Extraction:
    document = soup(html)
    visible = len(text_of(document.body or document))
    remove_named_chrome(document)
    marked = document.select(MAIN)
    main = marked[0] if len(marked) == 1 else document.body or document
    reference = body_words(main)
    remove_unnamed_navigation(document)
    nodes = document.select(selector) if selector else [main]
    text = tidy("\n\n".join(text_of(node) for node in nodes))
    return Extraction(text, len(text), max(0, visible - len(text)), reference)


def main_text(html: str, selector: str = "") -> str:
    """The text a reader came for: the selected elements, or the page's main content (the element
    marked main, else the whole body), without navigation."""
    return extract(html, selector).text


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
    body = text[start.end() if start else 0 : end.start() if end else len(text)]
    return body.strip()


def gutenberg_title(text: str) -> str:
    match = re.search(r"^Title:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else ""
