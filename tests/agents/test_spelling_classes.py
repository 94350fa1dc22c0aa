"""Spelling classes in the statistical explainer (``ExplainConfig.spelling``): a neuron that fires on words written
in capitals spreads its activation over every such word, most of which train never shows, so the explainer can add
"words written in all capital letters" to its chosen set, kept only when the set then scores higher on valid. The
classes and their descriptions are defined once (``ns_dspy.agents.word_classes``) and ``simulator_training``'s
spelling family trains the default simulator on the same descriptions."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import spelling_explanations
from ns_dspy.agents.word_classes import SHAPES, SUFFIXES, spelling_classes
from ns_dspy.scoring import HeldOut
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId
from tests.agents.stats_only import stats_only
from tests.scoring.test_polarity import _exemplars as windows

UNIT = UnitId(0, 1)
TRAIN_CAPS = [" FIELD", " SIZE", " NULL", " MAX", " INPUT"]
VALID_CAPS = [" DATE", " ITEM", " LENGTH", " COMMENT", " START"]  # capitals that train never shows
OTHERS = [" dog", " cat", " mat", " sat", " ran", " on", " sky", " big", " the", " was"]
CAPS = SHAPES["allcaps"][0]


def test_tokens_are_classed_by_their_spelling():
    tokens = [" The", " FIELD", " running", ".", " John", " said", " Mary", " don't", " well-known", " 1990", " A"]
    marks = spelling_classes(tokens)
    on = {name: [t for t, m in zip(tokens, mask) if m] for name, mask in marks.items() if any(mask)}
    assert on["allcaps"] == [" FIELD"]  # one capital letter is not a word in capitals
    assert on["-ing"] == [" running"] and on["double"] == [" running"]
    assert on["capitalised-mid"] == [" Mary"]  # " The" opens the window, " John" follows a full stop
    assert on["apostrophe"] == [" don't"] and on["hyphen"] == [" well-known"] and on["digits"] == [" 1990"]
    assert set(marks) >= {f"-{s}" for s in SUFFIXES} and len(marks["long"]) == len(tokens)


def _exemplars(split, seed, values, caps):
    return windows(split, seed, values, n_top=16, n_random=16, vocab=caps + OTHERS, quiet=0.0)


def test_the_spelling_the_activation_follows_is_named_in_its_direction():
    up = _exemplars("train", 0, dict.fromkeys(TRAIN_CAPS, 6.0), TRAIN_CAPS)
    assert spelling_explanations(up)[0] == CAPS
    down = _exemplars("train", 0, {**dict.fromkeys(TRAIN_CAPS, -4.0), " dog": 5.0}, TRAIN_CAPS)
    assert f"(negative) {CAPS}" in spelling_explanations(down, most=5)
    assert CAPS not in spelling_explanations(up, min_count=10 ** 6)
    assert spelling_explanations(up, min_r=1.01) == []
    flat = [Exemplar(tokens=ex.tokens, activations=np.ones(len(ex.tokens), np.float32), split="train", kind=ex.kind)
            for ex in up]
    assert spelling_explanations(flat) == []
    with pytest.raises(ValueError, match="train exemplars only"):
        spelling_explanations(_exemplars("valid", 0, {}, TRAIN_CAPS))


class CapsReader(KeywordSimulator):
    """The keyword simulator, plus "words written in all capital letters" read as every such token."""

    def simulate(self, explanations, exemplars):
        out = super().simulate(explanations, exemplars)
        for i, text in enumerate(explanations):
            if text == CAPS:
                out[i] = [np.array([10.0 * m for m in spelling_classes(list(ex.tokens))["allcaps"]], np.float32)
                          for ex in exemplars]
        return out


def test_a_spelling_class_joins_the_set_when_it_helps_on_valid():
    values = {" dog": 8.0, **dict.fromkeys(TRAIN_CAPS + VALID_CAPS, 6.0)}
    train = _exemplars("train", 0, values, TRAIN_CAPS)
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1, values, VALID_CAPS)))
    reader = CapsReader()
    on = stats_only(reader, spelling=True)(train=train, valid=valid)
    off = stats_only(reader, spelling=False)(train=train, valid=valid)
    assert CAPS not in off.explanations
    assert on.explanations[-1] == CAPS and on.explanations[:-1] == off.explanations
    assert on.polysemantic > off.polysemantic + 0.1  # the lists name train's capitals only
    plain = stats_only(KeywordSimulator(), spelling=True)(train=train, valid=valid)
    without = stats_only(KeywordSimulator(), spelling=False)(train=train, valid=valid)
    assert plain.explanations == without.explanations


def test_the_simulator_is_trained_on_the_same_descriptions():
    from simulator_training.concepts import _spelling

    trained = {c.name: c.descriptions for c in _spelling()}
    assert all(trained[f"spelling:{name}"] == descriptions for name, descriptions in SHAPES.items())
    assert all(trained[f"spelling:-{suf}"][0] == text for suf, text in SUFFIXES.items())
