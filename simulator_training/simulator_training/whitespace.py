"""Whitespace units (family ``whitespace``): line breaks, blank lines, indentation, spaces; and word-class units
(family ``word_class``, :func:`word_class_units`): plural nouns, forms of be, ... as the shipped lexicon gives them.

Real neurons fire on whitespace: on random units of a gemma-3-270m recording, ~9% of the activation of their top
windows falls on whitespace tokens, over 30% for one unit in twenty (``experiments/whitespace.py``), and a
simulator trained only on the other families reads none of the ways an explainer could name them. The other
families are concepts over *words* (a token takes the value of the word it stands for), and a whitespace token
stands for no word; so these units are built on the pool's tokens directly: a token's value is set by its own
text (10 where the class holds, 0 elsewhere).

Each class is one concept, written in several descriptions (:data:`CLASSES`); ``replicas`` units per class draw
different windows of train text (top: windows holding the class's tokens, random: any), so the family is not
a handful of windows seen over and over. Every unit is a training unit: the classes are few and named alike in
any data, so whether a simulator reads them is measured on real units no one trained on
(``experiments/whitespace.py``), not on held-out synthetic ones.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

from ns_dspy.agents.evidence import WHITESPACE

from .concepts import phrasings
from .text import Pool

__all__ = ["CLASSES", "whitespace_units", "word_class_units", "WORD_CLASS_FAMILY"]

WORD_CLASS_FAMILY = "word_class"


#: more ways to describe each class of :data:`ns_dspy.agents.evidence.WHITESPACE` (whose explanation, the one the
#: statistical explainer writes, comes first), and which windows show it: prose, code or any
_MORE: dict[str, tuple[list[str], str]] = {
    "line_break": (["newline tokens", "the end of each line (the line-break token)", 'the token "\\n" (a line break)',
                    "every line break, single or double", "the newline character"], "any"),
    "single_line_break": (["a lone newline: one line break, no blank line", 'the token "\\n" on its own, not "\\n\\n"',
                           "the end of a line that is not followed by a blank line"], "any"),
    "blank_line": (["paragraph breaks", 'the token "\\n\\n" (a blank line)',
                    "double line breaks between paragraphs or blocks of code"], "any"),
    "indentation": (["indentation in code", "runs of several spaces", "the leading spaces of indented code lines"],
                    "code"),
    "deep_indentation": (["the indentation of nested blocks of code, two levels or more",
                          "long runs of spaces, eight or more"], "code"),
    "space": (['a single space token " "', "standalone spaces"], "any"),
    "any_whitespace": (["whitespace", "tokens made only of spaces or line breaks"], "any"),
}

#: name -> (which token texts the class holds, its descriptions, which windows show it)
CLASSES: dict[str, tuple[Callable[[str], bool], list[str], str]] = {
    name: (holds, [text, *_MORE[name][0]], _MORE[name][1]) for name, (holds, text) in WHITESPACE.items()}


def _token_table(pool: Pool, holds: Callable[[str], bool]) -> np.ndarray:
    """Value per token id: 10 where the token's text is in the class, 0 elsewhere."""
    table = np.zeros(max(pool.token_strings, default=0) + 1, dtype=np.float32)
    for i, text in pool.token_strings.items():
        if holds(text):
            table[i] = 10.0
    return table


def whitespace_units(pool: Pool, *, replicas: int = 6, n_top: int = 8, n_random: int = 4, n_explanations: int = 6,
                     seed: int = 0) -> list[dict]:
    """``replicas`` training units per class of :data:`CLASSES` that the pool's train text shows, each with
    ``n_top`` windows holding the class's tokens and ``n_random`` others (drawn without reuse across a class's
    replicas while there are enough), targets 10 on the class's tokens and 0 elsewhere."""
    return token_class_units(pool, CLASSES, "whitespace", replicas=replicas, n_top=n_top, n_random=n_random,
                             n_explanations=n_explanations, seed=seed)


def word_class_units(pool: Pool, *, replicas: int = 6, n_top: int = 8, n_random: int = 4, n_explanations: int = 6,
                     seed: int = 0, valid_share: float = 0.2, split_seed: int = 0) -> list[dict]:
    """Family ``word_class``: ``replicas`` training units per word class of
    :data:`ns_dspy.agents.word_classes.WORD_CLASSES` as the statistical explainer names them: 10 on every token
    whose text the shipped lexicon gives that class (a context-free reading, on prose and code alike), 0
    elsewhere, described by the class's descriptions. A class whose ``syntax`` unit is a validation unit
    (:func:`simulator_training.data.unit_split` with ``valid_share`` and ``split_seed``) is left out, so the
    held-out parts of speech stay unseen."""
    from ns_dspy.agents.evidence import token_key
    from ns_dspy.agents.word_classes import WORD_CLASSES, lexicon

    from .data import unit_split

    words = lexicon()
    classes = {name: ((lambda n: lambda text: words.get(token_key(text)) == n)(name), descriptions, "any")
               for name, (_, descriptions) in WORD_CLASSES.items()
               if unit_split(f"syntax:{name}", valid_share, split_seed) == "train"}
    return token_class_units(pool, classes, WORD_CLASS_FAMILY, replicas=replicas, n_top=n_top, n_random=n_random,
                             n_explanations=n_explanations, seed=seed)


def token_class_units(pool: Pool, classes: dict[str, tuple[Callable[[str], bool], list[str], str]], family: str, *,
                      replicas: int, n_top: int, n_random: int, n_explanations: int, seed: int) -> list[dict]:
    """``replicas`` training units per class of ``classes`` (name -> (which token texts it holds, descriptions,
    which windows show it)) that the pool's train text shows, each with ``n_top`` windows holding the class's
    tokens and ``n_random`` others (drawn without reuse across a class's replicas while there are enough),
    targets 10 on the class's tokens and 0 elsewhere; units named ``FAMILY:CLASS#REPLICA``."""
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    out = []
    for name, (holds, descriptions, source) in classes.items():
        table = _token_table(pool, holds)
        candidates = pool.windows("train", source)
        ids = pool.token_ids[candidates]
        values = np.where(ids >= 0, table[np.maximum(ids, 0)], 0.0)
        hits = (values > 0).sum(1)
        firing = candidates[hits > 0]
        if len(firing) < n_top:
            continue
        order = rng.permutation(firing)
        others = rng.permutation(candidates)
        for r in range(replicas):
            top = [order[(r * n_top + k) % len(order)] for k in range(n_top)]
            rand = [w for w in others[r * n_random:] if w not in top][:n_random]
            exemplars = []
            for w, kind in [(w, "top") for w in top] + [(w, "random") for w in rand]:
                tids, tokens = pool.tokens(int(w))
                targets = table[np.asarray(tids)]
                exemplars.append({"tokens": tokens, "token_ids": tids,
                                  "targets": [round(float(t), 2) for t in targets], "kind": kind})
            out.append({"unit": f"{family}:{name}#{r}", "family": family,
                        "explanations": phrasings(descriptions, prng, n_explanations), "exemplars": exemplars})
    return out
