"""The web page of `mlproject serve`, through the registry's pyfunc interface: its rules in
process, and the page itself in headless Chromium against the real command."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from mlflow import MlflowClient

from infra.servers import free_port
from mlproject.config import ServeConfig
from mlproject.serving.page import Studio
from tests.conftest import run, server_process, write_params

GOOD = (30, 0.7, 0, 0.95, 1)  # max_length, temperature, top_k, top_p, seed


@pytest.fixture(scope="module")
def studio(two_versions):
    return Studio("text-generator", ServeConfig(max_length_limit=100, cached_versions=1), two_versions.store)


def test_the_pickers_offer_the_aliases_then_every_version(studio):
    values = [value for _, value in studio.choices()]
    assert values == ["champion", "challenger", "2", "1"]
    assert "champion (v1, rnn)" in dict((v, k) for k, v in studio.choices())["champion"]


def test_a_version_answers_with_its_kind_and_figure_and_stays_loaded(studio):
    answer = studio.answer("challenger", "El ", GOOD)
    assert answer.text and answer.about.startswith("**v2** @challenger · `gpt` ·") and "bits per byte" in answer.about
    assert list(studio.loaded) == ["2"]
    studio.answer("1", "El ", GOOD)
    assert list(studio.loaded) == ["1"]  # cached_versions: 1, the least recently used dropped


@pytest.mark.parametrize(
    "prompt, settings, message",
    [
        ("", GOOD, "prompt: empty"),
        ("   ", GOOD, "prompt: empty"),
        ("El ", (101, 0.7, 0, 0.95, 1), "max_length = 101: expected at most 100 (serve.max_length_limit)"),
        ("El ", (30, -1, 0, 0.95, 1), "temperature = -1.0: expected a value >= 0.0"),
        ("El ", (30, 0.7, 0, 0.0, 1), "top_p = 0.0: expected a value > 0.0"),
        ("El ", (None, 0.7, 0, 0.95, 1), "max_length = None: expected int"),
    ],
)
def test_bad_input_gets_one_line_and_no_text(studio, prompt, settings, message):
    answer = studio.answer("champion", prompt, settings)
    assert answer.text == "" and answer.about.startswith("⚠️ ") and message in answer.about, answer.about
    assert "\n" not in answer.about


def test_an_unknown_version_is_named_with_the_known_ones(studio):
    answer = studio.answer("7", "El ", GOOD)
    assert (
        answer.about == "⚠️ model '7': no such version or alias of text-generator; known: champion, challenger, v2, v1"
    )


@contextmanager
def serving(two_versions, tmp_path: Path):
    """`mlproject serve` as a user starts it, on a free port; Ctrl-C stops it, as a user would."""
    params = yaml.safe_load(two_versions.params.read_text())
    params["serve"].update(port=free_port(), max_length_limit=100)
    params_path = write_params(tmp_path, params)
    url = f"http://127.0.0.1:{params['serve']['port']}/"
    with server_process(
        ["mlproject", "serve", "--params", str(params_path)], two_versions.project, url, tmp_path / "serve.log"
    ) as process:
        yield url
    assert process.returncode == 0


def generate_and_read(page, side: str, expected: str) -> tuple[str, str]:
    """Press Generate and read one side once it shows `expected` (which the last answer did not)."""
    from playwright.sync_api import expect

    page.locator("#generate").click()
    expect(page.locator(f"#about_{side}")).to_contain_text(expected, timeout=120_000)
    return page.locator(f"#about_{side}").inner_text(), page.locator(f"#text_{side} textarea").input_value()


def test_the_page_writes_with_the_champion_then_two_versions_side_by_side(two_versions, tmp_path, browser_page):
    page = browser_page.page
    with serving(two_versions, tmp_path) as url:
        page.goto(url)
        page.locator("#prompt textarea").fill("La vida ")
        about, text = generate_and_read(page, "a", "v1")
        assert about.startswith("v1 @champion · rnn ·") and "bits per byte" in about and text.strip()

        page.locator("#model_b input").click()
        page.get_by_role("option", name="v2 @challenger (gpt)").click()
        source = MlflowClient(two_versions.store, two_versions.store).get_model_version_download_uri(
            "text-generator", "2"
        )
        broken = Path(source).with_name("moved-away")
        Path(source).rename(broken)  # v2 cannot load: the page says so and v1 still writes
        try:
            about_b = generate_and_read(page, "b", "could not be loaded")[0]
            assert about_b.startswith("⚠️ v2 could not be loaded") and page.locator("#text_a textarea").input_value()
        finally:
            broken.rename(source)
        about_b, text_b = generate_and_read(page, "b", "gpt")
        assert about_b.startswith("v2 @challenger · gpt ·") and text_b.strip()
        assert page.locator("#about_a").inner_text().startswith("v1 @champion")
        browser_page.screenshot(tmp_path / "serve-side-by-side.png")

        page.locator("#temperature input").fill("-1")
        assert generate_and_read(page, "a", "temperature")[0] == "⚠️ temperature = -1.0: expected a value >= 0.0"
        page.locator("#temperature input").fill("0.7")
        page.locator("#prompt textarea").fill("")
        assert generate_and_read(page, "a", "prompt")[0].startswith("⚠️ prompt: empty")
        page.locator("#prompt textarea").fill("El ")
        assert generate_and_read(page, "a", "v1")[0].startswith("v1 @champion")  # still serving

        taken = run(
            ["mlproject", "serve", "--params", str(tmp_path / "params.yaml")], two_versions.project, check=False
        )
        assert taken.returncode == 2 and taken.stderr.splitlines()[-1].startswith(
            f"mlproject serve: error: serve.port = {urlparse(url).port}: cannot listen on 127.0.0.1"
        ), taken.stderr[-2000:]
    assert browser_page.blocked == []  # nothing asked of the network: the page works offline
