"""`mlproject serve`: a web page (Gradio) that writes with the champion, the challenger or any
registered version, one or two side by side, the text appearing as it is written.

Every version loads through the one pyfunc interface, so the page never knows which kind answers;
a version picked is loaded at once, in the background. A request the page cannot serve (bad
settings, an unknown version, a version that fails to load) gets one line in the page; the server
keeps serving.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass

from mlproject.config import ConfigError, GenerateConfig, Sampling, ServeConfig, StageFailed

ALIASES = ("champion", "challenger")
NONE = ""  # the second picker's "no second version"


class Refused(Exception):
    """A request the page answers with one line instead of text."""


@dataclass(frozen=True)
class Answer:
    text: str
    about: str  # which version answered (its kind and figure), or why nothing was written


class Studio:
    """The registered versions of one model name and the loaded ones, least recently used dropped."""

    def __init__(self, model_name: str, config: ServeConfig, tracking_uri: str):
        from mlflow import MlflowClient

        self.name, self.config, self.tracking_uri = model_name, config, tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.loaded: OrderedDict[str, object] = OrderedDict()
        self.lock = threading.Lock()  # one load at a time: a version picked twice loads once
        self.stop = threading.Event()  # set by the Stop button: the texts being written end there

    def versions(self) -> list:
        from mlproject.tracking.comparison import version_rows

        return version_rows(self.client, self.name)

    def choices(self) -> list[tuple[str, str]]:
        """The picker's entries: each alias that is set, then every version, newest first."""
        rows = self.versions()
        entries = [
            (f"{alias} (v{row.version}, {row.kind})", alias)
            for alias in ALIASES
            for row in rows
            if alias in row.aliases
        ]
        return entries + [(row.label, row.version) for row in rows]

    def resolve(self, choice: str):
        """The version row a picker value names (an alias or a version number): two or three
        queries, however many versions there are."""
        import mlflow

        from mlproject.tracking.comparison import aliases_of, version_row

        try:
            if choice in ALIASES:
                version = self.client.get_model_version_by_alias(self.name, choice)
            else:
                version = self.client.get_model_version(self.name, str(int(choice)))
        except (ValueError, mlflow.exceptions.MlflowException):
            rows = self.versions()
            known = (
                ", ".join(
                    [alias for alias in ALIASES if any(alias in r.aliases for r in rows)]
                    + [f"v{r.version}" for r in rows]
                )
                or "none yet (run the pipeline: make run)"
            )
            raise Refused(f"model {choice!r}: no such version or alias of {self.name}; known: {known}") from None
        return version_row(self.client, version, aliases_of(self.client, self.name).get(str(version.version), []))

    def model(self, version: str):
        """The version's pyfunc, loaded once."""
        with self.lock:
            return self.load(version)

    def load(self, version: str):
        if version in self.loaded:
            self.loaded.move_to_end(version)
            return self.loaded[version]
        import mlflow

        from mlproject.tracking.pyfunc import load_version

        try:  # from this page's store, whatever MLflow's process-wide URIs say
            source = self.client.get_model_version_download_uri(self.name, version)
            folder = mlflow.artifacts.download_artifacts(source, tracking_uri=self.tracking_uri)
            model = load_version(folder)
            # Two short texts from prompts of two lengths: compiled generation (the Keras kinds'
            # graphs) is traced now, while the page says loading, not on the first Generate.
            for prompt in ("El ", "La vida "):
                model.unwrap_python_model().model.generate([prompt], Sampling(max_length=2))
        except Exception as error:  # whatever broke inside the version, the page stays up
            reason = " ".join(str(error).split())[:300]
            raise Refused(f"v{version} could not be loaded ({type(error).__name__}: {reason})") from None
        self.loaded[version] = model
        while len(self.loaded) > self.config.cached_versions:
            self.loaded.popitem(last=False)
        return model

    def sampling(self, max_length, temperature, top_k, top_p, seed) -> Sampling:
        values = {"max_length": max_length, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        # A number box sends floats: a whole number stays a whole number for the integer settings.
        values = {
            key: int(value)
            if isinstance(value, float) and value.is_integer() and key in ("max_length", "top_k", "seed")
            else value
            for key, value in values.items()
        }
        try:
            sampling = Sampling.checked(values, "")
        except ConfigError as error:
            raise Refused(str(error).lstrip(".")) from None
        if sampling.max_length > self.config.max_length_limit:
            raise Refused(
                f"max_length = {sampling.max_length}: expected at most "
                f"{self.config.max_length_limit} (serve.max_length_limit)"
            )
        return sampling

    @staticmethod
    def about(row) -> str:
        aliases = "".join(f" @{alias}" for alias in row.aliases)
        figure = f"{row.bits_per_byte:.4f} bits per byte" if row.bits_per_byte is not None else "not scored"
        return f"**v{row.version}**{aliases} · `{row.kind}` · {figure} on validation"

    def writer(self, choice: str, prompt: str, settings: tuple) -> Iterator[Answer]:
        """What the page shows for one version as it writes: the text so far, then all of it (or
        what was written when Stop was pressed); or one line saying why there is none."""
        from mlproject.config import checked_prompts

        try:
            if not prompt or not prompt.strip():
                raise Refused("prompt: empty; type the beginning of a text for the model to continue")
            sampling = self.sampling(*settings)
            row = self.resolve(choice)
            about = self.about(row)
            model = self.model(row.version).unwrap_python_model().model
            text = ""
            for text in model.stream(checked_prompts([prompt])[0], sampling, self.stop):
                yield Answer(text, f"✍️ writing… · {about}")
            yield Answer(text, f"{about} · stopped" if self.stop.is_set() else about)
        except Refused as refused:
            yield Answer("", f"⚠️ {refused}")

    def answer(self, choice: str, prompt: str, settings: tuple) -> Answer:
        """What the page shows for one version once it has written."""
        return deque(self.writer(choice, prompt, settings), maxlen=1)[0]

    def prepare(self, choice: str) -> Iterator[str]:
        """Load the version picked, saying so, so that Generate finds it ready."""
        if not choice:
            yield ""
            return
        try:
            row = self.resolve(choice)
            if row.version not in self.loaded:
                yield f"⏳ loading · {self.about(row)}"
                self.model(row.version)
            yield f"{self.about(row)} · loaded, ready to write"
        except Refused as refused:
            yield f"⚠️ {refused}"


def interleaved(streams: list[Iterator]) -> Iterator[tuple[int, object]]:
    """(index, item) from each iterator in turn, until every one is spent: side by side, both
    texts grow together."""
    live = dict(enumerate(streams))
    while live:
        for index, stream in list(live.items()):
            try:
                yield index, next(stream)
            except StopIteration:
                del live[index]


def build_page(studio: Studio, defaults: GenerateConfig, seed: int):
    import gradio as gr

    with gr.Blocks(title=f"{studio.name}: write with a registered model") as page:
        gr.Markdown(
            f"## Write with `{studio.name}`\nPick a version (the champion by default), type the "
            "beginning of a text and press **Generate**: the text appears as it is written, and "
            "**Stop** ends it there. Pick a second version to compare them side by side on the same "
            "prompt and settings."
        )
        prompt = gr.Textbox(label="Prompt", lines=2, value="El ", elem_id="prompt")
        with gr.Row():
            max_length = gr.Number(
                label="Maximum length (tokens)",
                value=min(defaults.max_length, studio.config.max_length_limit),
                precision=0,
                elem_id="max_length",
            )
            temperature = gr.Number(label="Temperature (0: greedy)", value=defaults.temperature, elem_id="temperature")
            top_k = gr.Number(label="Top-k (0: off)", value=defaults.top_k, precision=0, elem_id="top_k")
            top_p = gr.Number(label="Top-p (1: off)", value=defaults.top_p, elem_id="top_p")
            seed_box = gr.Number(label="Seed", value=seed, precision=0, elem_id="seed")
        with gr.Row():
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            stop = gr.Button("Stop", variant="stop", elem_id="stop")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            outputs, pickers, abouts = [], [], []
            for side, default in (("a", "champion"), ("b", NONE)):
                with gr.Column():
                    pickers.append(
                        gr.Dropdown(
                            label="Model" if side == "a" else "Compare with",
                            value=default,
                            choices=[],
                            allow_custom_value=True,
                            elem_id=f"model_{side}",
                        )
                    )
                    abouts.append(gr.Markdown(elem_id=f"about_{side}"))
                    outputs.append(abouts[-1])
                    outputs.append(gr.Textbox(label="Text", lines=8, interactive=False, elem_id=f"text_{side}"))

        def refresh():
            choices = studio.choices()
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=[("(none)", NONE), *choices])

        generations = itertools.count(1)

        def write(choice_a, choice_b, prompt_text, *settings):
            number, started = next(generations), time.perf_counter()
            studio.stop.clear()
            shown = [Answer("", ""), Answer("", "")]
            sides = [studio.writer(choice_a or "champion", prompt_text, settings)]
            if choice_b:
                sides.append(studio.writer(choice_b, prompt_text, settings))

            def page_state(status: str) -> tuple:
                return shown[0].about, shown[0].text, shown[1].about, shown[1].text, status

            for side, answer in interleaved(sides):
                shown[side] = answer
                yield page_state(f"Generation {number}: writing…")
            ended = "stopped after" if studio.stop.is_set() else "finished in"
            yield page_state(f"Generation {number} {ended} {time.perf_counter() - started:.2f} s")

        page.load(refresh, outputs=pickers).then(studio.prepare, inputs=pickers[0], outputs=abouts[0])
        for picker, about in zip(pickers, abouts):
            picker.input(studio.prepare, inputs=picker, outputs=about)
        generate.click(
            write,
            inputs=[*pickers, prompt, max_length, temperature, top_k, top_p, seed_box],
            outputs=[*outputs, status],
        )
        stop.click(studio.stop.set, queue=False)
    return page


def serve(config: ServeConfig, model_name: str, defaults: GenerateConfig, seed: int, tracking_uri: str) -> None:
    """Serve the page until Ctrl-C."""
    studio = Studio(model_name, config, tracking_uri)
    page = build_page(studio, defaults, seed)
    print(
        f"serve: {model_name} from {tracking_uri} on http://{config.host}:{config.port} (Ctrl-C stops it)", flush=True
    )
    try:
        page.queue().launch(
            server_name=config.host, server_port=config.port, ssr_mode=False, show_error=False, quiet=True, share=False
        )
    except OSError as error:  # Gradio's word for an address it cannot listen on
        raise StageFailed(
            f"serve.port = {config.port}: cannot listen on {config.host}:{config.port} "
            f"({str(error).splitlines()[0]}); stop what holds it, or choose another port"
        ) from None
