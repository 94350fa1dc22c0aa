"""More spelling and syntax units, generated from the text itself (``build-data --spelling N --syntax N``).

The hand-written ``spelling`` and ``syntax`` families hold a few dozen concepts each (20 suffixes, 9 prefixes, ...;
36 parts of speech and 13 tag pairs), so a simulator trained on them learns those concepts, and a held-out one
("words ending in -ness" when "-ness" was never trained on) has to be read from a description it has not seen in
that form. These generators draw many more concepts of the same kinds from the pool's own words, so that reading
the *kind* of description ("words ending in the letters X", "X right after Y") is what training teaches:

* :func:`spelling_concepts`: words ending or beginning with a letter sequence of 1 to 4 letters, words containing
  one, and words of a given length, each drawn only where the pool has many distinct words of it and no one word
  makes up most of its occurrences (else the unit would be that word's);
* :func:`syntax_concepts`: a part of speech right after another one ("adjectives right after an article"), from
  the Brown tags, drawn where the pair is frequent in the pool.

Both are off by default (the dataset is then what it was), seeded, and their names (``spelling:gen-...``,
``syntax:gen-...``) never clash with the hand-written units. Units are split into train and valid by name like
every other, and a generated training unit that correlates above ``max_r`` with a validation unit over the text is
left out by :func:`~simulator_training.data.build_synthetic` as any other is, so "-ings" never trains a held-out
"-ing".
"""

from __future__ import annotations

import random

import numpy as np

from .concepts import ALT, POS, PREFIXES, SUFFIXES, Concept, _lex, _tags, _v
from .text import Pool

__all__ = ["spelling_concepts", "syntax_concepts", "SPELLING_KINDS"]

SPELLING_KINDS = ("ending", "beginning", "containing", "length")


def _occurrences(pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """Per lower-cased form: its count among prose words, and whether it is an alphabetic word."""
    counts = np.bincount(pool.lower_id[~pool.code], minlength=len(pool.lowers))
    alpha = np.fromiter((w.isascii() and w.isalpha() for w in pool.lowers), dtype=bool, count=len(pool.lowers))
    return counts, alpha


def _spelling_candidates(pool: Pool, min_forms: int, min_count: int, max_share: float) -> list[tuple[str, str, object]]:
    """``(kind, key, predicate on a lower-cased word)`` for every letter sequence and length that qualifies."""
    counts, alpha = _occurrences(pool)
    words = [(w, int(counts[i])) for i, w in enumerate(pool.lowers) if alpha[i] and counts[i] > 0]
    taken = {("ending", e) for suf in SUFFIXES for e in ALT.get(suf, (suf,))} | {("beginning", p) for p in PREFIXES}
    found: dict[tuple[str, str], dict[str, int]] = {}
    for w, c in words:
        for k in range(1, 5):
            if len(w) >= k + 3:  # the sequence is part of a longer word, not the word itself
                found.setdefault(("ending", w[-k:]), {})[w] = c
                found.setdefault(("beginning", w[:k]), {})[w] = c
        if len(w) >= 5:
            for k in (2, 3):
                for s in {w[i:i + k] for i in range(1, len(w) - k)}:  # inside the word, not at its edges
                    found.setdefault(("containing", s), {})[w] = c
        found.setdefault(("length", str(len(w))), {})[w] = c
    out = []
    for (kind, key), members in sorted(found.items()):
        if (kind, key) in taken or (kind == "containing" and len(key) == 1):
            continue
        total = sum(members.values())
        if len(members) < min_forms or total < min_count or max(members.values()) > max_share * total:
            continue
        if kind == "ending":
            pred = (lambda key: lambda w: w.isascii() and w.isalpha() and len(w) >= len(key) + 3 and w.endswith(key))(key)
        elif kind == "beginning":
            pred = (lambda key: lambda w: w.isascii() and w.isalpha() and len(w) >= len(key) + 3 and w.startswith(key))(key)
        elif kind == "containing":
            pred = (lambda key: lambda w: w.isascii() and w.isalpha() and len(w) >= 5 and key in w[1:-1])(key)
        else:
            pred = (lambda n: lambda w: w.isascii() and w.isalpha() and len(w) == n)(int(key))
        out.append((kind, key, pred))
    return out


NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
           "thirteen", "fourteen", "fifteen")


def _spelling_descriptions(kind: str, key: str) -> list[str]:
    if kind == "length":
        n = int(key)
        words = NUMBERS[n] if n < len(NUMBERS) else key
        return [f"words of exactly {words} letters", f"{words}-letter words", f"words spelled with {n} letters, "
                "no more and no fewer"]
    letters = "the letter" if len(key) == 1 else "the letters"
    if kind == "ending":
        return [f'words ending in {letters} "{key}"', f"words that end in -{key}", f'any word whose spelling ends '
                f'with "{key}"']
    if kind == "beginning":
        return [f'words beginning with {letters} "{key}"', f"words that start with {key}-", f'any word spelled '
                f'with "{key}" at the start']
    return [f'words containing {letters} "{key}"', f'words with "{key}" inside them', f'any word spelled with "{key}" '
            "somewhere in the middle"]


def spelling_concepts(pool: Pool, n_units: int, seed: int = 0, *, min_forms: int = 12, min_count: int = 60,
                      max_share: float = 0.4) -> list[Concept]:
    """``n_units`` spelling units (or all there are), drawn with ``seed`` from the letter sequences and lengths of
    the pool's prose words (see the module docstring), each kind about equally often. A unit fires (10) on every
    prose word it describes; ``min_forms`` distinct words and ``min_count`` occurrences at least, no word above
    ``max_share`` of them."""
    rng = random.Random(seed * 104729 + 17)
    by_kind: dict[str, list] = {k: [] for k in SPELLING_KINDS}
    for cand in _spelling_candidates(pool, min_forms, min_count, max_share):
        by_kind[cand[0]].append(cand)
    queues = [rng.sample(by_kind[k], len(by_kind[k])) for k in SPELLING_KINDS]
    out: list[Concept] = []
    while len(out) < n_units and any(queues):
        for queue in queues:  # round-robin over the kinds
            if queue and len(out) < n_units:
                kind, key, pred = queue.pop()
                out.append(Concept(f"spelling:gen-{kind}-{key}", "spelling", _spelling_descriptions(kind, key),
                                   (lambda pred: lambda p: _v(_lex(p, pred) & ~p.code))(pred), "prose"))
    return out


def syntax_concepts(pool: Pool, n_units: int, seed: int = 0, *, min_count: int = 80) -> list[Concept]:
    """``n_units`` syntax units (or all there are), drawn with ``seed``: one part of speech of :data:`POS` right
    after another (fires (10) on the second word only), among the pairs that occur at least ``min_count`` times
    in the pool's prose. Described as "A right after B" in several wordings, with B's own description."""
    rng = random.Random(seed * 130363 + 29)
    classes = sorted(POS)
    present = {c: _tags(pool, POS[c][0]) & ~pool.code for c in classes}
    before = {c: _tags(pool, POS[c][0], pool.prev_tag) for c in classes}
    pairs = []
    for a in classes:
        for b in classes:
            if a != b and int((present[a] & before[b]).sum()) >= min_count:
                pairs.append((a, b))
    out = []
    for a, b in rng.sample(pairs, min(n_units, len(pairs))):
        da, db = POS[a][1], POS[b][1]
        descs = [f"{da[0]} right after {db[0]}", f"{da[1]} that directly follow {db[1]}",
                 f"{da[0]} when the word before is one of the {db[0]}, and nowhere else"]
        tags_a, tags_b = POS[a][0], POS[b][0]
        out.append(Concept(f"syntax:gen-{a}-after-{b}", "syntax", descs,
                           (lambda ta, tb: lambda p: _v(_tags(p, ta) & _tags(p, tb, p.prev_tag) & ~p.code))(tags_a, tags_b),
                           "prose"))
    return out
