"""How sure a difference in bits per byte is: a paired bootstrap over the validation documents.

Two models scored on the same validation text pair up document by document (each document's nats
under either model, and its bytes). Resampling the documents with replacement, and taking the
difference of the two models' bits per byte on each resample (a ratio of sums, as the figure
itself is), gives the spread the difference would have on another draw of documents like these.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LN2 = float(np.log(2.0))
RESAMPLES_AT_ONCE = 200  # resamples drawn per step: the index matrix stays small on large corpora


@dataclass(frozen=True)
class Difference:
    """Candidate minus champion, in bits per byte: the difference on the whole text, and the
    interval the bootstrap puts around it."""

    bits_per_byte: float
    low: float
    high: float
    confidence: float
    resamples: int
    documents: int

    def words(self) -> str:
        """As the reason and the reports show it: -0.0031 [-0.0072, +0.0009]."""
        return f"{self.bits_per_byte:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"

    def record(self) -> dict:
        """As promotion.json keeps it; Difference(**record) gives it back."""
        return {
            "bits_per_byte": self.bits_per_byte,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "documents": self.documents,
        }


def paired_difference(
    candidate_nats, champion_nats, document_bytes, resamples: int, confidence: float, seed: int
) -> Difference:
    """The candidate's bits per byte minus the champion's, with a `confidence` percentile interval
    from `resamples` paired resamples of the documents (seeded)."""
    candidate, champion = np.asarray(candidate_nats, np.float64), np.asarray(champion_nats, np.float64)
    sizes = np.asarray(document_bytes, np.float64)
    if not (len(candidate) == len(champion) == len(sizes)) or len(sizes) == 0:
        raise ValueError(
            f"paired documents: {len(candidate)} candidate, {len(champion)} champion and {len(sizes)} "
            "sizes; expected the same non-zero number"
        )
    gained = candidate - champion
    rng = np.random.default_rng(seed)
    differences = []
    for first in range(0, resamples, RESAMPLES_AT_ONCE):
        picked = rng.integers(0, len(sizes), size=(min(RESAMPLES_AT_ONCE, resamples - first), len(sizes)))
        differences.append(gained[picked].sum(axis=1) / sizes[picked].sum(axis=1) / LN2)
    spread = np.concatenate(differences)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(spread, [tail, 100 - tail])
    return Difference(
        float(gained.sum() / sizes.sum() / LN2), float(low), float(high), confidence, resamples, len(sizes)
    )
