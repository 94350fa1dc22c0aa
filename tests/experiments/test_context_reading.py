"""experiments/context_reading.py: where a context explanation's predictions fall (the token right after its word
before, the token elsewhere, other tokens), on a toy unit that fires on "b" only right after "a"."""

from __future__ import annotations

import numpy as np
import pytest
from context_reading import PLACES, cases, means, places, selectivity

from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId


def _window(words: list[str], split: str, kind: str = "top") -> Exemplar:
    acts = [10.0 if w == " b" and i and words[i - 1] == " a" else 0.0 for i, w in enumerate(words)]
    return Exemplar(tokens=words, activations=np.array(acts, np.float32), kind=kind, split=split)


TEXTS = [[" a", " b", " c", " b"], [" c", " b", " a", " b"], [" a", " b", " d"], [" d", " c", " b"]]


class ToyStore:
    """What cases() reads of an exemplar store: one unit's train exemplars and its valid ones by kind."""

    def train_exemplars(self, unit):
        return [_window(t, "train") for t in TEXTS * 2]

    def exemplars(self, unit, split, kind):
        return [_window(t, split) for t in TEXTS] if kind == "top" else []


def test_places_split_a_token_by_the_token_before_it():
    got = places([_window([" a", " b", " c", " b", " b"], "valid")], "a", "b")
    assert got[0].tolist() == [2, 0, 2, 1, 1]
    assert means([np.array([1.0, 9.0, 2.0, 4.0, 6.0])], got) == {"in": 9.0, "out": 5.0, "other": 1.5}
    assert selectivity([{"in": 9.0, "out": 5.0, "other": 1.0}]) == pytest.approx(0.5)
    assert selectivity([{"in": 1.0, "out": 1.0, "other": 1.0}]) is None


def test_the_neurons_own_reading_is_selective_and_a_word_reader_is_not():
    found = cases(ToyStore(), [(UnitId(0, 1), [])])
    assert [c["explanation"] for c in found] == ['the word "b" only right after "a"']
    case = found[0]
    assert case["truth"] == {"in": 10.0, "out": 0.0, "other": 0.0} and selectivity([case["truth"]]) == 1.0
    # the keyword reader predicts every quoted word alike: no gap between "b" after "a" and "b" elsewhere
    preds = KeywordSimulator().simulate([case["explanation"]], case["exemplars"])[0]
    read = means([np.asarray(p, np.float64) for p in preds], case["where"])
    assert set(read) == set(PLACES) and read["in"] == pytest.approx(read["out"]) and read["in"] > read["other"]
    assert selectivity([read]) == pytest.approx(0.0)
