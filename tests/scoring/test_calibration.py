"""Calibrated union of several explanations: a weak explanation's false alarms no longer pull the neuron-level
score below its best member, the calibration is fitted on valid data only and applied unchanged to test, and a
single explanation scores exactly as before."""

import numpy as np
import pytest

from ns_dspy.errors import ConfigError
from ns_dspy.scoring import HeldOut, fit_calibration, polysemantic, score
from ns_dspy.scoring.calibration import Affine, Calibration, calibrate, fit_affine, union
from ns_dspy.scoring.correlation import pooled
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(3, 7)
# the unit: "dog" at 10 (mode A), "cat" at 4 (a weaker mode B), everything else quiet ("sky" included)
TRUTH = {"dog": 10.0, "cat": 4.0}


def _ex(words, kind="top", split="valid"):
    return Exemplar(tokens=[f" {w}" for w in words], split=split, kind=kind,
                    activations=np.array([TRUTH.get(w, 0.0) for w in words], dtype=np.float32))


def _heldout(split, sky=2):
    exemplars = (_ex(["the", "dog", "ran", "the", "dog", "sat"], split=split),
                 _ex(["a", "cat", "and", "a", "cat", "and", "a", "dog"], split=split),
                 _ex(["my", "cat", "saw", "a", "dog", "and", "a", "cat"], split=split),
                 _ex(["the", "sky"] * sky + ["is", "so", "wide", "and", "so", "calm"], kind="random", split=split),
                 _ex(["we", "went", "home", "late", "that", "day"], kind="random", split=split))
    return HeldOut(UNIT, split, exemplars)


GOOD, NOISY = "dog", "cat sky"  # the keyword simulator predicts 10 on the listed words, 0 elsewhere


def test_calibrated_max_beats_the_best_single_where_the_raw_max_loses():
    sim, valid = KeywordSimulator(), _heldout("valid")
    singles = [s.value for s in score(sim, [GOOD, NOISY], valid)]
    raw = polysemantic(sim, [GOOD, NOISY], valid).value
    calibrated = polysemantic(sim, [GOOD, NOISY], valid, calibration=valid).value
    assert raw < max(singles)  # "sky" false alarms at 10 outweigh the "cat" hits
    assert calibrated > max(singles) > raw


def test_valid_calibration_is_applied_unchanged_to_test():
    sim, valid, test = KeywordSimulator(), _heldout("valid"), _heldout("test", sky=5)  # more false alarms on test
    fitted = fit_calibration(sim, [GOOD, NOISY], valid)
    assert fitted.split == "valid" and fitted.n == valid.n_tokens
    reported = polysemantic(sim, [GOOD, NOISY], test, calibration=valid)
    assert reported.split == "test"
    assert polysemantic(sim, [GOOD, NOISY], test, calibration=fitted).value == reported.value
    # by hand: the valid-fitted maps on the test predictions; a map fitted on test would give another score
    preds = sim.simulate([GOOD, NOISY], test.exemplars)
    trues = [ex.activations for ex in test.exemplars]
    by_hand = [np.maximum(fitted.maps[0](a), fitted.maps[1](b)) for a, b in zip(*preds)]
    assert reported.value == pytest.approx(pooled(by_hand, trues).r, abs=1e-12)
    on_test = calibrate([GOOD, NOISY], preds, trues, "test")
    assert on_test.maps != fitted.maps
    assert pooled(union(preds, on_test), trues).r != pytest.approx(reported.value, abs=1e-6)


def test_calibration_is_fitted_on_valid_only():
    sim, valid, test = KeywordSimulator(), _heldout("valid"), _heldout("test")
    with pytest.raises(ConfigError, match="fitted on valid"):
        fit_calibration(sim, [GOOD, NOISY], test)
    with pytest.raises(ConfigError, match="fitted on valid"):
        polysemantic(sim, [GOOD, NOISY], test, calibration=test)
    on_test = calibrate([GOOD, NOISY], sim.simulate([GOOD, NOISY], test.exemplars),
                        [ex.activations for ex in test.exemplars], "test")
    with pytest.raises(ConfigError, match="valid data"):
        polysemantic(sim, [GOOD, NOISY], test, calibration=on_test)
    with pytest.raises(ConfigError, match="other explanations"):
        polysemantic(sim, [NOISY, GOOD], test, calibration=fit_calibration(sim, [GOOD, NOISY], valid))
    with pytest.raises(ConfigError, match="unit"):
        polysemantic(sim, [GOOD, NOISY], test, calibration=HeldOut(UnitId(0, 1), "valid", valid.exemplars))


@pytest.mark.parametrize("text", [GOOD, NOISY, "weather"])
def test_a_single_explanation_scores_exactly_as_before(text):
    sim, valid, test = KeywordSimulator(), _heldout("valid"), _heldout("test")
    for heldout in (valid, test):
        alone = score(sim, [text], heldout)[0]
        for calibration in (None, valid):
            combined = polysemantic(sim, [text], heldout, calibration=calibration)
            assert combined.value == alone.value and combined.constant == alone.constant
            assert all(np.array_equal(a, b) for a, b in zip(combined.predictions, alone.predictions))


def test_an_explanation_that_does_not_rise_with_the_truth_adds_no_false_alarms():
    sim, valid = KeywordSimulator(), _heldout("valid")
    against = "the a and"  # fires only on quiet tokens: slope < 0 on valid
    fitted = fit_calibration(sim, [GOOD, against, "weather"], valid)  # "weather": constant predictions
    assert fitted.informative == (True, False, False)
    assert fitted.maps[1].slope == 0.0 and fitted.maps[2].slope == 0.0
    good = score(sim, [GOOD], valid)[0].value
    assert polysemantic(sim, [GOOD, against], valid).value < good  # raw: its 10s on "the" count
    assert polysemantic(sim, [GOOD, against, "weather"], valid, calibration=valid).value == pytest.approx(good)
    nothing = polysemantic(sim, [against, "weather"], valid, calibration=valid)
    assert nothing.constant and nothing.value == 0.0


def test_fit_affine_is_least_squares_and_checks_its_input():
    x = [np.array([0.0, 10.0, 10.0]), np.array([0.0, 5.0])]
    y = [np.array([1.0, 4.0, 6.0]), np.array([1.0, 3.0])]
    fitted = fit_affine(x, y)
    slope, intercept = np.polyfit(np.concatenate(x), np.concatenate(y), 1)
    assert fitted.slope == pytest.approx(slope) and fitted.intercept == pytest.approx(intercept)
    assert fit_affine([np.full(4, 7.0)], [np.arange(4.0)]) == Affine(0.0, 1.5)  # constant predictions
    assert not fit_affine([np.arange(4.0)], [np.arange(4.0)[::-1]]).informative
    with pytest.raises(ValueError, match="finite"):
        fit_affine([np.array([0.0, np.nan])], [np.array([0.0, 1.0])])
    with pytest.raises(ValueError, match="predictions for"):
        fit_affine([np.zeros(3)], [np.zeros(2)])
    with pytest.raises(ValueError, match="maps for"):
        Calibration(("a", "b"), (Affine(1.0, 0.0),), "valid", 3)


def test_calibrated_values_stay_on_the_0_10_scale_of_the_valid_truth():
    sim, valid = KeywordSimulator(), _heldout("valid")
    combined = polysemantic(sim, [GOOD, NOISY], valid, calibration=valid)
    values = np.concatenate(combined.predictions)
    assert values.max() == pytest.approx(10.0, abs=1.0) and values.min() >= 0.0  # dog: ~10; quiet: small


class _Counting(KeywordSimulator):
    """The keyword simulator, counting the exemplars it simulates per split."""

    def __init__(self):
        super().__init__()
        self.seen: dict[str, int] = {}

    def simulate(self, explanations, exemplars):
        for ex in exemplars:
            self.seen[ex.split] = self.seen.get(ex.split, 0) + len(explanations)
        return super().simulate(explanations, exemplars)


def test_a_valid_score_carries_its_calibration_and_test_reuses_it_without_simulating_valid_again():
    sim, valid, test = _Counting(), _heldout("valid"), _heldout("test", sky=5)
    on_valid = polysemantic(sim, [GOOD, NOISY], valid, calibration=valid)
    assert on_valid.calibration == fit_calibration(KeywordSimulator(), [GOOD, NOISY], valid)
    assert sim.seen == {"valid": 2 * len(valid.exemplars)}  # fitted with the same simulation
    reused = polysemantic(sim, [GOOD, NOISY], test, calibration=on_valid.calibration)
    assert sim.seen == {"valid": 2 * len(valid.exemplars), "test": 2 * len(test.exemplars)}
    assert reused.value == polysemantic(KeywordSimulator(), [GOOD, NOISY], test, calibration=valid).value
    assert polysemantic(sim, [GOOD], valid, calibration=valid).calibration is None  # one explanation: never
    assert polysemantic(sim, [GOOD, NOISY], valid).calibration is None  # the raw maximum


# ---------------------------------------------------------------------------------- monotone maps, out of fold

def test_fit_monotone_is_the_isotonic_least_squares_fit():
    from ns_dspy.scoring.calibration import Monotone, fit_monotone

    # the truth rises with the prediction but not linearly; one violation (4 -> 3) is pooled
    x = [np.array([0.0, 0.0, 2.0, 4.0, 6.0, 9.0])]
    y = [np.array([0.0, 0.0, 4.0, 3.0, 5.0, 5.0])]
    fitted = fit_monotone(x, y)
    assert isinstance(fitted, Monotone) and fitted.informative
    # pool-adjacent-violators: (2, 4) and (4, 3) pool to 3.5; nothing else violates
    assert list(fitted(np.array([0.0, 2.0, 4.0, 6.0, 9.0]))) == pytest.approx([0.0, 3.5, 3.5, 5.0, 5.0])
    assert fitted(np.array([-1.0, 20.0])) == pytest.approx([0.0, 5.0])  # constant beyond the fitted points
    assert fitted(np.array([1.0]))[0] == pytest.approx(1.75)  # linear between them
    assert fitted.intercept == pytest.approx(0.0)
    residual = np.sum((fitted(x[0]) - y[0]) ** 2)
    line = fit_affine(x, y)
    assert residual < np.sum((line(x[0]) - y[0]) ** 2)  # a closer fit than the straight line
    # as fit_affine: a falling or constant relation is not informative (the mean truth, constant)
    falling = fit_monotone([np.arange(4.0)], [np.arange(4.0)[::-1]])
    assert not falling.informative and falling(np.arange(4.0)) == pytest.approx([1.5] * 4)
    assert not fit_monotone([np.full(4, 7.0)], [np.arange(4.0)]).informative
    with pytest.raises(ValueError, match="non-decreasing"):
        Monotone((0.0, 1.0), (2.0, 1.0))


def test_calibrate_fits_the_kind_asked_and_records_it():
    from ns_dspy.scoring.calibration import Monotone

    sim, valid = KeywordSimulator(), _heldout("valid")
    preds = sim.simulate([GOOD, NOISY], valid.exemplars)
    trues = [ex.activations for ex in valid.exemplars]
    mono = calibrate([GOOD, NOISY], preds, trues, kind="monotone")
    assert all(isinstance(m, Monotone) for m in mono.maps) and mono.informative == (True, True)
    assert "points" in mono.to_dict()["maps"][0]
    assert "slope" in calibrate([GOOD, NOISY], preds, trues).to_dict()["maps"][0]
    with pytest.raises(ValueError, match="unknown calibration kind"):
        calibrate([GOOD, NOISY], preds, trues, kind="spline")
    # the keyword simulator's 0/10 predictions: two values, so the monotone and the linear map agree on them
    linear = calibrate([GOOD, NOISY], preds, trues, kind="linear")
    for a, b in zip(union(preds, mono), union(preds, linear)):
        assert a == pytest.approx(b)


def test_cross_fitted_values_come_from_maps_fitted_on_the_other_fold(monkeypatch):
    from ns_dspy.scoring import calibration as cal

    sim, valid = KeywordSimulator(), _heldout("valid")
    texts = [GOOD, NOISY]
    preds = sim.simulate(texts, valid.exemplars)
    trues = [ex.activations for ex in valid.exemplars]
    out = cal.cross_fitted(texts, preds, trues)
    scale = 10.0 / max(float(np.max(t)) for t in trues)
    for j in range(len(trues)):
        other = [i for i in range(len(trues)) if i % 2 != j % 2]
        maps = calibrate(texts, [[p[i] for i in other] for p in preds], [trues[i] for i in other]).maps
        ups = [m(p[j]) for m, p in zip(maps, preds) if m.informative]
        assert out[j] == pytest.approx(scale * np.max(np.stack(ups), axis=0))
    with pytest.raises(ValueError, match="folds"):
        cal.cross_fitted(texts, [p[:1] for p in preds], trues[:1])
    # scored in sample on valid, a set's score is the out-of-fold one when CROSS_FIT is on; test is not affected
    in_sample = polysemantic(sim, texts, valid, calibration=valid)
    test = _heldout("test", sky=5)
    reported = polysemantic(sim, texts, test, calibration=valid).value
    monkeypatch.setattr(cal, "CROSS_FIT", True)
    crossed = polysemantic(sim, texts, valid, calibration=valid)
    assert crossed.value == pytest.approx(pooled(out, trues).r, abs=1e-12) and crossed.value != in_sample.value
    assert crossed.calibration.maps == in_sample.calibration.maps  # test reuses the maps fitted on all of valid
    assert polysemantic(sim, texts, test, calibration=valid).value == reported
    assert polysemantic(sim, [GOOD], valid, calibration=valid).value == score(sim, [GOOD], valid)[0].value


def test_guarded_takes_the_monotone_maps_only_where_they_score_better_out_of_fold():
    """A step relation (a listed word read at 4 or at 9, the unit equally active on both) is what monotone maps
    read and straight lines do not; a noisy linear relation is what they overfit. The guarded kind takes the
    monotone maps exactly when their out-of-fold union correlates better, and both cases occur."""
    from ns_dspy.scoring.calibration import Affine, Monotone, cross_fitted

    texts = ["a", "b"]
    taken = {}
    for seed in range(12):
        rng = np.random.default_rng(seed)
        preds = [[np.where(rng.random(10) < 0.3, rng.choice([4.0, 9.0], 10), 0.0) for _ in range(8)]
                 for _ in texts]
        if seed % 2 == 0:
            trues = [np.where(p > 0, 5.0, 0.0) for p in preds[0]]
        else:
            trues = [0.5 * p + rng.normal(0, 2.0, 10) for p in preds[0]]
        fitted = calibrate(texts, preds, trues, kind="guarded")
        r = {kind: pooled(cross_fitted(texts, preds, trues, folds=2, kind=kind), trues).r
             for kind in ("linear", "monotone")}
        expected = Monotone if r["monotone"] > r["linear"] else Affine
        assert all(type(m) is expected for m in fitted.maps)
        taken[seed] = expected
    assert taken[0] is Monotone and Affine in taken.values()
    # a single explanation, or too few exemplars to fold: the linear maps
    assert isinstance(calibrate(["a"], [[np.arange(3.0)] * 8], [np.arange(3.0)] * 8, kind="guarded").maps[0], Affine)
    assert all(isinstance(m, Affine) for m in calibrate(texts, [[np.arange(3.0)] * 3] * 2, [np.arange(3.0)] * 3,
                                                        kind="guarded").maps)
