"""Corpus fidelity: how much of real pages' main text the scrape stage keeps, per site generator.

    python -m benchmarks.fidelity                 # writes benchmarks/RESULTS-fidelity.json
    python -m benchmarks.run --render-only        # puts it in RESULTS.md (section 9)

Real pages made by five site generators (benchmarks/fidelity/sites/, their sources and licences in
its README), and a sixth set held out (the Debian Reference, from debian-reference-es: no rule of
the extraction was written looking at it), are served on localhost and crawled by the scrape stage. Each page's main
content and
navigation are marked by hand in benchmarks/fidelity/sites.json, as an annotator reading the
generator's markup would; the extractor never sees those marks. Figures:

- word recall: words of the main content's paragraphs, list items, definition lists and captions
  found in the document (the measure of mlproject/data/fidelity.py, which the scrape report also
  gives per crawl);
- navigation leaked: words of the navigation found in the document beyond what the main content
  itself says.

Beside the scrape stage, on the same pages: plain trafilatura with its default settings, and the
extraction this project used before (trafilatura tuned for precision, tables left out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = ROOT / "benchmarks" / "fidelity"
SIZES = {"full": None, "tiny": 1}  # pages per generator (None: all)
TARGET = 0.995

# The extraction before corpus fidelity was measured (commit 5c9de36): these navigation rules, then
# trafilatura tuned for precision with tables left out.
BEFORE_NAVIGATION = [
    "nav",
    "[role=navigation]",
    ".toc",
    "#toc",
    ".toctree-wrapper",
    ".breadcrumb",
    ".breadcrumbs",
    ".navheader",
    ".navfooter",
    "script",
    "style",
    "noscript",
]


def before(html: str) -> str:
    import trafilatura

    from mlproject.data.extract import soup, tidy

    document = soup(html)
    for node in document.select(", ".join(BEFORE_NAVIGATION)):
        node.decompose()
    return tidy(
        trafilatura.extract(
            str(document), include_comments=False, include_tables=False, favor_precision=True, deduplicate=False
        )
        or ""
    )


def plain_trafilatura(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html) or ""


BASELINES = {"trafilatura defaults": plain_trafilatura, "before (precision, no tables)": before}


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def site_folder(site: dict) -> Path:
    """Where a generator's pages are: vendored under sites/, or a Debian package's folder."""
    folder = Path(site.get("directory") or SITES / "sites" / site["generator"])
    if not folder.is_dir():
        raise SystemExit(
            f"benchmarks/fidelity/sites.json {site['generator']}: {folder} does not exist; "
            f"install {site['package']} (make test-site)"
        )
    return folder


def served(sites: list[dict], root: Path):
    """One localhost server for every generator, each under /<generator>/."""
    for site in sites:
        (root / site["generator"]).symlink_to(site_folder(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def crawl(sites: list[dict], base: str, workdir: Path) -> tuple[dict[str, str], dict]:
    """Every page through the scrape stage, one crawl source per generator: text by URL, report."""
    from mlproject.config import HttpConfig, Paths, ScrapeConfig, Source
    from mlproject.data.scrape import scrape

    sources = [
        Source(
            name=site["generator"],
            kind="crawl",
            max_depth=0,
            max_pages=len(site["pages"]),
            seeds=[f"{base}/{site['generator']}/{page}" for page in site["pages"]],
        )
        for site in sites
    ]
    paths = Paths().under(workdir)
    report = scrape(ScrapeConfig(sources=sources, http=HttpConfig(delay_seconds=0.0)), paths)
    texts = {}
    for line in Path(paths.raw_documents).read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        texts[document["locator"]] = document["text"]
    return texts, report


def annotated(html: str, site: dict):
    """The hand-marked parts of a page: navigation words, main-content words, body words."""
    from mlproject.data.extract import body_words, outermost, soup, text_of, words, words_of

    document = soup(html)
    for node in document.select("script, style"):
        node.decompose()
    chrome = outermost([node for selector in site["navigation"] for node in document.select(selector)])
    navigation = words_of(chrome)
    for node in chrome:
        node.decompose()
    main = document.select(site["main"])
    if len(main) != 1:
        raise ValueError(f"sites.json {site['generator']}: main {site['main']!r} matches {len(main)} elements")
    return navigation, words(text_of(main[0])), body_words(main[0])


def score(sites: list[dict], texts: dict[str, str], base: str) -> list[dict]:
    from mlproject.data.extract import words
    from mlproject.data.fidelity import Recall, leaked, recall

    rows = []
    for site in sites:
        sides = {"this project": {"recall": Recall(), "leaked": 0, "seconds": []}}
        sides.update({name: {"recall": Recall(), "leaked": 0, "seconds": []} for name in BASELINES})
        navigation_total, missing = 0, {}
        for page in site["pages"]:
            html = (site_folder(site) / page).read_text(encoding="utf-8", errors="replace")
            navigation, main, body = annotated(html, site)
            navigation_total += sum(navigation.values())
            outputs = {"this project": texts[f"{base}/{site['generator']}/{page}"]}
            for name, extractor in BASELINES.items():
                start = time.perf_counter()
                outputs[name] = extractor(html)
                sides[name]["seconds"].append(time.perf_counter() - start)
            for name, text in outputs.items():
                found = words(text)
                sides[name]["recall"] += recall(body, found)
                sides[name]["leaked"] += leaked(navigation, main, found)
                if name == "this project":
                    missing[page] = sorted((body - found).elements())[:20]
        rows.append(
            {
                "generator": site["generator"],
                "made_with": site["made_with"],
                "language": site["language"],
                "pages": len(site["pages"]),
                "body_words": sides["this project"]["recall"].total,
                "navigation_words": navigation_total,
                "sides": {
                    name: {"recall": side["recall"].share, "missing": side["recall"].missing, "leaked": side["leaked"]}
                    for name, side in sides.items()
                },
                "missing_examples": {page: words_ for page, words_ in missing.items() if words_},
            }
        )
    return rows


def totals(rows: list[dict]) -> dict:
    names = list(rows[0]["sides"])
    body = sum(r["body_words"] for r in rows)
    out = {
        "pages": sum(r["pages"] for r in rows),
        "body_words": body,
        "navigation_words": sum(r["navigation_words"] for r in rows),
        "sides": {},
    }
    for name in names:
        missing = sum(r["sides"][name]["missing"] for r in rows)
        out["sides"][name] = {
            "recall": (body - missing) / body if body else 1.0,
            "missing": missing,
            "leaked": sum(r["sides"][name]["leaked"] for r in rows),
        }
    return out


def measure(pages_per_site: int | None = None) -> dict:
    sites = json.loads((SITES / "sites.json").read_text(encoding="utf-8"))
    if pages_per_site:
        sites = [{**site, "pages": site["pages"][:pages_per_site]} for site in sites]
    with tempfile.TemporaryDirectory(prefix="fidelity-") as workdir:
        (Path(workdir) / "site").mkdir()
        server, base = served(sites, Path(workdir) / "site")
        try:
            start = time.perf_counter()
            texts, report = crawl(sites, base, Path(workdir) / "scrape")
            crawl_seconds = time.perf_counter() - start
        finally:
            server.shutdown()
    rows = score(sites, texts, base)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "target": TARGET,
        "rows": rows,
        "total": totals(rows),
        "crawl_seconds": crawl_seconds,
        "report_recall": {name: source.get("word_recall") for name, source in report["sources"].items()},
    }


def percent(share: float) -> str:
    return f"{100 * share:.2f}%"


def lines(figures: dict | None) -> list[str]:
    """Section 9 of RESULTS.md (run.py renders it when RESULTS-fidelity.json exists)."""
    if not figures:
        return []
    names = list(figures["total"]["sides"])
    out = [
        "## 9. Corpus fidelity",
        "",
        f"{figures['total']['pages']} real pages from {len(figures['rows'])} site generators "
        "(benchmarks/fidelity/sites/README.md), served on localhost and crawled by the scrape stage "
        f"({figures['crawl_seconds']:.1f} s), measured {figures['date']} by `python -m benchmarks.fidelity`. "
        "Word recall: words of the hand-marked main content's paragraphs, list items, definition lists "
        "and captions found in the document (Unicode NFC, case folded, each occurrence counted). "
        "Navigation leaked: words of the hand-marked navigation in the document beyond what the main "
        f"content says. Target: recall at least {percent(figures['target'])} on every generator, no more "
        "navigation than before.",
        "",
        "| generator | language | pages | body words | navigation words | "
        + " | ".join(f"recall: {n}" for n in names)
        + " | "
        + " | ".join(f"navigation leaked: {n}" for n in names)
        + " |",
        "|---|---|---|---|---|" + "---|" * (2 * len(names)),
    ]
    for row in [*figures["rows"], {**figures["total"], "generator": "**total**", "language": "", "made_with": ""}]:
        out.append(
            f"| {row['generator']} | {row['language']} | {row['pages']} | {row['body_words']} | "
            f"{row['navigation_words']} | "
            + " | ".join(f"{percent(row['sides'][n]['recall'])} ({row['sides'][n]['missing']} missing)" for n in names)
            + " | "
            + " | ".join(str(row["sides"][n]["leaked"]) for n in names)
            + " |"
        )
    out += [
        "",
        "The scrape report's own estimate on the same pages, without the hand marks (the "
        "main content a page marks, less the navigation its generator names): "
        + ", ".join(f"{name} {percent(share)}" for name, share in figures["report_recall"].items())
        + ".",
        "",
        "Generators: " + "; ".join(f"{r['generator']}: {r['made_with']}" for r in figures["rows"]) + ".",
    ]
    examples = {r["generator"]: r["missing_examples"] for r in figures["rows"] if r["missing_examples"]}
    if examples:
        out += [
            "",
            "Words the scrape stage missed, per page: "
            + "; ".join(
                f"{generator} {page}: {' '.join(found)}"
                for generator, pages in examples.items()
                for page, found in pages.items()
            )
            + ".",
        ]
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=SIZES, default="full", help="tiny: one page per generator")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS-fidelity.json"))
    args = parser.parse_args()
    from mlproject.fileio import write_json

    figures = measure(SIZES[args.size])
    write_json(args.out, figures)
    print("\n".join(lines(figures)))
    below = [r["generator"] for r in figures["rows"] if r["sides"]["this project"]["recall"] < TARGET]
    if below:
        print(f"fidelity: word recall below {percent(TARGET)} on {', '.join(below)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
