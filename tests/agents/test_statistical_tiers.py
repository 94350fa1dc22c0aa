"""The statistical explainer's tier lists: tokens ranked for a word list (train only, exact indicator
correlations), tier sets of doubling size, and the program choosing a set over a single list when the unit is
graded - scored as a union calibrated on valid, with the valid calibration on test. The keyword simulator reads
a list as yes/no (10 on a listed word), so only calibration can say that one word fires more than another."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import TIER_TOKENS, RankedToken, ranked_tokens, tiered_explanations
from ns_dspy.config import ExplainConfig
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut, polysemantic, score
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(0, 1)
VOCAB = [" dog", " cat", " mat", " sat", " ran", " on", " a", " sky", " big", " red"]
GRADED = {" dog": 9.0, " cat": 4.0, " mat": 4.0}  # one strong word, two weaker ones


def _exemplars(split: str, seed: int, n_top: int = 12, n_random: int = 8) -> list[Exemplar]:
    rng = np.random.default_rng(seed)
    out = []
    for kind, n in (("top", n_top), ("random", n_random)):
        for _ in range(n):
            tokens = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 12)]
            acts = np.array([GRADED.get(t, 0.0) for t in tokens], np.float32)
            out.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return out


def test_ranked_tokens_by_shrunk_mean_with_exact_prefix_correlations():
    train = _exemplars("train", 0)
    ranked = ranked_tokens(train)
    assert ranked[0].key == "dog" and {r.key for r in ranked[1:3]} == {"cat", "mat"}
    assert ranked[0].token == "dog"  # shown without the leading space
    acts = np.concatenate([ex.activations for ex in train]).astype(float)
    for i in range(1, 5):
        keys = {r.key for r in ranked[:i]}
        x = np.array([t.strip() in keys for ex in train for t in ex.tokens], float)
        assert ranked[i - 1].r == pytest.approx(np.corrcoef(x, acts)[0, 1], abs=1e-6)
    assert max(r.r for r in ranked) == ranked[2].r  # the three firing words together
    assert len(ranked) < len(VOCAB)  # never every token
    with pytest.raises(ValueError, match="train exemplars only"):
        ranked_tokens(_exemplars("valid", 1))


def test_tier_sets_double_in_size_and_need_enough_tokens():
    ranked = ranked_tokens(_exemplars("train", 0))
    sets = tiered_explanations(ranked, firsts=(1, 2), tiers=(2, 3))
    sizes = [[len(t.split('"')[1::2]) for t in s] for s in sets]
    assert sizes == [[1, 2], [1, 2, 4], [2, 4]]  # 2 + 4 + 8 > 9 ranked tokens: no third tier for k = 2
    assert sets[0][0] == 'the word "dog"'
    assert tiered_explanations(ranked[:2]) == []


def test_the_default_sets_run_to_five_tiers_and_the_explainer_asks_for_enough_tokens():
    ranked = [RankedToken(f"w{i}", f"w{i}", 0.0) for i in range(TIER_TOKENS)]
    sets = tiered_explanations(ranked)
    sizes = [[len(t.split('"')[1::2]) for t in s] for s in sets]
    assert [4, 8, 16, 32, 64] in sizes and max(sum(s) for s in sizes) == TIER_TOKENS == 124
    assert [1, 2, 4, 8, 16] in sizes and [4, 8, 16, 32] in sizes and [3, 6, 12] in sizes
    assert [4, 8, 16, 32, 64] not in [[len(t.split('"')[1::2]) for t in s] for s in tiered_explanations(ranked[:123])]


def test_a_tier_longer_than_the_longest_list_is_split_in_rank_order_into_equal_lists():
    ranked = [RankedToken(f"w{i}", f"w{i}", 0.0) for i in range(TIER_TOKENS)]
    sets = tiered_explanations(ranked, firsts=(4,), tiers=(5,), longest=32)
    assert len(sets) == 1
    words = [t.split('"')[1::2] for t in sets[0]]
    assert [len(w) for w in words] == [4, 8, 16, 32, 32, 32]  # the 64-token tier as two lists of 32
    assert [x for w in words for x in w] == [f"w{i}" for i in range(124)]  # every token once, in rank order
    assert [len(t.split('"')[1::2]) for t in tiered_explanations(ranked, firsts=(3,), tiers=(5,), longest=20)[0]] == \
        [3, 6, 12, 12, 12, 16, 16, 16]  # 24 -> 12 + 12, 48 -> 3 x 16
    assert tiered_explanations(ranked, longest=None) == tiered_explanations(ranked, longest=124)
    with pytest.raises(ValueError, match="at least 1"):
        tiered_explanations(ranked, longest=0)


def _program(tiers: bool) -> NeuronScope:
    return NeuronScope(KeywordSimulator(), None, ExplainConfig(method="stats", tiers=tiers))


def test_the_statistical_explainer_picks_tiers_for_a_graded_unit_and_they_score_as_a_calibrated_union():
    train = _exemplars("train", 0)
    valid, test = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1))), HeldOut(UNIT, "test", tuple(_exemplars("test", 2)))
    tiered, flat = _program(True)(train=train, valid=valid), _program(False)(train=train, valid=valid)
    assert len(flat.explanations) == 1 and len(tiered.explanations) == 2
    assert tiered.explanations[0] == 'the word "dog"'
    assert set(tiered.explanations[1].split('"')[1::2]) == {"cat", "mat"}
    assert tiered.polysemantic > flat.polysemantic + 0.05  # a graded reading beats yes/no (0.996 vs 0.898)
    assert tiered.polysemantic > 0.99  # dog 9, cat/mat 4, all else 0: nearly exact (intercepts aside)
    assert tiered.calibration is not None and all(tiered.calibration.informative)
    on_test = polysemantic(KeywordSimulator(), tiered.explanations, test, calibration=tiered.calibration).value
    assert on_test == pytest.approx(polysemantic(KeywordSimulator(), tiered.explanations, test,
                                                 calibration=valid).value, abs=1e-12)
    assert on_test > score(KeywordSimulator(), flat.explanations, test)[0].value
    assert tiered.valids == [pytest.approx(s.value) for s in score(KeywordSimulator(), tiered.explanations, valid)]
    assert tiered.trace.statistical.explanations == tiered.explanations
    candidates = [c.text for c in tiered.trace.stats_candidates]
    assert " | ".join(tiered.explanations) in candidates and flat.explanations[0] in candidates


def test_a_uniform_unit_keeps_a_single_list():
    global GRADED
    saved, GRADED = GRADED, {" dog": 5.0, " cat": 5.0, " mat": 5.0}
    try:
        train = _exemplars("train", 0)
        valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1)))
        pred = _program(True)(train=train, valid=valid)
    finally:
        GRADED = saved
    assert len(pred.explanations) == 1 and set(pred.explanations[0].split('"')[1::2]) == {"dog", "cat", "mat"}
    assert pred.polysemantic == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["linear", "monotone", "guarded"])
def test_test_maps_sets_the_kind_of_the_maps_a_chosen_set_reuses_on_test(kind):
    """``--test-maps``: the chosen tier set's calibration (what its test score reuses) is fitted on valid as asked;
    the choice itself (linear maps on valid) is the same for every kind, and the runner's fallback fits the same
    kind from valid."""
    from ns_dspy.scoring import fit_calibration
    from ns_dspy.scoring.calibration import Affine, Monotone

    train = _exemplars("train", 0)
    valid, test = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1))), HeldOut(UNIT, "test", tuple(_exemplars("test", 2)))
    program = NeuronScope(KeywordSimulator(), None, ExplainConfig(method="stats", test_maps=kind))
    pred = program(train=train, valid=valid)
    shipped = _program(True)(train=train, valid=valid)
    assert pred.explanations == shipped.explanations and len(pred.explanations) == 2
    assert pred.polysemantic == pytest.approx(shipped.polysemantic)
    expected = fit_calibration(KeywordSimulator(), pred.explanations, valid, kind=kind)
    assert [type(m) for m in pred.calibration.maps] == [type(m) for m in expected.maps]
    assert all(type(m) is (Monotone if kind == "monotone" else Affine) for m in pred.calibration.maps)
    assert polysemantic(KeywordSimulator(), pred.explanations, test, calibration=pred.calibration).value == \
        pytest.approx(polysemantic(KeywordSimulator(), pred.explanations, test, calibration=valid,
                                   final_kind=kind).value, abs=1e-12)


def test_an_unknown_test_maps_kind_is_a_one_line_error():
    from ns_dspy.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown --test-maps 'spline': use one of linear, monotone, guarded"):
        ExplainConfig(test_maps="spline")
