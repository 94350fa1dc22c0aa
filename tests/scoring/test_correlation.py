import math

import numpy as np
import pytest

from ns_dspy.scoring import pearson, pooled


def test_hand_computed_values():
    assert pearson([1, 2, 3], [1, 2, 3]).r == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]).r == pytest.approx(-1.0)
    # means 2.5; dx = (-1.5, -.5, .5, 1.5), dy = (-.5, -1.5, 1.5, .5): sum dx*dy = 3, |dx| = |dy| = sqrt(5)
    assert pearson([1, 2, 3, 4], [2, 1, 4, 3]).r == pytest.approx(0.6)


def test_constant_and_single_token_give_zero_with_a_flag_never_nan():
    for pred, true in [([4, 4, 4], [1, 2, 3]), ([1, 2, 3], [0, 0, 0]), ([7.0], [3.0]), ([], [])]:
        c = pearson(pred, true)
        assert c.r == 0.0 and c.constant and not math.isnan(c.r)
    assert not pearson([1, 2], [1, 3]).constant
    with pytest.raises(ValueError):
        pearson([1, 2], [1, 2, 3])


def test_pooled_is_not_the_mean_of_per_exemplar_correlations():
    preds = [np.array([0.0, 1.0]), np.array([0.0, 1.0])]
    trues = [np.array([0.0, 1.0]), np.array([5.0, 6.0])]
    assert pearson(preds[0], trues[0]).r == pytest.approx(1.0) and pearson(preds[1], trues[1]).r == pytest.approx(1.0)
    # pooled: dx = (-.5, .5, -.5, .5), dy = (-3, -2, 2, 3): sum = 1, |dx| = 1, |dy| = sqrt(26)
    c = pooled(preds, trues, ["top", "random"])
    assert c.r == pytest.approx(1 / math.sqrt(26)) and c.n == 4
    assert c.parts["top"].r == pytest.approx(1.0) and c.parts["random"].r == pytest.approx(1.0)


def test_matches_numpy_on_random_data():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=500), rng.normal(size=500)
    y = y + 0.5 * x
    assert pearson(x, y).r == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
