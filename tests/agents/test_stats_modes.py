"""The statistical word lists as extra modes of NeuronScope (``ExplainConfig.stats_modes``): the LM's modes, both
together and the word lists alone compete on valid; a member that does not rise with the truth is left out; a tie
goes to the LM's modes; the runner scores what was chosen on test with the valid calibration; ``--no-stats-modes``
keeps the LM's modes only. The keyword simulator reads a word list exactly (10 on a listed word), so every
score here is known."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.program import with_statistical
from ns_dspy.scoring import HeldOut, polysemantic, report, select
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.trace import Mode, Trace
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(0, 1)
VOCAB = [" dog", " cat", " mat", " sat", " ran", " on", " a", " sky", " big", " red"]
FIRES = {" dog": 9.0, " sky": 5.0}  # two separate triggers


def _exemplars(split: str, seed: int) -> list[Exemplar]:
    rng = np.random.default_rng(seed)
    exemplars = []
    for kind, n in (("top", 12), ("random", 8)):
        for _ in range(n):
            tokens = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 12)]
            acts = np.array([FIRES.get(t, 0.0) for t in tokens], np.float32)
            exemplars.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return exemplars


def _heldout(split: str, seed: int) -> HeldOut:
    return HeldOut(UNIT, split, tuple(_exemplars(split, seed)))


def _choose(lm: list[str], stats: list[str], valid: HeldOut):
    sim = KeywordSimulator()
    lm_score = polysemantic(sim, lm, valid, calibration=valid)
    stats_score = polysemantic(sim, stats, valid, calibration=valid)
    return with_statistical(sim, valid, lm, lm_score, stats, stats_score)


def test_word_lists_join_the_modes_when_they_explain_another_part_of_the_unit():
    valid = _heldout("valid", 1)
    sim = KeywordSimulator()
    chosen, best = _choose(['"sky"'], ['"dog"'], valid)
    assert chosen == ['"sky"', '"dog"']  # the LM's mode first, then the word list
    alone = [select(sim, [t], valid)[0].value for t in ('"sky"', '"dog"')]
    assert best.value > max(alone) + 0.05
    assert best.calibration is not None and all(best.calibration.informative)
    # the test score reuses the valid calibration, as the runner does
    test = _heldout("test", 2)
    on_test = polysemantic(sim, chosen, test, calibration=best.calibration).value
    assert on_test == pytest.approx(polysemantic(sim, chosen, test, calibration=valid).value, abs=1e-12)
    assert on_test > max(report(sim, t, test).value for t in chosen)


def test_a_mode_that_says_nothing_the_unit_confirms_is_left_out():
    valid = _heldout("valid", 1)
    chosen, best = _choose(['"red"'], ['"dog"'], valid)  # " red" never fires
    assert chosen == ['"dog"']
    assert best.value == pytest.approx(select(KeywordSimulator(), ['"dog"'], valid)[0].value)


def test_a_tie_keeps_the_lm_modes_and_better_lm_modes_stay_alone():
    valid = _heldout("valid", 1)
    chosen, best = _choose(['"dog"'], ['"dog"'], valid)
    assert chosen == ['"dog"']
    chosen, best = _choose(['"dog"', '"sky"'], ['"dog" "red"'], valid)  # the list adds only a false alarm
    assert chosen == ['"dog"', '"sky"']
    assert best.value == pytest.approx(polysemantic(KeywordSimulator(), chosen, valid, calibration=valid).value)


def test_a_statistical_mode_round_trips_in_the_trace_and_older_traces_read_as_lm_modes():
    trace = Trace(unit="0:1", modes=[Mode(members=["dogs"], representative="dogs", explanation="dogs", valid=0.5),
                                     Mode(explanation='the word "sky"', valid=0.3, source="stats")])
    data = trace.to_dict()
    assert "source" not in data["clusters"][0] and data["clusters"][1]["source"] == "stats"
    back = Trace.from_dict(data)
    assert [m.source for m in back.modes] == ["lm", "stats"]
    with pytest.raises(Exception, match="source"):
        Trace.from_dict({**data, "clusters": [{**data["clusters"][1], "source": "oracle"}]})


def test_adds_to_asks_whether_a_mode_raises_the_word_lists_valid_score():
    from ns_dspy.agents import valid_scorer
    from ns_dspy.program import adds_to

    valid = _heldout("valid", 1)
    scorer = valid_scorer(KeywordSimulator(), valid)
    lists = ['"dog"']
    lists_score = scorer.score_of(lists[0])
    assert adds_to(scorer, lists, lists_score, '"sky"')  # the other trigger: the union scores higher
    assert not adds_to(scorer, lists, lists_score, '"red"')  # never fires: left out of the union
    assert not adds_to(scorer, lists, lists_score, '"dog"')  # already one of the lists
    # the same trigger again, or with a false alarm, adds nothing the lists do not already give
    assert not adds_to(scorer, lists, lists_score, '"dog" "red"')
    both = ['"dog"', '"sky"']
    kept, whole = scorer.union(both)
    assert kept == both and not adds_to(scorer, both, whole, '"sky" "dog"')


def test_an_lm_mode_that_adds_nothing_to_the_word_lists_stops_after_its_first_iteration():
    """The statistical lists name both triggers; the LM's one mode (dogs) adds nothing to them, so with
    ``mode_stop`` its refinement stops after the first iteration, and without it runs every iteration. The
    neuron's explanations are the same either way (the lists)."""
    import dspy

    from ns_dspy.agents import ClusterConfig
    from ns_dspy.lms.scripted import agent_of, scripted_lm
    from ns_dspy.program import ExplainConfig, NeuronScope
    from tests.runs.test_runner import WordEmbedder

    def respond(prompt, request):
        agent = agent_of(prompt)
        respond.refinements += agent == "refinement"
        return {"refinement": {"explanation": f"dogs, variant {respond.refinements}"},
                "decomposition": {"conditions": ["This neuron activates on dogs", "It fires when a dog runs"]},
                "hypothesis": {"explanation": "dogs running"}}[agent]

    train, valid = _exemplars("train", 3), _heldout("valid", 1)
    runs = {}
    for mode_stop in (True, False):
        respond.refinements = 0
        lm, _ = scripted_lm([respond] * 100)
        config = ExplainConfig(candidates=2, iterations=3, patience=3, max_exemplars=5, cluster=ClusterConfig(),
                               mode_stop=mode_stop)
        with dspy.context(lm=lm):
            pred = NeuronScope(KeywordSimulator(), WordEmbedder(), config)(train=train, valid=valid)
        lm_modes = [m for m in pred.trace.modes if m.source == "lm"]
        runs[mode_stop] = (respond.refinements, [m.stopped for m in lm_modes], pred.explanations, pred.polysemantic)
    assert runs[True][:2] == (2, ["no_contribution"]) and runs[False][:2] == (6, ["iterations"])
    assert runs[True][2:] == runs[False][2:] and all("dogs" not in text for text in runs[True][2])
    back = Trace.from_dict(Trace(modes=[Mode(explanation="x", stopped="no_contribution")]).to_dict())
    assert back.modes[0].stopped == "no_contribution"
