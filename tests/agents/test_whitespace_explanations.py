"""Whitespace in the statistical explainer (``ExplainConfig.whitespace``): a quoted word list cannot name line
breaks or indentation, so the explainer can add an explanation of a whitespace class to its chosen set, kept only
when the set then scores higher on valid. The reader here is the keyword simulator, which also reads "line breaks"
as 10 on every token holding a line break (the shipped simulator reads it less sharply:
``experiments/whitespace.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import WHITESPACE, whitespace_explanations
from ns_dspy.config import ExplainConfig
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId
from tests.scoring.test_polarity import _exemplars as windows

UNIT = UnitId(0, 1)
VOCAB = [" dog", " cat", " mat", " sat", " ran", " on", " sky", " big", "\n", "\n\n", "    ", " "]


class LineBreakReader(KeywordSimulator):
    """The keyword simulator, plus "line breaks" read as every token that holds a line break."""

    def simulate(self, explanations, exemplars):
        out = super().simulate(explanations, exemplars)
        for i, text in enumerate(explanations):
            if text == WHITESPACE["line_break"][1]:
                out[i] = [np.array([10.0 if "\n" in t else 0.0 for t in ex.tokens], np.float32) for ex in exemplars]
        return out


def _exemplars(split, seed, values):
    return windows(split, seed, values, n_top=16, n_random=16, vocab=VOCAB, quiet=0.0)


def test_the_classes_where_the_unit_is_most_active_are_named_most_first():
    train = _exemplars("train", 0, {"\n": 6.0, "\n\n": 6.0, "    ": 3.0, " dog": 8.0})
    texts = whitespace_explanations(train, most=6)
    breaks = {WHITESPACE[k][1] for k in ("line_break", "single_line_break", "blank_line")}  # each at 6
    assert set(texts[:3]) == breaks  # then any whitespace (line breaks, indentation and the quiet lone space)
    assert texts[3:] == [WHITESPACE["any_whitespace"][1], WHITESPACE["indentation"][1]]  # and the spaces at 3
    assert len(whitespace_explanations(train)) == 3  # at most three by default
    assert whitespace_explanations(_exemplars("train", 0, {" dog": 8.0})) == []  # quiet on every whitespace
    with pytest.raises(ValueError, match="train exemplars only"):
        whitespace_explanations(_exemplars("valid", 0, {" dog": 8.0}))


def _stats(reader, whitespace):
    return NeuronScope(reader, None, ExplainConfig(method="stats", whitespace=whitespace, negative=False))


def test_a_whitespace_explanation_joins_the_set_when_it_helps_on_valid():
    values = {" dog": 8.0, "\n": 6.0, "\n\n": 6.0}
    train = _exemplars("train", 0, values)
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1, values)))
    reader = LineBreakReader()
    on, off = _stats(reader, True)(train=train, valid=valid), _stats(reader, False)(train=train, valid=valid)
    assert WHITESPACE["line_break"][1] not in off.explanations
    assert on.explanations[-1] == WHITESPACE["line_break"][1] and on.explanations[:-1] == off.explanations
    assert on.polysemantic > off.polysemantic + 0.1
    assert on.trace.statistical.explanations == on.explanations
    # a reader that cannot read it gains nothing from it on valid, and the set stays as it was
    plain = _stats(KeywordSimulator(), True)(train=train, valid=valid)
    assert plain.explanations == _stats(KeywordSimulator(), False)(train=train, valid=valid).explanations
    assert ExplainConfig().whitespace is True  # on by default


def test_the_word_lists_of_a_set_with_a_whitespace_explanation_are_edited_around_it():
    from ns_dspy.agents.evidence import word_list
    from ns_dspy.agents.list_edits import edit_lists, parse_word_list
    from ns_dspy.scoring import polysemantic

    values = {" dog": 8.0, " cat": 7.0, "\n": 6.0, "\n\n": 6.0}
    train = _exemplars("train", 0, values)
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1, values)))
    reader, breaks = LineBreakReader(), WHITESPACE["line_break"][1]
    start = [word_list(["dog", "sky"]), breaks]  # misses cat, lists sky, which never fires
    edited = edit_lists(reader, start, valid, train)
    assert edited.explanations[-1] == breaks  # kept as it is, after the lists
    listed = {t for text in edited.explanations[:-1] for t in parse_word_list(text)[1]}
    assert {"dog", "cat"} <= listed and "sky" not in listed
    # the edits were judged with it: the reported score is the whole set's calibrated union on valid
    again = polysemantic(reader, edited.explanations, valid, calibration=valid)
    assert edited.score.value == pytest.approx(again.value, abs=1e-12)
    assert edited.score.value > polysemantic(reader, start, valid, calibration=valid).value + 0.05
    # without the lists there is nothing to edit
    assert edit_lists(reader, [breaks], valid, train).explanations == [breaks]
