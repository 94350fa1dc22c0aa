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


def test_the_program_takes_a_named_concept_as_an_lm_mode_only_with_concepts_on():
    """cat fires on valid but is seen once in train, so no word list names it; the LM's concept does."""
    from ns_dspy.agents import ClusterConfig
    from ns_dspy.config import ExplainConfig
    from ns_dspy.lms.scripted import agent_of, scripted_lm
    from ns_dspy.program import NeuronScope
    from tests.runs.test_runner import WordEmbedder

    fires = {" dog": 9.0, " cat": 9.0}
    vocab = [" dog", " cat", " mat", " sat", " ran", " on", " a", " sky", " big", " red"]
    rng = np.random.default_rng(3)

    def windows(split, n, allow_cat=True):
        out = []
        for k in range(n):
            tokens = [vocab[i] for i in rng.integers(0 if allow_cat else 2, len(vocab), 12)]
            tokens[5] = " dog" if k % 2 else tokens[5]
            tokens = [t if allow_cat or t != " cat" else " mat" for t in tokens]
            out.append(Exemplar(tokens=tokens, activations=np.array([fires.get(t, 0.0) for t in tokens], np.float32),
                                split=split, kind="top" if k < n // 2 else "random"))
        return out

    train, valid = windows("train", 24, allow_cat=False), HeldOut(UnitId(0, 1), "valid", tuple(windows("valid", 24)))
    answers = {"refinement": {"explanation": "the word dog"}, "hypothesis": {"explanation": "dogs"},
               "decomposition": {"conditions": ["This neuron activates on dogs"]},
               "concept": {"concept": "cat and dog"}}
    got = {}
    for on in (True, False):
        lm, engine = scripted_lm([lambda prompt, request: answers[agent_of(prompt)]] * 100)
        config = ExplainConfig(candidates=1, iterations=1, max_exemplars=5, cluster=ClusterConfig(), concepts=on,
                               list_edits=False, word_classes=False, whitespace=False, negative=False)
        with dspy.context(lm=lm):
            got[on] = NeuronScope(KeywordSimulator(), WordEmbedder(), config)(train=train, valid=valid)
        assert any("## concept ##" in p for p in engine.prompts) == on  # the LM is asked only with concepts on
    assert "cat and dog" in got[True].explanations and "cat and dog" not in got[False].explanations
    assert got[True].polysemantic > got[False].polysemantic + 0.05
    (mode,) = [m for m in got[True].trace.modes if m.explanation == "cat and dog"]
    assert mode.source == "lm" and not mode.trajectory
    assert got[True].trace.statistical.explanations == got[False].trace.statistical.explanations  # no LM there
