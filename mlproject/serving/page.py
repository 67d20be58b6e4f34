"""`mlproject serve`: a web page (Gradio) that writes with the champion, the challenger or any
registered version, one or two side by side.

Every version loads through the one pyfunc interface, so the page never knows which kind answers.
A request the page cannot serve (bad settings, an unknown version, a version that fails to load)
gets one line in the page; the server keeps serving.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
        self.lock = threading.Lock()  # one load or generation at a time: 2 models in memory, not 2 x 2

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
        if version in self.loaded:
            self.loaded.move_to_end(version)
            return self.loaded[version]
        import mlflow

        from mlproject.tracking.pyfunc import load_version

        try:  # from this page's store, whatever MLflow's process-wide URIs say
            source = self.client.get_model_version_download_uri(self.name, version)
            folder = mlflow.artifacts.download_artifacts(source, tracking_uri=self.tracking_uri)
            model = load_version(folder)
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

    def write(self, choice: str, prompt: str, sampling: Sampling) -> Answer:
        import pandas as pd

        row = self.resolve(choice)
        with self.lock:
            model = self.model(row.version)
            frame = model.predict(pd.DataFrame({"prompt": [prompt]}), params=vars(sampling))
        aliases = "".join(f" @{alias}" for alias in row.aliases)
        figure = f"{row.bits_per_byte:.4f} bits per byte" if row.bits_per_byte is not None else "not scored"
        return Answer(str(frame["text"][0]), f"**v{row.version}**{aliases} · `{row.kind}` · {figure} on validation")

    def answer(self, choice: str, prompt: str, settings: tuple) -> Answer:
        """What the page shows for one version: its text, or one line saying why there is none."""
        try:
            if not prompt or not prompt.strip():
                raise Refused("prompt: empty; type the beginning of a text for the model to continue")
            return self.write(choice, prompt, self.sampling(*settings))
        except Refused as refused:
            return Answer("", f"⚠️ {refused}")


def build_page(studio: Studio, defaults: GenerateConfig, seed: int):
    import gradio as gr

    with gr.Blocks(title=f"{studio.name}: write with a registered model") as page:
        gr.Markdown(
            f"## Write with `{studio.name}`\nPick a version (the champion by default), type the "
            "beginning of a text and press **Generate**. Pick a second version to compare them "
            "side by side on the same prompt and settings."
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
        generate = gr.Button("Generate", variant="primary", elem_id="generate")
        with gr.Row():
            outputs, pickers = [], []
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
                    outputs.append(gr.Markdown(elem_id=f"about_{side}"))
                    outputs.append(gr.Textbox(label="Text", lines=8, interactive=False, elem_id=f"text_{side}"))

        def refresh():
            choices = studio.choices()
            return gr.Dropdown(choices=choices), gr.Dropdown(choices=[("(none)", NONE), *choices])

        def write(choice_a, choice_b, prompt_text, *settings):
            first = studio.answer(choice_a or "champion", prompt_text, settings)
            second = studio.answer(choice_b, prompt_text, settings) if choice_b else Answer("", "")
            return first.about, first.text, second.about, second.text

        page.load(refresh, outputs=pickers)
        generate.click(
            write, inputs=[*pickers, prompt, max_length, temperature, top_k, top_p, seed_box], outputs=outputs
        )
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
