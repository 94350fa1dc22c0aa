"""Racing the statistical explainer's candidates (single word lists, tier sets scored as calibrated unions, the
negative lists added to the chosen set): the clear losers are judged on a share of the valid exemplars (highest
peaks first) and dropped, the others scored in full. The chosen explanation must be the one exhaustive scoring
chooses on a unit where the winner is clear, for fewer simulated tokens, and what was dropped is in the trace."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents import ValidScorer
from ns_dspy.config import ExplainConfig
from ns_dspy.program import NeuronScope, refinement_racing, statistical_racing
from ns_dspy.scoring import HeldOut, polysemantic, score
from ns_dspy.scoring.racing import Racing
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.trace import Trace
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(0, 7)
FIRING = {" dog": 9.0, " cat": 5.0, " mat": 4.0, " fox": 2.0}
QUIET = [" sky", " big", " red", " on", " a", " ran", " sat", " old", " new", " wet", " dry", " hot"]
VOCAB = list(FIRING) + QUIET


class CountingKeyword(KeywordSimulator):
    """The keyword simulator, counting the (explanation, token) pairs it simulates."""

    def __init__(self):
        super().__init__()
        self.tokens = 0

    def simulate(self, explanations, exemplars):
        self.tokens += len(explanations) * sum(len(ex.tokens) for ex in exemplars)
        return super().simulate(explanations, exemplars)


def _exemplars(split: str, seed: int, n_top: int = 30, n_random: int = 20) -> list[Exemplar]:
    rng = np.random.default_rng(seed)
    out = []
    for kind, n in (("top", n_top), ("random", n_random)):
        for _ in range(n):
            pool = VOCAB if kind == "top" else QUIET + [" fox"]
            tokens = [pool[i] for i in rng.integers(0, len(pool), 16)]
            acts = np.array([FIRING.get(t, 0.0) + 0.3 * rng.random() for t in tokens], np.float32)
            out.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return out


def _valid() -> HeldOut:
    return HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1)))


SETS = [['the words "sky", "big" and "red"'],  # quiet words: a clear loser
        ['the word "fox"'],  # weak
        ['the words "dog", "cat" and "mat"'],
        ['the word "dog"', 'the words "cat" and "mat"'],  # graded: the best
        ['the word "dog"', 'the words "sky" and "on"']]  # a set whose second member does not rise with the truth


def test_without_racing_every_set_is_scored_in_full_as_its_pruned_calibrated_union():
    valid = _valid()
    results = ValidScorer(KeywordSimulator(), valid).race_sets(SETS)
    assert [r.members for r in results] == SETS and not any(r.raced for r in results)
    assert all(r.exemplars == len(valid.exemplars) for r in results)
    for members, r in zip(SETS, results):
        if len(members) == 1:
            assert r.kept == members
            assert r.score.value == pytest.approx(score(KeywordSimulator(), members, valid)[0].value, abs=1e-12)
        elif members == SETS[3]:
            assert r.kept == members
            assert r.score.value == pytest.approx(
                polysemantic(KeywordSimulator(), members, valid, calibration=valid).value, abs=1e-12)
    assert results[4].kept == ['the word "dog"']  # the quiet member left out: the set is "dog" alone
    assert results[4].score.value == pytest.approx(results[4].score.value)
    assert max(range(len(SETS)), key=lambda i: results[i].score.value) == 3


def test_racing_drops_the_clear_losers_early_and_keeps_the_exhaustive_choice():
    valid = _valid()
    full_sim, race_sim = CountingKeyword(), CountingKeyword()
    full = ValidScorer(full_sim, valid).race_sets(SETS)
    raced = ValidScorer(race_sim, valid, Racing()).race_sets(SETS)
    n = len(valid.exemplars)
    assert raced[0].raced and raced[0].exemplars < n and raced[0].kept == [] and raced[0].score is None
    assert raced[0].estimate < raced[3].score.value
    assert not raced[3].raced
    assert raced[3].score.value == pytest.approx(full[3].score.value, abs=1e-12)  # a survivor's score is the full one
    best = max((r for r in raced if not r.raced), key=lambda r: r.score.value)
    assert best.members == SETS[3]
    assert race_sim.tokens < full_sim.tokens
    # a reference set already chosen: a candidate that cannot beat it is dropped
    vs = ValidScorer(race_sim, valid, Racing()).race_sets([SETS[3] + ['the words "sky" and "big"']],
                                                          reference=SETS[3])
    assert len(vs) == 1 and (vs[0].raced or vs[0].kept == SETS[3])


def _program(racing: bool, simulator) -> NeuronScope:
    return NeuronScope(simulator, None, ExplainConfig(method="stats", racing=racing))


def test_the_statistical_explainer_races_its_candidates_to_the_same_choice_for_fewer_tokens():
    train, valid = _exemplars("train", 0), _valid()
    full_sim, race_sim = CountingKeyword(), CountingKeyword()
    full = _program(False, full_sim)(train=train, valid=valid)
    raced = _program(True, race_sim)(train=train, valid=valid)
    assert raced.explanations == full.explanations
    assert raced.polysemantic == pytest.approx(full.polysemantic, abs=1e-12)
    assert raced.valids == pytest.approx(full.valids, abs=1e-12)
    assert race_sim.tokens < 0.8 * full_sim.tokens
    assert full.trace.stats_raced == {}
    dropped = raced.trace.stats_raced
    assert dropped and all(0 < k < len(valid.exemplars) for k in dropped.values())
    listed = {c.text for c in raced.trace.stats_candidates}
    assert set(dropped) <= listed  # raced-out candidates are listed with their estimate
    assert {c.text for c in full.trace.stats_candidates} >= listed - set(dropped)  # the survivors as exhaustive
    back = Trace.from_dict(raced.trace.to_dict())
    assert back.stats_raced == dropped


def test_the_statistical_race_is_stricter_than_refinements_and_off_with_racing():
    program = _program(True, KeywordSimulator())
    rule, refinement = program._stats_racing(), program._racing()
    assert rule == statistical_racing(program.config) and refinement == refinement_racing(program.config)
    assert rule.delta == refinement.delta / 2 and rule.epsilon == 0.0 < refinement.epsilon
    assert (rule.stages, rule.order, rule.seed) == (refinement.stages, refinement.order, refinement.seed)
    assert _program(False, KeywordSimulator())._stats_racing() is None
    # a race's own rule: the stricter one never keeps fewer sets in full than the looser one on the same scorer
    valid = _valid()
    close = [['the words "dog", "cat" and "mat"'], ['the words "dog", "cat", "mat" and "fox"'],
             ['the word "dog"', 'the words "cat" and "mat"'], ['the word "dog"', 'the words "cat", "mat" and "fox"']]
    loose = ValidScorer(KeywordSimulator(), valid, Racing(delta=0.45, epsilon=0.05)).race_sets(close)
    strict = ValidScorer(KeywordSimulator(), valid, Racing(delta=0.45, epsilon=0.05)).race_sets(
        close, rule=Racing(delta=0.01, epsilon=0.0))
    assert sum(not r.raced for r in strict) > sum(not r.raced for r in loose)
    # a scorer without racing scores every set in full, whatever the rule
    assert not any(r.raced for r in ValidScorer(KeywordSimulator(), valid).race_sets(SETS, rule=Racing()))


def test_when_no_raced_set_keeps_a_member_the_singles_are_scored_in_full():
    """The statistical explainer's fallback: if every set that survived its race kept no member (each member's
    prediction falls where the truth rises, so the pruned union names nothing), the single lists are scored in
    full and the best on valid is chosen, as exhaustive scoring of the singles would choose it."""
    from ns_dspy.agents.refinement import SetResult

    train, valid = _exemplars("train", 0), _valid()
    program = NeuronScope(KeywordSimulator(), None, ExplainConfig(method="stats", racing=True, negative=False))
    scorer = ValidScorer(KeywordSimulator(), valid, program._racing())
    raced_sets = []

    def nothing_kept(sets, reference=None, rule=None):
        raced_sets.extend(sets)
        return [SetResult(list(s), [], None, -1.0, 3) for s in sets]

    scorer.race_sets = nothing_kept
    out = program._statistical(train, valid, scorer)
    singles = [s[0] for s in raced_sets if len(s) == 1]
    assert singles and out.explanations in [[s] for s in singles]
    exhaustive = {s: score(KeywordSimulator(), [s], valid)[0].value for s in singles}
    assert out.explanations == [max(singles, key=lambda s: exhaustive[s])]
    assert out.polysemantic == pytest.approx(max(exhaustive.values()), abs=1e-12)
    assert {c.text for c in out.trace.stats_candidates} >= set(singles)
