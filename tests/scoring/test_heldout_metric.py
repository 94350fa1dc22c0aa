import numpy as np
import pytest

from ns_dspy.errors import ConfigError
from ns_dspy.scoring import FeedbackMetric, HeldOut, SimulatorMetric, polysemantic, report, score, select
from ns_dspy.simulators.base import Simulator, build_simulator
from ns_dspy.simulators.cache import CachedSimulator, SimulationCache
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId


def _ex(text_acts, kind="top", split="valid"):
    tokens = [t for t, _ in text_acts]
    return Exemplar(tokens=tokens, activations=np.array([a for _, a in text_acts], dtype=np.float32), kind=kind,
                    split=split)


EXEMPLARS = (
    _ex([("The", 0), (" dog", 5), (" barked", 0)]),
    _ex([("A", 0), (" cat", 4), (" sat", 0), (" dog", 6)]),
    _ex([("Blue", 0), (" sky", 0), (" today", 0)], kind="random"),
    _ex([("my", 0), (" cat", 3)], kind="random"),
)


def _valid(split="valid"):
    return HeldOut(UnitId(1, 2), split, tuple(EXEMPLARS))


def test_heldout_refuses_train_and_empty():
    with pytest.raises(ConfigError, match="valid or test"):
        HeldOut(UnitId(1, 2), "train", EXEMPLARS)
    with pytest.raises(ConfigError, match="no valid exemplars"):
        HeldOut(UnitId(1, 2), "valid", ())


def test_select_and_report_cannot_swap_splits():
    sim = KeywordSimulator()
    with pytest.raises(ConfigError, match="selection uses valid"):
        select(sim, ["dogs"], _valid("test"))
    with pytest.raises(ConfigError, match="test data"):
        report(sim, "dogs", _valid("valid"))
    best = select(sim, ["weather", "dog", "dog and cat"], _valid())
    assert [s.explanation for s in best] == ["dog and cat", "dog", "weather"]
    assert best[-1].constant and best[-1].value == 0.0  # predicts 0 everywhere
    assert report(sim, "dog", _valid("test")).split == "test"


def test_polysemantic_takes_the_per_token_max():
    sim = KeywordSimulator()
    both = polysemantic(sim, ["dog", "cat"], _valid())
    assert both.value == pytest.approx(score(sim, ["dog cat"], _valid())[0].value)
    assert both.value > max(s.value for s in score(sim, ["dog", "cat"], _valid()))


class Counting(Simulator):
    def __init__(self):
        self.inner, self.pairs = KeywordSimulator(), 0

    @property
    def cache_key(self):
        return "counting-1"

    def simulate(self, explanations, exemplars):
        self.pairs += len(explanations) * len(exemplars)
        return self.inner.simulate(explanations, exemplars)


def test_cache_never_simulates_a_pair_twice_across_instances(tmp_path):
    inner = Counting()
    sim = CachedSimulator(inner, SimulationCache(tmp_path / "c.sqlite"))
    first = score(sim, ["dog", "cat"], _valid())
    assert inner.pairs == 8
    again = score(sim, ["dog", "cat", "sky"], _valid())
    assert inner.pairs == 12  # only the new explanation
    assert [s.value for s in again[:2]] == [s.value for s in first]
    sim.cache.close()
    reopened = CachedSimulator(inner, SimulationCache(tmp_path / "c.sqlite"))
    score(reopened, ["sky", "dog"], _valid())
    assert inner.pairs == 12 and reopened.hits == 8
    raw = (tmp_path / "c.sqlite").read_bytes()
    assert b"barked" not in raw and b"dog" not in raw  # keys are digests; no text is stored


def test_dspy_metrics():
    import dspy

    example = dspy.Example(valid=_valid()).with_inputs()
    metric = SimulatorMetric(KeywordSimulator())
    assert metric(example, dspy.Prediction(explanation="dog")) == pytest.approx(
        score(KeywordSimulator(), ["dog"], _valid())[0].value)
    assert metric(example, dspy.Prediction(explanations=["dog", "cat"])) > metric(example, dspy.Prediction(explanation="dog"))
    fb = FeedbackMetric(KeywordSimulator())(example, dspy.Prediction(explanation="dog sky"), None, None, None)
    assert fb.score == pytest.approx(metric(example, dspy.Prediction(explanation="dog sky")))
    assert "Under-predicted" in fb.feedback and "[[ cat]]" in fb.feedback   # the cats it misses
    assert "Over-predicted" in fb.feedback and "[[ sky]]" in fb.feedback    # the sky it wrongly predicts


def test_build_simulator_errors():
    with pytest.raises(ConfigError, match="unknown simulator 'nope:x'"):
        build_simulator("nope:x")
    assert isinstance(build_simulator("keyword"), KeywordSimulator)
