"""experiments/corpus_tokens.py's blended ranking: window statistics steadied by the whole train split's."""

from __future__ import annotations

import numpy as np
from corpus_tokens import _table, blended_ranking

from ns_dspy.agents.evidence import ranked_tokens
from ns_dspy.types import Exemplar


def _train(tokens: list[str], acts: list[float]) -> list[Exemplar]:
    return [Exemplar(tokens=tokens, activations=np.asarray(acts, np.float32), kind="top", split="train")]


def test_the_table_is_each_tokens_mean():
    means, counts, mu = _table(np.array([3, 3, 5]), np.array([1.0, 3.0, 8.0]))
    assert means == {3: 2.0, 5: 8.0} and counts == {3: 2, 5: 1} and mu == 4.0


def test_the_corpus_demotes_a_token_active_only_in_the_windows_and_adds_one_they_never_showed():
    # the windows: "cat" high twice, "dog" lower twice; "eel" never shown
    train = _train([" cat", " dog", " cat", " dog", " the", " the"], [9, 5, 9, 5, 0, 0])
    assert [r.key for r in ranked_tokens(train)][:2] == ["cat", "dog"]
    # the whole train split: "cat" is mostly quiet (the windows caught its rare peaks), "eel" steadily high
    strings = [" cat", " dog", " eel", " the"]
    ids = np.array([0] * 40 + [1] * 4 + [2] * 6 + [3] * 50)
    acts = np.array([9.0] * 2 + [0.0] * 38 + [5.0] * 4 + [8.0] * 6 + [0.0] * 50)
    ranked = blended_ranking(strings, ids, acts)(train)
    keys = [r.key for r in ranked]
    assert keys[:2] == ["eel", "dog"] and keys.index("cat") > keys.index("dog")
    assert next(r for r in ranked if r.key == "eel").token == "eel"  # named as the corpus spells it
    # the negative side is the shipped ranking's
    assert blended_ranking(strings, ids, acts)(train, lowest=True) == ranked_tokens(train, lowest=True)
