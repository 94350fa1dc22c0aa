"""Context in the statistical explainer (``ExplainConfig.context``): a neuron that fires on "than" only in "more
than" cannot be named by a word list ("than" is quiet elsewhere), so the explainer can add ``the word "than" only
right after "more"`` to its chosen set, kept only when the set then scores higher on valid. The reader here reads
that form exactly (the keyword simulator would fire on both words)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ns_dspy.agents.evidence import ContextPair, context_explanations, context_pairs
from ns_dspy.build import ADDED_OPTIONS
from ns_dspy.scoring import HeldOut
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId
from tests.agents.stats_only import stats_only

UNIT = UnitId(0, 1)
VOCAB = [" more", " than", " dog", " cat", " sat", " ran", " on", " sky", " big", " the", " less", " was"]
THAN = 'the word "than" only right after "more"'


def _windows(split: str, seed: int, fire: dict[tuple[str, str], float], token: dict[str, float] | None = None,
             n: int = 16) -> list[Exemplar]:
    """Windows of 12 random words of VOCAB; a token after its pair's first word at ``fire``'s value, else at
    ``token``'s (0 if none), plus a little noise."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in ("top", "random"):
        for _ in range(n):
            tokens = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 12)]
            acts = [fire.get((tokens[i - 1].strip(), t.strip()), (token or {}).get(t, 0.0)) if i
                    else (token or {}).get(t, 0.0) for i, t in enumerate(tokens)]
            out.append(Exemplar(tokens=tokens, activations=np.array(acts, np.float32) + rng.normal(0, 0.1, 12)
                                .astype(np.float32), split=split, kind=kind))
    return out


def test_the_pair_whose_activation_the_lists_miss_most_is_named_first():
    train = _windows("train", 0, {("more", "than"): 8.0, ("the", "dog"): 3.0})
    texts = context_explanations(train)
    assert texts[:2] == [THAN, 'the word "dog" only right after "the"']
    assert len(context_explanations(train, most=1)) == 1
    assert context_explanations(train, min_count=10 ** 6) == []  # a pair seen fewer times is not named
    # "than" after "less" is quiet: of the pairs that end in "than", only the one above the mean is named
    assert not any('"than" only right after "less"' in t for t in texts)
    flat = [Exemplar(tokens=ex.tokens, activations=np.zeros(len(ex.tokens), np.float32), split="train", kind=ex.kind)
            for ex in train]
    assert context_explanations(flat) == []  # nothing above the mean
    with pytest.raises(ValueError, match="train exemplars only"):
        context_explanations(_windows("valid", 0, {}))


def test_a_token_the_lists_already_give_its_level_gets_no_context():
    # "dog" fires wherever it is: listed, no pair of it rises above its list's level; unlisted, its pairs do
    train = _windows("train", 0, {("more", "than"): 8.0}, token={" dog": 6.0})
    assert any('"dog" only right after' in t for t in context_explanations(train))
    listed = context_explanations(train, ['the word "dog"'])
    assert not any('"dog"' in t for t in listed) and listed[0] == THAN
    # a negative list is not a level the lists give
    assert any('"dog" only right after' in t for t in context_explanations(train, ['(negative) the word "dog"']))


def test_whitespace_and_quotes_are_left_to_other_explanations():
    rng = np.random.default_rng(0)
    tokens = [[" a", "\n", '"', " b", " a", " b"] for _ in range(8)]
    train = [Exemplar(tokens=t, activations=np.array([0, 0, 0, 5, 0, 3], np.float32) + rng.normal(0, 0.1, 6)
                      .astype(np.float32), split="train", kind="top") for t in tokens]
    assert context_explanations(train) == ['the word "b" only right after "a"']
    assert context_pairs(train) == [ContextPair("a", "b", "a", "b")]  # keys and shown forms, typed


class ContextReader(KeywordSimulator):
    """The keyword simulator, plus ``the word "Y" only right after "X"`` read exactly: 10 on Y after X."""

    def simulate(self, explanations, exemplars):
        out = super().simulate(explanations, exemplars)
        for i, text in enumerate(explanations):
            m = re.fullmatch(r'the word "(.+)" only right after "(.+)"', text)
            if m:
                out[i] = [np.array([10.0 if j and t.strip() == m[1] and ex.tokens[j - 1].strip() == m[2] else 0.0
                                    for j, t in enumerate(ex.tokens)], np.float32) for ex in exemplars]
        return out


def test_a_context_joins_the_set_when_it_helps_on_valid():
    fire = {("more", "than"): 8.0}
    token = {" dog": 5.0}
    train = _windows("train", 0, fire, token)
    valid = HeldOut(UNIT, "valid", tuple(_windows("valid", 1, fire, token)))
    reader = ContextReader()
    on = stats_only(reader, context=True)(train=train, valid=valid)
    off = stats_only(reader, context=False)(train=train, valid=valid)
    assert THAN not in off.explanations
    assert on.explanations[-1] == THAN and on.explanations[:-1] == off.explanations
    assert on.polysemantic > off.polysemantic + 0.1
    assert on.trace.statistical.explanations == on.explanations
    # the keyword simulator fires on "more" and on every "than": that loses on valid, and the set stays as it was
    plain = stats_only(KeywordSimulator(), context=True)(train=train, valid=valid)
    without = stats_only(KeywordSimulator(), context=False)(train=train, valid=valid)
    assert plain.explanations == without.explanations
    assert ("explain.context", False) in ADDED_OPTIONS  # run files made before the option resume without it
