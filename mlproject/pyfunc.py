"""The one generation interface: every registered version loads as this MLflow pyfunc.

`predict` takes a DataFrame with a `prompt` column and sampling params, and returns the prompt
and the generated text, so a batch consumer never needs to know which kind of model is champion.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "language_model"
DEFAULT_PARAMS = {"max_length": 200, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 0}


class TextGenerator(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from mlproject.language_model import LanguageModel

        self.model = LanguageModel.load(context.artifacts[MODEL_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        settings = {**DEFAULT_PARAMS, **(params or {})}
        prompts = [str(p) for p in model_input["prompt"]]
        texts = self.model.generate(prompts, int(settings["max_length"]), float(settings["temperature"]),
                                    int(settings["top_k"]), float(settings["top_p"]), int(settings["seed"]))
        return pd.DataFrame({"prompt": prompts, "text": texts})


def signature():
    from mlflow.models import infer_signature

    example = pd.DataFrame({"prompt": ["El "]})
    return infer_signature(example, pd.DataFrame({"prompt": ["El "], "text": ["mundo"]}),
                           params=DEFAULT_PARAMS)
