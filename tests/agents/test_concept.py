"""The concept step (``ExplainConfig.concepts``): the LM names what a unit's highest-ranked train tokens share, and
a concept explanation joins or replaces the statistical word lists only when that scores higher on valid."""

from __future__ import annotations

import dspy
import numpy as np
import pytest
from dspy.utils.dummies import DummyLM

from ns_dspy.agents.concept import ConceptAgent, clean_concept, concept_explanations
from ns_dspy.agents.refinement import valid_scorer
from ns_dspy.program import with_concepts
from ns_dspy.scoring import HeldOut
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId


@pytest.mark.parametrize("answer, name", [
    ("Category: units of time.", "units of time"), ('"Python keywords"', "Python keywords"),
    ("bounds on a quantity\nThe words all ...", "bounds on a quantity"),
    ("The neuron activates on numbers", ""), ("tokens about code", ""),  # about the task, not the text
    ("one two three four five six seven eight nine", ""), ("123", ""), ("", "")])
def test_only_a_short_category_name_is_kept(answer, name):
    assert clean_concept(answer) == name


def test_a_concept_is_written_with_examples_and_alone():
    assert concept_explanations("units of time", ["day", 'say "hi"', "at least", "week", "hour", "month"]) == [
        'units of time, such as "day", "at least", "week" and "hour"', "units of time"]
    assert concept_explanations("units of time", []) == ["units of time"]


def _train(split="train"):
    rng = np.random.default_rng(0)
    vocab = [" at", " least", " most", " more", " than", " dog", " cat", " sat"]
    out = []
    for kind in ("top", "random"):
        for _ in range(12):
            tokens = [vocab[i] for i in rng.integers(2, len(vocab), 10)]
            tokens[3:5] = [" at", " least"]
            acts = np.array([6.0 if t == " least" else 3.0 if t == " most" else 0.0 for t in tokens], np.float32)
            out.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return out


def test_the_words_shown_are_the_top_tokens_with_a_word_before_them_that_nearly_always_precedes():
    words = ConceptAgent(most=3).words(_train())
    assert words[0] == "at least" and words[1] == "most"  # " most" follows many words
    with pytest.raises(ValueError, match="train exemplars only"):
        ConceptAgent().words(_train("valid"))


def test_the_agent_asks_k_times_and_keeps_distinct_usable_names():
    lm = DummyLM([{"concept": "bounds on a quantity"}, {"concept": "The neuron fires on limits"},
                  {"concept": "Bounds on a quantity."}, {"concept": "limits"}])
    with dspy.context(lm=lm):
        named = ConceptAgent()(_train(), k=4)
    assert named.concepts == ["bounds on a quantity", "limits"]
    assert named.failed == 1 and named.words[0] == "at least"


def test_a_concept_joins_or_replaces_the_lists_only_when_valid_rises():
    unit = UnitId(0, 1)
    tokens = [" dog", " cat", " quiet", " sat"] * 6
    acts = np.array([5.0 if t in (" dog", " cat") else 0.0 for t in tokens], np.float32)
    valid = HeldOut(unit, "valid", (Exemplar(tokens=tokens, activations=acts, split="valid", kind="top"),) * 3)
    scorer = valid_scorer(KeywordSimulator(), valid)
    lists = ['the word "dog"']
    score = scorer.union(lists)[1]
    # the keyword reader fires on "dog" and "cat" for the concept: better than "dog" alone
    chosen, better = with_concepts(scorer, lists, score, ['pets, such as "dog" and "cat"', "pets"])
    assert better.value > score.value + 0.1 and 'pets, such as "dog" and "cat"' in chosen
    # a concept the reader finds nothing in keeps the lists as they were
    same, kept = with_concepts(scorer, lists, score, ['things, such as "sky"', "things"])
    assert same == lists and kept.value == score.value
