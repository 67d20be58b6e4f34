"""The paired bootstrap promotion trusts, on synthetic documents whose answer is known."""

import numpy as np
import pytest

from mlproject.config import ConfigError, PromoteConfig, parse_section
from mlproject.tracking.paired_bootstrap import LN2, paired_difference
from mlproject.tracking.promotion import decide

RNG = np.random.default_rng(7)
SIZES = RNG.integers(40, 400, 300)  # bytes of 300 documents
CHAMPION = SIZES * RNG.uniform(1.5, 3.0, 300) * LN2  # nats: 1.5 to 3 bits per byte each


def difference(candidate, champion=CHAMPION, seed=1):
    return paired_difference(candidate, champion, SIZES, resamples=2000, confidence=0.95, seed=seed)


def test_a_clear_win_lies_wholly_below_zero_and_is_promoted():
    better = CHAMPION - SIZES * 0.05 * LN2 + RNG.normal(0, 2, 300)  # 0.05 bits per byte better, noisy
    found = difference(better)
    assert found.bits_per_byte == pytest.approx((better.sum() - CHAMPION.sum()) / SIZES.sum() / LN2)
    assert found.low < found.bits_per_byte < found.high < 0
    promoted, reason = decide(2.0, 2.05, 0.0, found)
    assert promoted and reason.startswith(f"better beyond doubt: {found.words()} bits per byte (95% interval")


def test_a_tie_straddles_zero_and_stays_challenger_even_when_slightly_ahead():
    noise = RNG.normal(0, 20, 300)
    tie = CHAMPION + noise - noise.mean() - 0.5  # ahead by half a nat a document: a few thousandths
    found = difference(tie)
    assert -0.005 < found.bits_per_byte < 0 and found.low < 0 < found.high
    promoted, reason = decide(1.9999, 2.0, 0.0, found)
    assert not promoted
    assert reason.startswith(f"not better beyond doubt: {found.bits_per_byte:+.4f} [{found.low:+.4f}, ")


def test_a_loss_lies_wholly_above_zero():
    worse = CHAMPION + SIZES * 0.2 * LN2
    found = difference(worse)
    assert 0 < found.low <= found.bits_per_byte <= found.high
    assert found.bits_per_byte == pytest.approx(0.2)
    assert not decide(2.2, 2.0, 0.0, found)[0]


def test_the_margin_must_be_cleared_by_the_whole_interval():
    found = difference(CHAMPION - SIZES * 0.05 * LN2)  # exactly 0.05 better on every document: no spread
    assert found.low == pytest.approx(-0.05) and found.high == pytest.approx(-0.05)
    assert decide(1.95, 2.0, 0.04, found)[0] and not decide(1.95, 2.0, 0.06, found)[0]


def test_the_same_seed_gives_the_same_interval_and_another_seed_nearly_the_same():
    noisy = CHAMPION + RNG.normal(0, 10, 300)
    first, again, other = difference(noisy), difference(noisy), difference(noisy, seed=2)
    assert first == again
    assert other.bits_per_byte == first.bits_per_byte and other.low == pytest.approx(first.low, abs=0.002)


def test_documents_that_do_not_pair_up_are_refused():
    with pytest.raises(ValueError, match="300 candidate, 299 champion and 300 sizes"):
        paired_difference(CHAMPION, CHAMPION[:-1], SIZES, 100, 0.95, 1)


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"confidence": 1.0}, "promote.confidence = 1.0"),
        ({"confidence": 0.3}, "promote.confidence = 0.3"),
        ({"bootstrap_resamples": 10}, "promote.bootstrap_resamples = 10"),
    ],
)
def test_a_bootstrap_setting_out_of_range_is_one_line_naming_it(values, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_section(PromoteConfig, values, "promote")
