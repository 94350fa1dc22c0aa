"""Racing candidates on growing shares of the valid data (ns_dspy.scoring.racing, ValidScorer.race)."""

import dspy
import numpy as np
import pytest

from ns_dspy import costs
from ns_dspy.agents import RefinementAgent, valid_scorer
from ns_dspy.errors import ConfigError
from ns_dspy.lms.scripted import scripted_lm
from ns_dspy.scoring import HeldOut, pooled
from ns_dspy.scoring.racing import Racing, _r, beat_probability, moments, stage_order
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

WORDS = ["cat", "dog", "house", "tree", "rain", "car", "book", "lamp", "door", "road", "sky", "milk"]


def unit(n_top=64, n_random=32, seed=0):
    """Valid data of a unit that fires on "cat" and "dog"; random windows are quiet."""
    rng = np.random.default_rng(seed)
    exemplars = []
    for j in range(n_top + n_random):
        kind = "top" if j < n_top else "random"
        words = list(rng.choice(WORDS[2:], size=12))
        if kind == "top":
            words[rng.integers(12)] = "cat" if j % 3 else "dog"
        acts = [(9.0 if w == "cat" else 8.0 if w == "dog" else 0.0) + rng.normal(0, 0.3) for w in words]
        exemplars.append(Exemplar(tokens=[" " + w for w in words], activations=np.array(acts, np.float32),
                                  split="valid", kind=kind))
    return HeldOut(UnitId(3, 5), "valid", tuple(exemplars))


def test_racing_settings_are_checked():
    for bad in (dict(stages=(0.5, 0.25)), dict(stages=(1.0,)), dict(delta=0.0), dict(delta=0.7),
                dict(resamples=10), dict(order="best")):
        with pytest.raises(ConfigError):
            Racing(**bad)
    assert Racing().sizes(96) == [12, 24, 48, 72, 96]
    assert Racing().sizes(45) == [6, 12, 23, 34, 45]
    assert Racing().sizes(12) == [6, 9, 12]  # an eighth and a quarter of 12 are under min_exemplars (5): skipped
    assert Racing(min_exemplars=2).sizes(12) == [2, 3, 6, 9, 12]
    assert Racing(stages=(0.25, 0.5), min_exemplars=10).sizes(40) == [10, 20, 40]
    assert Racing().sizes(3) == [3]


def test_every_prefix_of_the_stage_order_keeps_the_kinds_in_proportion():
    kinds = ["top"] * 30 + ["random"] * 15
    order = stage_order(kinds, seed=4)
    assert sorted(order) == list(range(45)) and order != list(range(45))
    for k in (8, 12, 23, 45):
        share = sum(kinds[i] == "random" for i in order[:k]) / k
        assert abs(share - 1 / 3) <= 1 / k + 1e-9
    assert stage_order(kinds, seed=4) == order and stage_order(kinds, seed=5) != order


def test_the_stage_order_takes_the_highest_peaks_of_each_kind_first():
    kinds = ["top"] * 30 + ["random"] * 15
    peaks = np.random.default_rng(0).random(45)
    order = stage_order(kinds, seed=4, peaks=peaks)
    for kind in ("top", "random"):
        mine = [i for i in order if kinds[i] == kind]
        assert [peaks[i] for i in mine] == sorted((peaks[i] for i in mine), reverse=True)
    for k in (6, 12, 23, 45):  # still in proportion
        assert abs(sum(kinds[i] == "random" for i in order[:k]) / k - 1 / 3) <= 1 / k + 1e-9
    ties = stage_order(kinds, seed=4, peaks=np.zeros(45))
    assert ties == stage_order(kinds, seed=4)  # equal peaks keep the seeded order


def test_the_scorer_races_on_the_windows_with_the_highest_peaks_first():
    data = unit()
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    first = racer._order[:12]
    peaks = [data.exemplars[i].max_activation for i in range(len(data.exemplars))]
    for kind in ("top", "random"):
        mine = [peaks[i] for i in first if data.exemplars[i].kind == kind]
        rest = [peaks[i] for i in racer._order[12:] if data.exemplars[i].kind == kind]
        assert mine and min(mine) >= max(rest)
    plain = valid_scorer(KeywordSimulator(), data, Racing(order="random"))
    assert plain._order == stage_order([ex.kind for ex in data.exemplars], Racing().seed)


def test_moments_give_the_pooled_pearson_r():
    data = unit()
    preds = KeywordSimulator().simulate(["cat tokens"], data.exemplars)[0]
    trues = [ex.activations for ex in data.exemplars]
    m = moments(preds, trues)
    assert float(_r(m.sum(axis=0))) == pytest.approx(pooled(preds, trues).r, abs=1e-9)


def test_beat_probability_separates_clear_winners_from_clear_losers():
    data = unit()
    kinds = [ex.kind for ex in data.exemplars]
    trues = [ex.activations for ex in data.exemplars]
    sim = KeywordSimulator()
    m = {e: moments(sim.simulate([e], data.exemplars)[0], trues) for e in ("cat or dog", "house", "cat")}
    assert beat_probability(m["house"], [m["cat or dog"]], kinds) < 0.01
    assert beat_probability(m["cat or dog"], [m["house"]], kinds) > 0.99
    assert beat_probability(m["cat"], [m["cat"]], kinds) == 0.5  # ties count half


def test_race_drops_clear_losers_early_and_scores_survivors_exactly():
    data = unit()
    candidates = ["house or tree", "road", "cat or dog", "cat", "lamp and milk", "sky"]
    plain = valid_scorer(KeywordSimulator(), data)
    full = dict(zip(candidates, plain(candidates)))
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    raced = dict(zip(candidates, racer.race(candidates, reference=None)))
    assert raced["cat or dog"] == (pytest.approx(full["cat or dog"], abs=1e-9), 96)  # the winner, in full
    dropped = [e for e, (_, k) in raced.items() if k < 96]
    assert set(dropped) >= {"house or tree", "road", "lamp and milk", "sky"}
    assert all(raced[e][1] == 12 for e in ("road", "sky"))  # clear losers go at the first stage (an eighth)
    assert racer.simulated_tokens <= plain.simulated_tokens / 2
    assert racer.feedback("cat or dog") is not None and racer.feedback("road") is None  # feedback: full only


def test_race_against_a_reference_drops_everything_below_it():
    data = unit()
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    racer(["cat or dog"])  # the incumbent best, scored in full
    before = racer.simulated_tokens
    results = racer.race(["house", "tree or sky"], reference="cat or dog")
    assert [k for _, k in results] == [12, 12]  # both gone at the first stage; the reference costs nothing more
    first = [data.exemplars[i] for i in racer._order[:12]]
    assert racer.simulated_tokens - before == 2 * sum(len(ex.tokens) for ex in first)


def test_without_racing_race_scores_everything_in_full():
    data = unit()
    scorer = valid_scorer(KeywordSimulator(), data)
    assert [k for _, k in scorer.race(["house", "cat"])] == [96, 96]


def test_nothing_is_simulated_twice():
    data = unit()
    scorer = valid_scorer(KeywordSimulator(), data, Racing())
    scorer.race(["cat", "cat or dog", "house"])
    once = scorer.simulated_tokens
    scorer(["cat", "cat or dog"])
    scorer.race(["cat", "house"])
    n_tokens = sum(len(ex.tokens) for ex in data.exemplars)
    assert scorer.simulated_tokens - once <= n_tokens  # at most "cat" completed; nothing scored twice


def test_refinement_with_racing_never_selects_a_raced_out_candidate():
    data = unit()
    answers = [{"explanation": t} for t in ("house", "road or sky", "cat or dog", "lamp",
                                             "milk", "cat, dog or house", "tree", "door")]
    lm, _ = scripted_lm(answers)
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    plain = valid_scorer(KeywordSimulator(), data)
    with dspy.context(lm=lm):
        result = RefinementAgent(candidates=4, iterations=2, patience=2)(seed="cat", score=racer)
    assert result.explanation == "cat or dog"
    assert result.score == pytest.approx(plain(["cat or dog"])[0], abs=1e-9)
    assert result.raced and "cat or dog" not in result.raced
    assert all(k < racer.size for k in result.raced.values())
    assert set(result.raced) <= {t for t, _ in result.history}


def test_raced_out_entries_are_marked_in_the_history_the_lm_sees():
    data = unit()
    lm, engine = scripted_lm([{"explanation": t} for t in ("house", "sky", "road", "milk")])
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    with dspy.context(lm=lm):
        RefinementAgent(candidates=2, iterations=2, patience=2)(seed="cat or dog", score=racer)
    second = engine.prompts[-1]
    assert "estimated on 12 of 96 valid excerpts" in second


def test_scoring_is_metered_per_neuron():
    data = unit()
    n_tokens = sum(len(ex.tokens) for ex in data.exemplars)
    with costs.metering() as meter:
        with costs.stage("refinement"):
            valid_scorer(KeywordSimulator(), data)(["cat", "dog"])
    out = meter.to_dict()
    assert out["simulated_tokens"] == 2 * n_tokens and out["simulator_calls"] == 1
    assert set(out["seconds"]) == {"refinement", "scoring"} and out["seconds"]["refinement"] >= 0
    valid_scorer(KeywordSimulator(), data)(["cat"])  # outside a meter: nothing recorded, nothing fails
    assert meter.simulated_tokens == 2 * n_tokens


def test_a_candidate_whose_cue_is_absent_from_a_stage_is_not_judged_on_it():
    """A rare cue ("zebra", in two windows that come late in the stage order) predicts the same value on every
    token of the first shares: a real competitor ("cat") leads there, but "zebra" must not be dropped before the
    stage where its cue first occurs."""
    data = unit()
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    late = [i for i in racer._order[60:] if data.exemplars[i].kind == "top"][:2]
    exemplars = list(data.exemplars)
    for i in late:  # below the window's own peak, so the stage order does not change
        ex = exemplars[i]
        acts, tokens = np.array(ex.activations), list(ex.tokens)
        at = int(np.argmin(acts))
        tokens[at], acts[at] = " zebra", 0.9 * float(acts.max())
        exemplars[i] = type(ex)(tokens=tokens, activations=acts.astype(np.float32), split="valid", kind="top")
    data = HeldOut(data.unit, "valid", tuple(exemplars))
    racer = valid_scorer(KeywordSimulator(), data, Racing())
    assert set(late) <= set(racer._order[60:])
    appears = min(racer._order.index(i) for i in late) + 1
    stage = next(k for k in Racing().sizes(96) if k >= appears)
    results = dict(zip(["zebra", "cat"], racer.race(["zebra", "cat"], reference=None)))
    assert results["zebra"][1] >= stage > 12  # kept through every share that holds no zebra
    assert results["cat"][1] == 96
    cue_free = valid_scorer(KeywordSimulator(), unit(), Racing())  # where "zebra" never occurs: constant
    assert dict(zip(["zebra", "cat"], cue_free.race(["zebra", "cat"], reference=None)))["zebra"][1] == 96