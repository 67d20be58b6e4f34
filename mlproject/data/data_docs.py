"""Validate stage, Data Docs: point the Great Expectations site at assets shipped with the project.

Great Expectations' pages load CSS, scripts and images from CDNs; offline they open unstyled with an
empty index table. Each CDN URL here maps to a vendored copy (see data_docs_assets/README.md).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mlproject.config import StageFailed

ASSETS = Path(__file__).with_name("data_docs_assets")
VENDOR = "static/vendor"  # where ASSETS land inside the site

# CDN URL (query string dropped) -> file inside the site. Great Expectations 1.24's templates
# (render/view/templates/*.j2) ask for exactly these; a version they give as a major only
# (vega@5) is the newest of that major on npm when vendored.
CDN_ASSETS = {
    "https://code.jquery.com/jquery-3.7.1.min.js": f"{VENDOR}/jquery-3.7.1/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": f"{VENDOR}/popper.js-1.12.9/umd/popper.min.js",
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": f"{VENDOR}/bootstrap-4.3.1/css/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": f"{VENDOR}/bootstrap-4.3.1/js/bootstrap.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": f"{VENDOR}/bootstrap-table-1.19.1/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": f"{VENDOR}/bootstrap-table-1.19.1/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js": f"{VENDOR}/bootstrap-table-1.19.1/extensions/filter-control/bootstrap-table-filter-control.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css": f"{VENDOR}/bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css": f"{VENDOR}/bootstrap-table-1.19.0/extensions/filter-control/bootstrap-table-filter-control.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css": f"{VENDOR}/bootstrap-datepicker-1.9.0/css/bootstrap-datepicker.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js": f"{VENDOR}/bootstrap-datepicker-1.9.0/js/bootstrap-datepicker.min.js",
    # The minified build of the same file: 153 kB instead of 883 kB.
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": f"{VENDOR}/bootstrap-dark-1.1.0/css/bootstrap-prefers-dark.min.css",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": f"{VENDOR}/fontawesome-free-6.6.0/css/all.min.css",
    "https://cdn.jsdelivr.net/npm/vega@5": f"{VENDOR}/vega-5.33.1/vega.min.js",
    "https://cdn.jsdelivr.net/npm/vega-lite@5": f"{VENDOR}/vega-lite-5.23.0/vega-lite.min.js",
    "https://cdn.jsdelivr.net/npm/vega-embed@6": f"{VENDOR}/vega-embed-6.29.0/vega-embed.min.js",
    # The navbar logo (its query string only tells the vendor who opened the page) is in the site already.
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png": "static/images/logo-long.png",
    "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/full_logo_dark.png": f"{VENDOR}/great_expectations/full_logo_dark.png",
}

# What a browser fetches by itself: any src=, a <link href=>, CSS url() and @import. An <a href> is
# a link a person may follow, not something the page loads, so it stays as it is.
FETCHED_URL = re.compile(
    r"""(?:\bsrc\s*=\s*|<link\b[^>]*?\bhref\s*=\s*|\burl\(\s*|@import\s+)["']?"""
    r"""(?P<url>https?://[^"'\s)>]+)""",
    re.IGNORECASE,
)
# A script with crossorigin (which integrity needs) is refused by Chromium when read from file://.
INTEGRITY = re.compile(r"""\s+(?:integrity|crossorigin)\s*=\s*(?:"[^"]*"|'[^']*')""", re.IGNORECASE)


class OfflineAssetMissing(StageFailed):
    """Data Docs ask for a URL with no local copy (a Great Expectations upgrade added an asset)."""


def localise_page(text: str, page: Path, site: Path) -> str:
    """`text` (a page or stylesheet at `page` inside `site`) with every CDN URL made a relative path
    to its local copy; raise OfflineAssetMissing naming the URLs that have none."""
    missing = sorted({m["url"] for m in FETCHED_URL.finditer(text) if m["url"].split("?")[0] not in CDN_ASSETS})
    if missing:
        raise OfflineAssetMissing(
            f"{page}: Data Docs load {', '.join(missing)}, which has no local copy: vendor it in "
            f"{ASSETS} and add it to CDN_ASSETS in {Path(__file__).name}"
        )

    def local(match: re.Match) -> str:
        path = os.path.relpath(site / CDN_ASSETS[match["url"].split("?")[0]], page.parent)
        return match[0][: match.start("url") - match.start()] + path.replace(os.sep, "/")

    return INTEGRITY.sub("", FETCHED_URL.sub(local, text))


def make_offline(site: Path) -> None:
    """Copy the vendored assets into `site` and point its pages and stylesheets at them, in place."""
    pages = [p for p in sorted(site.rglob("*")) if p.suffix in (".html", ".css")]
    shutil.copytree(ASSETS, site / VENDOR)
    for page in pages:
        page.write_text(localise_page(page.read_text(encoding="utf-8"), page, site), encoding="utf-8")
