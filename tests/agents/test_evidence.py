"""Token evidence and the statistical explainer, on exemplars whose statistics are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import statistical_explanations, token_evidence, word_list
from ns_dspy.types import Exemplar


def _ex(words, acts, kind="top", split="train"):
    return Exemplar(tokens=list(words), activations=np.array(acts, np.float32), kind=kind, split=split)


def _unit():
    """Fires on ' dog' (3.7) after ' the', weakly on ' cat' (1.1); ' the' and ' ran' stay quiet."""
    top = [_ex(["The", " dog", " ran"], [0, 3.7, 0]),
           _ex([" the", " dog", " and", " the", " cat"], [0, 3.5, 0, 0, 1.1]),
           _ex([" a", " cat", " sat"], [0, 1.0, 0]),
           _ex([" the", " Dog", " sat"], [0, 3.6, 0.1])]
    random = [_ex([" the", " ran", " the", " sat", " the"], [0, 0, 0, 0, 0], kind="random"),
              _ex([" ran", " the", " ran", " a"], [0, 0, 0.05, 0], kind="random")]
    return top, random


def test_the_table_counts_what_a_careful_reader_would():
    top, random = _unit()
    ev = token_evidence(top, random)
    dog, cat = ev.carriers[0], ev.carriers[1]
    assert (dog.token, dog.peaks, dog.share) == ("dog", 3, 0.75)  # ' dog' and ' Dog' are one token
    assert dog.mean == pytest.approx(10 * (3.7 + 3.5 + 3.6) / 3 / 3.7, abs=0.01)  # 0..10 of the largest activation
    assert (cat.token, cat.peaks) == ("cat", 1) and cat.carried < dog.carried
    assert ev.before_peaks == [("the", 3)]  # "The" and " the" too
    assert [t for t, _, _ in ev.quiet] == ["the", "ran"]  # frequent in random windows, never a peak
    assert ev.n_top == 4 and ev.n_random == 2
    table = ev.table()
    assert '"dog": peak in 3' in table and "3.7" not in table and "3.5" not in table  # no raw activation values
    assert token_evidence(top, random) == ev  # deterministic


def test_statistical_explanations_are_word_lists_of_the_carriers():
    top, random = _unit()
    out = statistical_explanations(token_evidence(top, random))
    assert out[0] == 'the word "dog"' and out[1] == 'the words "dog" and "cat"'
    assert len(out) == len(set(out))
    assert word_list(["a", "b", "c"]) == 'the words "a", "b" and "c"'


def test_no_activation_and_held_out_exemplars():
    quiet = [_ex([" a", " b"], [0, -1])]
    ev = token_evidence(quiet)
    assert ev.carriers == [] and statistical_explanations(ev) == [] and "no positive activation" in ev.table()
    with pytest.raises(ValueError, match="train exemplars only"):
        token_evidence([_ex([" a"], [1.0], split="valid")])
