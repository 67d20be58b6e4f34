"""The `window_rnn` kind: bidirectional Keras layers over a window of preceding tokens (the lyrics
model), predicting the token after the window.

It has no causal state to carry, so it scores and samples by re-reading the window before each
token (`inference.window_logits`, batched and compiled); a text's first tokens are read after the
document separator, padded as a prompt is.
"""

from __future__ import annotations

import numpy as np

from mlproject.config import EvaluateConfig
from mlproject.models.interface import Totals
from mlproject.models.keras_rnn.rnn import RecurrentModel


class WindowModel(RecurrentModel):
    kind = "window_rnn"

    def score(self, text: str, config: EvaluateConfig, batch_size: int = 256) -> Totals:
        """Every token, predicted from the window before it (the first ones after the separator)."""
        from mlproject.models.keras_rnn.inference import window_logits

        logits_of = self.compiled("window_logits", lambda: window_logits(self.network))
        length = self.config.sequence_length
        ids = np.concatenate([self.prime_grid([self.context_ids()])[0], self.vocabulary.encode(text)])
        targets = np.arange(length, len(ids))
        costs = np.zeros(len(targets), np.float64)
        for start in range(0, len(targets), batch_size):
            chunk = targets[start : start + batch_size]
            logits = logits_of(np.stack([ids[t - length : t] for t in chunk])).numpy().astype(np.float64)
            log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
            costs[start : start + len(chunk)] = -log_probs[np.arange(len(chunk)), ids[chunk]]
        return self.totals(text, costs, (targets - length).tolist())

    def prime_grid(self, primes: list[np.ndarray]) -> np.ndarray:
        """The last window of each prompt, right-aligned after separator padding."""
        width = self.config.sequence_length
        fill = int(self.vocabulary.encode(self.separator[-1:] or " ")[0])
        prime = np.full((len(primes), width), fill, dtype=np.int32)
        for row, ids in enumerate(primes):
            ids = ids[-width:]
            prime[row, width - len(ids) :] = ids
        return prime

    def sampler(self):
        from mlproject.models.keras_rnn.inference import make_window_sampler

        return self.compiled("sampler", lambda: make_window_sampler(self.network, not self.vocabulary.speller.fitted))
