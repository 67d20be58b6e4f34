"""Data Docs open offline: what a person sees in a browser that reaches nothing beyond this machine."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from mlproject.config import ScrapeConfig, Source, ValidateConfig
from mlproject.data.data_docs import ASSETS, CDN_ASSETS, VENDOR, OfflineAssetMissing, localise_page
from mlproject.data.scrape import scrape
from mlproject.data.validate import validate
from tests.conftest import SAMPLE_CORPUS, paths_in


def build_data_docs(root: Path) -> Path:
    """The validate stage run on the sample corpus; returns the Data Docs folder it published."""
    layout = paths_in(root)
    scrape(ScrapeConfig(sources=[Source(name="refranes", location=str(SAMPLE_CORPUS))]), layout)
    validate(ValidateConfig(min_documents=50, min_corpus_chars=5000), layout)
    return Path(layout.data_docs)


def test_data_docs_open_offline_with_the_run_listed_and_styled(tmp_path, browser_page):
    docs = build_data_docs(tmp_path)
    page = browser_page.page
    unreadable = []  # local files a page asks for that are not there
    page.on("requestfailed", lambda request: unreadable.append(request.url))

    page.goto((docs / "index.html").as_uri())
    # bootstrap-table's script fills the index from data in the page: without it the table is empty.
    run = page.locator("#Validation-Results tr.clickable-row").filter(
        has=page.get_by_role("cell", name="documents", exact=True)
    )
    expect(run).to_have_count(1, timeout=5_000)
    expect(run).to_be_visible()
    # Only Bootstrap's CSS makes a .row a flex container.
    assert page.eval_on_selector(".row", "element => getComputedStyle(element).display") == "flex"
    browser_page.screenshot(tmp_path / "data-docs.png")

    with page.expect_navigation():
        run.click()  # the row's link is followed by script, as a person would do it
    assert "/validations/documents/" in page.url
    assert page.get_by_text("values must be null").count() == 3  # encoding_error, duplicate_of, other_language
    expect(page.get_by_text("must not match any of the following regular expressions")).to_be_visible()
    icons = page.locator("i.fas.fa-check-circle, i.fas.fa-times")
    expect(icons.first).to_be_visible()
    assert icons.count() >= 7  # one status icon per expectation of the suite
    font_awesome = page.evaluate(
        "document.fonts.ready.then(fonts => [...fonts].filter("
        "font => font.family.includes('Font Awesome') && font.status == 'loaded').length)"
    )
    assert font_awesome > 0  # the icons are drawn, not empty boxes
    browser_page.screenshot(tmp_path / "data-docs-validation.png")
    assert browser_page.blocked == [] and unreadable == []


def test_cdn_urls_become_relative_paths_to_local_copies(tmp_path):
    page = tmp_path / "validations" / "documents" / "__none__" / "20260101T000000Z" / "documents.html"
    html = (
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js" '
        'integrity="sha384-x" crossorigin="anonymous"></script>'
        '<a href="https://greatexpectations.io">Great Expectations</a>'
        "<style>a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
        "full_logo_dark.png') }</style>"
    )
    local = localise_page(html, page, tmp_path)
    assert local == (
        '<script src="../../../../static/vendor/popper.js-1.12.9/umd/popper.min.js"></script>'
        '<a href="https://greatexpectations.io">Great Expectations</a>'
        "<style>a { background: url('../../../../static/vendor/great_expectations/"
        "full_logo_dark.png') }</style>"
    )


def test_every_vendored_asset_is_shipped():
    vendored = [path.removeprefix(f"{VENDOR}/") for path in CDN_ASSETS.values() if path.startswith(VENDOR)]
    assert vendored and [path for path in vendored if not (ASSETS / path).is_file()] == []


def test_a_cdn_url_without_local_copy_fails_naming_it(tmp_path):
    html = (
        '<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"/>'
        '<script src="https://cdn.example.org/new-widget@2/widget.min.js"></script>'
    )
    with pytest.raises(OfflineAssetMissing, match=r"https://cdn\.example\.org/new-widget@2/widget\.min\.js"):
        localise_page(html, tmp_path / "index.html", tmp_path)
