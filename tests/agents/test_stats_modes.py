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


def _heldout(split: str, seed: int) -> HeldOut:
    rng = np.random.default_rng(seed)
    exemplars = []
    for kind, n in (("top", 12), ("random", 8)):
        for _ in range(n):
            tokens = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 12)]
            acts = np.array([FIRES.get(t, 0.0) for t in tokens], np.float32)
            exemplars.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return HeldOut(UNIT, split, tuple(exemplars))


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
