"""The bootstrap intervals of a score: the pooled r from summed moments, coverage on data of known correlation,
width that follows how much a few windows carry, and paired differences."""

import numpy as np
import pytest

from ns_dspy.scoring import pooled
from ns_dspy.scoring.bootstrap import Interval, difference_interval, interval, moments, r_of


def _windows(rng, n_top=30, n_random=15, length=64, rho=0.5):
    """Windows whose tokens' prediction and truth correlate at ``rho`` (a common factor per token)."""
    preds, trues, kinds = [], [], []
    for kind, n in (("top", n_top), ("random", n_random)):
        for _ in range(n):
            z = rng.normal(size=length)
            preds.append(5 + 2 * z)
            trues.append(rho * z + np.sqrt(1 - rho ** 2) * rng.normal(size=length))
            kinds.append(kind)
    return preds, trues, kinds


def test_summed_moments_give_the_pooled_score():
    preds, trues, kinds = _windows(np.random.default_rng(0))
    assert float(r_of(moments(preds, trues).sum(axis=0))) == pytest.approx(pooled(preds, trues).r, abs=1e-9)


def test_the_interval_holds_the_score_and_repeats_for_a_seed():
    preds, trues, kinds = _windows(np.random.default_rng(1))
    got = interval(preds, trues, kinds)
    assert pooled(preds, trues).r in got and got.level == 0.9
    assert interval(preds, trues, kinds) == got
    assert interval(preds, trues, kinds, seed=1) != got


def test_more_windows_narrow_the_interval():
    rng = np.random.default_rng(2)
    few = interval(*_windows(rng, n_top=10, n_random=5))
    many = interval(*_windows(rng, n_top=160, n_random=80))
    assert many.width < few.width / 2.5  # 16 times the windows: about a quarter of the width


def test_an_interval_covers_the_true_correlation_about_as_often_as_it_says():
    """200 datasets of 45 windows drawn at a known correlation: the 90% interval holds it in 80-97% of them."""
    rng = np.random.default_rng(3)
    rho = 0.4
    covered = sum(rho in interval(*_windows(rng, rho=rho), resamples=400, seed=k) for k in range(200))
    assert 160 <= covered <= 194, covered


def test_a_score_carried_by_two_windows_has_a_wide_interval():
    """Truth that follows the prediction only through two spikes (as on a neuron whose valid score two tokens
    carried): the score is high, its interval reaches far below it; the same score spread over every window is
    tight."""
    rng = np.random.default_rng(4)
    preds, trues, kinds = _windows(rng, rho=0.0)
    for j in (0, 1):  # two windows where truth and prediction both spike on one token
        preds[j][10], trues[j][10] = 100.0, 60.0
    spiky = interval(preds, trues, kinds)
    score = pooled(preds, trues).r
    assert score > 0.5 and spiky.low < score - 0.4
    spread = interval(*_windows(np.random.default_rng(5), rho=0.6))
    assert spread.width < 0.15 < spiky.width


def test_a_paired_difference_is_zero_for_the_same_predictions_and_clear_for_a_better_one():
    rng = np.random.default_rng(6)
    preds, trues, kinds = _windows(rng, rho=0.5)
    same = difference_interval(preds, preds, trues, kinds)
    assert same.low == same.high == 0.0
    noisy = [p + rng.normal(scale=4.0, size=p.size) for p in preds]  # the same signal under more noise
    lead = difference_interval(preds, noisy, trues, kinds)
    assert lead.low > 0
    # paired: narrower than the difference of two independent intervals would be
    alone = np.hypot(interval(preds, trues, kinds).width, interval(noisy, trues, kinds).width)
    assert lead.width < 0.8 * alone


def test_calibrated_predictions_far_from_zero_keep_their_interval():
    """An offset of a million (a calibration's intercept) changes neither r nor its interval."""
    preds, trues, kinds = _windows(np.random.default_rng(7))
    shifted = [p + 1e6 for p in preds]
    a, b = interval(preds, trues, kinds), interval(shifted, trues, kinds)
    assert a.low == pytest.approx(b.low, abs=1e-6) and a.high == pytest.approx(b.high, abs=1e-6)


def test_mismatched_inputs_are_refused():
    preds, trues, kinds = _windows(np.random.default_rng(8), n_top=3, n_random=2)
    with pytest.raises(ValueError, match="kinds"):
        interval(preds, trues, kinds[:-1])
    with pytest.raises(ValueError, match="predictions for"):
        interval(preds[:-1], trues, kinds)
    with pytest.raises(ValueError, match="level"):
        interval(preds, trues, kinds, level=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        Interval(0.3, 0.1)
