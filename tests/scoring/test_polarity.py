"""Explanations of the negative side: the marker, the negated simulation, the union that adds negative modes, and
the statistical explainer adding a list of the lowest tokens when a unit is pushed below its usual level there.
The keyword simulator predicts 10 on a token whose word the explanation names and 0 elsewhere (the vocabulary
avoids "the", "word(s)" and "and", which every word list names), so every number here can be worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import negative_explanations, ranked_tokens
from ns_dspy.config import ExplainConfig
from ns_dspy.errors import ConfigError
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut, polysemantic, score
from ns_dspy.scoring.calibration import calibrate, union
from ns_dspy.scoring.correlation import pooled
from ns_dspy.scoring.heldout import simulate
from ns_dspy.scoring.polarity import MARKER, is_negative, negative, simulated_text
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(0, 1)
VOCAB = [" dog", " cat", " mat", " sat", " ran", " on", " sky", " big", " red", " zip", " zap"]
SIGNED = {" dog": 6.0, " zip": -8.0, " zap": -8.0}  # fires on dog, pushed far down on zip and zap


def _exemplars(split: str, seed: int, values: dict[str, float] = SIGNED, n_top: int = 12,
               n_random: int = 12, vocab: list[str] = VOCAB, quiet: float = 0.5) -> list[Exemplar]:
    """Windows of 12 random words of ``vocab``, each at its value (``quiet`` if it has none) plus a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for kind, n in (("top", n_top), ("random", n_random)):
        for _ in range(n):
            tokens = [vocab[i] for i in rng.integers(0, len(vocab), 12)]
            acts = (np.array([values.get(t, quiet) for t in tokens], np.float32)
                    + rng.normal(0, 0.1, 12).astype(np.float32))
            out.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return out


def test_the_marker_is_read_stripped_and_added_once():
    text = '(negative) the words "the" and "of"'
    assert is_negative(text) and is_negative("  (Negative)  the word \"a\"") and not is_negative('the word "a"')
    assert not is_negative('the word "(negative)"')
    assert simulated_text(text) == 'the words "the" and "of"' and simulated_text('the word "a"') == 'the word "a"'
    assert negative('the word "a"') == f'{MARKER} the word "a"' and negative(text) == text


def test_a_negative_explanation_is_simulated_without_its_marker_and_negated():
    ex = _exemplars("valid", 1, n_top=2, n_random=0)
    pos, neg = simulate(KeywordSimulator(), ['the word "zip"', '(negative) the word "zip"'], ex)
    for p, q, e in zip(pos, neg, ex):
        assert np.array_equal(q, -p)
        assert set(np.flatnonzero(p)) == {i for i, t in enumerate(e.tokens) if t == " zip"}
    with pytest.raises(ConfigError, match="only the negative marker"):
        score(KeywordSimulator(), ["(negative)  "], HeldOut(UNIT, "valid", tuple(ex)))


def test_a_single_negative_explanation_scores_the_correlation_of_its_negated_prediction():
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1)))
    plain, neg = score(KeywordSimulator(), ['the words "zip" and "zap"', '(negative) the words "zip" and "zap"'], valid)
    assert plain.value < -0.5 and neg.value == pytest.approx(-plain.value, abs=1e-12)


def test_union_adds_the_negative_modes_minimum_to_the_positive_maximum():
    p1 = [np.array([10.0, 0.0, 0.0, 0.0])]
    p2 = [np.array([0.0, 10.0, 0.0, 0.0])]
    n1 = [np.array([0.0, 0.0, -10.0, 0.0])]
    n2 = [np.array([0.0, -10.0, -10.0, -10.0])]
    raw = union([p1, p2, n1, n2], negative=[False, False, True, True])[0]
    assert raw.tolist() == [10.0, 0.0, -10.0, -10.0]  # max of the positives + min of the negatives
    assert union([n1], negative=[True])[0].tolist() == n1[0].tolist()  # one explanation: itself
    assert union([p1, p2])[0].tolist() == [10.0, 10.0, 0.0, 0.0]  # no negatives: the maximum, as before
    with pytest.raises(ValueError, match="polarities"):
        union([p1, p2], negative=[True])


def test_calibrated_union_takes_polarity_from_the_texts_and_adds_the_negative_deviation():
    truth = [np.array([6.0, 0.5, -8.0, 0.5, 6.0, -8.0])]
    pos = [np.array([10.0, 0.0, 0.0, 0.0, 10.0, 0.0])]
    neg = [np.array([0.0, 0.0, -10.0, 0.0, 0.0, -10.0])]
    cal = calibrate(["the word \"dog\"", "(negative) the word \"the\""], [pos, neg], truth)
    assert all(cal.informative)
    combined = union([pos, neg], cal)[0]
    # least squares by hand: the positive mode fits 6 on dog and the mean of the other four tokens,
    # (0.5 + 0.5 - 8 - 8) / 4 = -3.75, elsewhere; the negative mode fits -8 on "the" and (6 + 0.5 + 0.5 + 6) / 4
    # = 3.25 elsewhere, so its deviation is -11.25 on "the" and 0 elsewhere
    pos_map, neg_map = cal.maps
    assert pos_map(np.array([10.0, 0.0])).tolist() == pytest.approx([6.0, -3.75])
    assert (neg_map(np.array([-10.0, 0.0])) - neg_map.intercept).tolist() == pytest.approx([-11.25, 0.0])
    assert (combined / cal.scale).tolist() == pytest.approx([6.0, -3.75, -15.0, -3.75, 6.0, -15.0])
    assert pooled([combined], truth).r > 0.99


def test_polysemantic_scores_a_positive_and_a_negative_mode_above_either():
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1)))
    test = HeldOut(UNIT, "test", tuple(_exemplars("test", 2)))
    texts = ['the word "dog"', '(negative) the words "zip" and "zap"']
    both = polysemantic(KeywordSimulator(), texts, test, calibration=valid)
    singles = score(KeywordSimulator(), texts, test)
    assert both.value > max(s.value for s in singles) + 0.05 and both.value > 0.99  # 0.997 against 0.922


def test_lowest_tokens_are_the_ones_pushed_down_and_make_negative_lists():
    train = _exemplars("train", 0)
    low = ranked_tokens(train, lowest=True)
    assert {r.key for r in low[:2]} == {"zip", "zap"} and all(r.r < 0 for r in low)
    assert "dog" not in {r.key for r in low}  # above the mean: never on the negative side
    texts = negative_explanations(low, sizes=(1, 2, 40))
    assert len(texts) == 2 and all(is_negative(t) for t in texts)
    assert set(simulated_text(texts[1]).split('"')[1::2]) == {"zip", "zap"}


def _stats(negative_lists: bool) -> NeuronScope:
    return NeuronScope(KeywordSimulator(), None, ExplainConfig(method="stats", negative=negative_lists))


def test_the_statistical_explainer_adds_a_negative_list_when_it_helps_on_valid():
    train = _exemplars("train", 0)
    valid, test = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1))), HeldOut(UNIT, "test", tuple(_exemplars("test", 2)))
    with_neg, without = _stats(True)(train=train, valid=valid), _stats(False)(train=train, valid=valid)
    assert not any(is_negative(t) for t in without.explanations)
    assert is_negative(with_neg.explanations[-1]) and with_neg.explanations[:-1] == without.explanations
    assert set(simulated_text(with_neg.explanations[-1]).split('"')[1::2]) >= {"zip", "zap"}
    # without it, the positive tiers can only name every other word (0.86 on valid here); with it, 0.94
    assert with_neg.polysemantic > without.polysemantic + 0.05
    on_test = polysemantic(KeywordSimulator(), with_neg.explanations, test, calibration=with_neg.calibration).value
    assert on_test > polysemantic(KeywordSimulator(), without.explanations, test,
                                  calibration=without.calibration).value + 0.05
    assert with_neg.trace.statistical.explanations == with_neg.explanations


def test_no_negative_list_for_a_unit_that_is_never_pushed_down():
    positive_only = {" dog": 6.0, " cat": 3.0}
    train = _exemplars("train", 0, positive_only)
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1, positive_only)))
    assert ranked_tokens(train, lowest=True) == []  # quiet (0.5) is not negative: nothing to name
    with_neg, without = _stats(True)(train=train, valid=valid), _stats(False)(train=train, valid=valid)
    assert with_neg.explanations == without.explanations
