"""Model kinds: each one package behind the LanguageModel interface (interface.py).

`KINDS` maps a kind's name (`train.kind` in params) to its class and `SETTINGS` to the dataclass
of its own settings (params.yaml `train.<kind>`, declared in its package); `kinds.py` imports a
kind only when it is used, so loading a Keras model never imports torch and the reverse. Adding a
kind: one package, a line in each mapping, a link in by_kind/ (`train.kind` takes its choices from KINDS).
"""

# Read by config.py, so by every stage: this module holds nothing else.
KINDS = {
    "rnn": "mlproject.models.keras_rnn.rnn:RecurrentModel",
    "window_rnn": "mlproject.models.keras_rnn.window_rnn:WindowModel",
    "finetune": "mlproject.models.transformers_lm.finetune:FineTunedLM",
    "gpt": "mlproject.models.transformers_lm.gpt:ScratchGPT",
}
SETTINGS = {
    "rnn": "mlproject.models.keras_rnn.settings:RnnTraining",
    "window_rnn": "mlproject.models.keras_rnn.settings:WindowRnnTraining",
    "finetune": "mlproject.models.transformers_lm.settings:FinetuneTraining",
    "gpt": "mlproject.models.transformers_lm.settings:GptTraining",
}
# The kinds `train.runner: auto` sends to a GPU work pool when a deployed training run has one.
WANT_A_GPU = ("finetune", "gpt")
