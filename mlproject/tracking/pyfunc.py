"""The one generation interface: every registered version loads as this MLflow pyfunc.

`predict` takes a DataFrame with a `prompt` column and sampling params, and returns the prompt
and the generated text, so a batch consumer never needs to know which kind of model is champion.
"""

from __future__ import annotations

import dataclasses
import sys

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "language_model"


def load_version(uri: str):
    """A registered version as a pyfunc, run by this process's own mlproject. MLflow puts the
    version's copy of the code (its kind's package only) first on sys.path to load it; it comes off
    again here, or every process started later from this one (a Dask worker) would import mlproject
    from that copy and fail to load a version of another kind."""
    path = list(sys.path)
    try:
        return mlflow.pyfunc.load_model(uri)
    finally:
        sys.path[:] = path


def default_params() -> dict:
    from mlproject.config import Sampling

    return dataclasses.asdict(Sampling())


class TextGenerator(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from mlproject.models import kinds

        self.model = kinds.load(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Refuses bad settings and prompts with a ConfigError naming the first one."""
        from mlproject.config import Sampling, checked_prompts

        sampling = Sampling.checked({**default_params(), **(params or {})}, "params")
        prompts = checked_prompts(model_input["prompt"])
        return pd.DataFrame({"prompt": prompts, "text": self.model.generate(prompts, sampling)})


def signature():
    from mlflow.models import infer_signature

    example = pd.DataFrame({"prompt": ["El "]})
    return infer_signature(example, pd.DataFrame({"prompt": ["El "], "text": ["mundo"]}), params=default_params())
