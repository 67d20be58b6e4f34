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


@pytest.mark.parametrize("version", ["1", "2"])  # the char-RNN and the GPT
def test_streaming_grows_the_text_and_ends_with_the_batch_calls_text(studio, version):
    from mlproject.config import Sampling

    model = studio.model(version).unwrap_python_model().model
    sampling = Sampling(max_length=60, temperature=0.7, top_p=0.95, seed=3)
    texts = list(model.stream("La vida ", sampling))
    assert texts[-1] == model.generate(["La vida "], sampling)[0] != ""
    assert len(texts) > 2 and all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:]))


@pytest.mark.parametrize("version", ["1", "2"])
def test_stop_ends_the_text_where_it_is(studio, version):
    import threading

    from mlproject.config import Sampling

    model, stop = studio.model(version).unwrap_python_model().model, threading.Event()
    sampling = Sampling(max_length=100, temperature=0.0)
    texts = []
    for text in model.stream("El ", sampling, stop):
        texts.append(text)
        stop.set()
    whole = model.generate(["El "], sampling)[0]
    assert whole.startswith(texts[-1]) and len(texts[-1]) < len(whole)


def test_side_by_side_each_writes_its_whole_text_and_stop_ends_both(studio):
    from mlproject.config import Sampling
    from mlproject.serving.page import interleaved

    settings = (40, 0.7, 0, 0.95, 2)
    whole = {v: studio.model(v).unwrap_python_model().model.generate(["El "], Sampling(*settings)) for v in "12"}
    last = {}
    for side, answer in interleaved([studio.writer(v, "El ", settings) for v in "12"]):
        last["12"[side]] = answer
    assert {v: [a.text] for v, a in last.items()} == whole  # the first to end does not cut the other short
    assert not any("stopped" in a.about for a in last.values())
    studio.stop.set()
    try:
        assert all(a.about.endswith(" · stopped") for a in (studio.answer(v, "El ", settings) for v in "12"))
    finally:
        studio.stop.clear()


def test_both_sides_grow_together():
    from mlproject.serving.page import interleaved

    assert list(interleaved([iter("ab"), iter("xyz")])) == [(0, "a"), (1, "x"), (0, "b"), (1, "y"), (1, "z")]


def test_a_version_picked_is_loaded_saying_so(two_versions):
    studio = Studio("text-generator", ServeConfig(cached_versions=2), two_versions.store)
    said = list(studio.prepare("challenger"))
    assert said[0].startswith("⏳ loading · **v2** @challenger") and said[-1].endswith("loaded, ready to write")
    assert list(studio.loaded) == ["2"] and list(studio.prepare("2")) == [said[-1]]  # once
    assert list(studio.prepare("9"))[-1].startswith("⚠️ model '9': no such version")


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
    params["serve"].update(port=free_port(), max_length_limit=1000)
    params_path = write_params(tmp_path, params)
    url = f"http://127.0.0.1:{params['serve']['port']}/"
    with server_process(
        ["mlproject", "serve", "--params", str(params_path)], two_versions.project, url, tmp_path / "serve.log"
    ) as process:
        yield url
    assert process.returncode == 0


# The text of an element's markdown (not the progress Gradio lays over it).
TEXT = "id => (document.querySelector('#' + id + ' .prose') || {innerText: ''}).innerText"


def shown(page, element: str) -> str:
    return page.evaluate(f"({TEXT})('{element}')")


def generation_number(page) -> int:
    status = shown(page, "status")
    return int(status.split()[1].rstrip(":")) if status.startswith("Generation ") else 0


def generate(page) -> int:
    """Press Generate; the number of the generation it starts."""
    number = generation_number(page) + 1
    page.locator("#generate").click()
    return number


def wait_for_status(page, words: str) -> None:
    page.wait_for_function(f"() => ({TEXT})('status').startsWith({words!r})", timeout=120_000)


def generate_and_read(page, side: str) -> tuple[str, str]:
    """Press Generate and read one side once the page says that generation has finished."""
    wait_for_status(page, f"Generation {generate(page)} finished")
    return shown(page, f"about_{side}"), page.locator(f"#text_{side} textarea").input_value()


def test_the_page_writes_with_the_champion_then_two_versions_side_by_side(two_versions, tmp_path, browser_page):
    from playwright.sync_api import expect

    page = browser_page.page
    with serving(two_versions, tmp_path) as url:
        page.goto(url)
        expect(page.locator("#about_a")).to_contain_text("loaded, ready to write", timeout=60_000)  # at once
        page.locator("#prompt textarea").fill("La vida ")
        line, text = generate_and_read(page, "a")
        assert line.startswith("v1 @champion · rnn ·") and "bits per byte" in line and text.strip()

        source = MlflowClient(two_versions.store, two_versions.store).get_model_version_download_uri(
            "text-generator", "2"
        )
        broken = Path(source).with_name("moved-away")
        Path(source).rename(broken)  # v2 cannot load: the page says so when it is picked; v1 still writes
        try:
            page.locator("#model_b input").click()
            page.get_by_role("option", name="v2 @challenger (gpt)").click()
            expect(page.locator("#about_b")).to_contain_text("⚠️ v2 could not be loaded", timeout=60_000)
            about_b = generate_and_read(page, "b")[0]
            assert about_b.startswith("⚠️ v2 could not be loaded") and page.locator("#text_a textarea").input_value()
        finally:
            broken.rename(source)
        about_b, text_b = generate_and_read(page, "b")
        assert about_b.startswith("v2 @challenger · gpt ·") and text_b.strip()
        assert shown(page, "about_a").startswith("v1 @champion")
        browser_page.screenshot(tmp_path / "serve-side-by-side.png")

        # Long texts stream: both sides show text while the GPT is still writing, and the text seen
        # then is the beginning of what it ends with; Stop ends it where it is.
        page.locator("#max_length input").fill("1000")
        page.locator("#temperature input").fill("0")
        number = generate(page)
        wait_for_status(page, f"Generation {number}: writing")
        expect(page.locator("#text_b textarea")).not_to_have_value("", timeout=60_000)
        early = page.locator("#text_b textarea").input_value()
        assert "writing" in shown(page, "about_b") and shown(page, "status").endswith("writing…")
        wait_for_status(page, f"Generation {number} finished")
        whole = page.locator("#text_b textarea").input_value()
        assert whole.startswith(early) and len(early) < len(whole), (len(early), len(whole))
        number = generate(page)
        wait_for_status(page, f"Generation {number}: writing")
        page.locator("#stop").click()
        wait_for_status(page, f"Generation {number} stopped after")
        stopped = page.locator("#text_b textarea").input_value()
        assert whole.startswith(stopped) and len(stopped) < len(whole) and shown(page, "about_b").endswith("stopped")
        page.locator("#max_length input").fill("30")

        page.locator("#temperature input").fill("-1")
        assert generate_and_read(page, "a")[0] == "⚠️ temperature = -1.0: expected a value >= 0.0"
        page.locator("#temperature input").fill("0.7")
        page.locator("#prompt textarea").fill("")
        assert generate_and_read(page, "a")[0].startswith("⚠️ prompt: empty")
        page.locator("#prompt textarea").fill("El ")
        assert generate_and_read(page, "a")[0].startswith("v1 @champion")  # still serving

        taken = run(
            ["mlproject", "serve", "--params", str(tmp_path / "params.yaml")], two_versions.project, check=False
        )
        assert taken.returncode == 2 and taken.stderr.splitlines()[-1].startswith(
            f"mlproject serve: error: serve.port = {urlparse(url).port}: cannot listen on 127.0.0.1"
        ), taken.stderr[-2000:]
    assert browser_page.blocked == []  # nothing asked of the network: the page works offline
