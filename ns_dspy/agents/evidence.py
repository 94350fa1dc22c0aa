"""Token statistics of a unit's train exemplars: evidence the agents can read, and the statistical explainer.

Small explainer LMs read a list of marked excerpts badly: they describe what one excerpt is about, quote the
first excerpt, or count nothing. A compact table computed with numpy from the same train exemplars gives them
what a careful reader would count by hand:

- the tokens that carry the most activation: how often each is the window's peak, its mean activation where it
  occurs against the unit's mean over quiet text, and the share of top windows it appears in;
- the commonest tokens just before the peaks (an activation depends only on the tokens up to it);
- frequent tokens of the random (quiet) windows that stay quiet: counter-examples.

Tokens are grouped by their text without surrounding spaces, case-folded (``" The"`` and ``"the"`` are one
token here). Activations are shown on the simulator's 0..10 scale of the unit's largest train activation, never
as raw values. Everything is deterministic (ties by first appearance) and uses train exemplars only: valid data
selects explanations and test data reports them.

:func:`statistical_explanations` writes explanations from the table alone (no LM): the top carriers as a word
list, the form the default simulator reads (``the words "X", "Y" and "Z"``). :func:`tiered_explanations` writes
sets of such lists, one per activation tier (:func:`ranked_tokens` orders the tokens): scored as a neuron-level
union whose members are calibrated on valid data (:func:`ns_dspy.scoring.polysemantic`), a set reads as a graded
word list, the strongest tier highest, which a single list cannot say to a simulator that reads lists as
yes/no. :func:`negative_explanations` lists the tokens where the activation is lowest, as explanations of the
negative side (:mod:`ns_dspy.scoring.polarity`: gated MLP neurons are signed, and for many of them the largest
excursions are negative). :func:`whitespace_explanations` names the whitespace classes (:data:`WHITESPACE`: line
breaks, indentation, ...) where the activation is high, which the tier lists leave out. ``ns-dspy explain --method
stats`` selects one list or one set on valid data, with a negative list (and with ``--whitespace`` a whitespace
class) added when that helps on valid, so a table row can sit beside NeuronScope's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..types import Exemplar

__all__ = ["TokenRow", "Evidence", "token_evidence", "statistical_explanations", "word_list", "token_key",
           "RankedToken", "ranked_tokens", "tiered_explanations", "negative_explanations", "TIER_FIRSTS",
           "TIER_COUNTS", "TIER_LONGEST", "TIER_TOKENS", "NEGATIVE_SIZES", "tier_tokens", "WHITESPACE",
           "whitespace_explanations", "word_class_explanations", "spelling_explanations", "context_explanations",
           "context_text", "context_pairs", "ContextPair", "train_only", "token_totals", "ranked_rows"]

SCALE = 10.0


def token_key(token: str) -> str:
    """How tokens are grouped: the text without surrounding spaces (a whitespace token as itself), case-folded."""
    core = token.strip()
    return (core or token).casefold()


def _show(token: str) -> str:
    core = token.strip() or token
    return core.replace("\n", "\\n").replace("\t", "\\t").replace('"', "'")


@dataclass(frozen=True)
class TokenRow:
    token: str
    """The token's commonest spelling (spaces stripped, newlines written ``\\n``)."""
    peaks: int
    """Top windows whose largest activation is on this token."""
    mean: float
    """Mean activation where the token occurs in the train windows (top and random), 0..10 scale."""
    share: float
    """Share of the top windows that contain the token."""
    carried: float
    """Share of all positive activation in the top windows that falls on this token."""
    count: int
    """Occurrences in the train windows (top and random)."""


@dataclass(frozen=True)
class Evidence:
    carriers: list[TokenRow]
    """Tokens carrying the most activation, most first."""
    before_peaks: list[tuple[str, int]]
    """The commonest tokens right before a top window's peak, with counts."""
    quiet: list[tuple[str, int, float]]
    """Frequent tokens of the random windows whose mean activation (0..10) stays low: (token, count, mean)."""
    baseline: float
    """The unit's mean activation over the random windows' tokens, 0..10 scale."""
    n_top: int
    n_random: int

    def table(self) -> str:
        """The evidence as compact text for an LM prompt (no raw activation values)."""
        if not self.carriers:
            return "(no token statistics: the unit has no positive activation in its train excerpts)"
        lines = [f"Computed over {self.n_top} top and {self.n_random} random training excerpts; activity on a 0-10 "
                 f"scale of the neuron's strongest activation (typical text: {self.baseline:.1f}).",
                 "Tokens that carry the most activation (token: peak token in N top excerpts; mean activity where "
                 "it occurs; share of top excerpts containing it):"]
        for row in self.carriers:
            lines.append(f'- "{row.token}": peak in {row.peaks}; mean {row.mean:.1f}; in {row.share:.0%}')
        if self.before_peaks:
            lines.append("Tokens just before the peaks: "
                         + ", ".join(f'"{t}" ({n}x)' for t, n in self.before_peaks))
        if self.quiet:
            lines.append("Frequent tokens on which the neuron stays quiet: "
                         + ", ".join(f'"{t}" (mean {m:.1f})' for t, _, m in self.quiet))
        return "\n".join(lines)


def token_evidence(top: Sequence[Exemplar], random: Sequence[Exemplar] = (), *, limit: int = 8) -> Evidence:
    """The evidence table of a unit from its train ``top`` and ``random`` exemplars (see the module docstring)."""
    train_only((*top, *random), "token evidence uses")
    top = [ex for ex in top if ex.tokens]
    random = [ex for ex in random if ex.tokens]
    peak = max((ex.max_activation for ex in top), default=0.0)
    if peak <= 0:
        return Evidence([], [], [], 0.0, len(top), len(random))
    scale = SCALE / peak

    keys: dict[str, int] = {}
    spellings: list[dict[str, int]] = []

    def index(token: str) -> int:
        k = token_key(token)
        i = keys.setdefault(k, len(keys))
        if i == len(spellings):
            spellings.append({})
        shown = _show(token)
        spellings[i][shown] = spellings[i].get(shown, 0) + 1
        return i

    top_ids = [np.array([index(t) for t in ex.tokens]) for ex in top]
    random_ids = [np.array([index(t) for t in ex.tokens]) for ex in random]
    n = len(keys)
    total = np.zeros(n)
    count = np.zeros(n)
    carried = np.zeros(n)
    peaks = np.zeros(n, dtype=int)
    windows = np.zeros(n, dtype=int)
    before: dict[int, int] = {}
    for ids, ex in zip(top_ids, top):
        acts = ex.activations.astype(np.float64) * scale
        np.add.at(total, ids, acts)
        np.add.at(count, ids, 1)
        np.add.at(carried, ids, np.clip(acts, 0, None))
        windows[np.unique(ids)] += 1
        j = int(np.argmax(ex.activations))
        if ex.activations[j] > 0:
            peaks[ids[j]] += 1
            if j > 0:
                before[int(ids[j - 1])] = before.get(int(ids[j - 1]), 0) + 1
    r_total, r_count = np.zeros(n), np.zeros(n)
    for ids, ex in zip(random_ids, random):
        acts = ex.activations.astype(np.float64) * scale
        np.add.at(r_total, ids, acts)
        np.add.at(r_count, ids, 1)
    all_count = count + r_count
    mean = (total + r_total) / np.maximum(all_count, 1)
    baseline = float(r_total.sum() / r_count.sum()) if r_count.sum() else float(total.sum() / max(count.sum(), 1))
    share_carried = carried / max(carried.sum(), 1e-12)

    def spelling(i: int) -> str:
        forms = spellings[i]
        return max(forms, key=lambda s: (forms[s], -list(forms).index(s)))

    order = sorted(range(n), key=lambda i: (-share_carried[i], i))
    rows = [TokenRow(spelling(i), int(peaks[i]), round(float(mean[i]), 2), round(windows[i] / len(top), 3),
                     round(float(share_carried[i]), 4), int(all_count[i]))
            for i in order[:limit] if share_carried[i] > 0]
    before_rows = [(spelling(i), c) for i, c in sorted(before.items(), key=lambda ic: (-ic[1], ic[0]))[:limit // 2]
                   if c >= 2]
    quiet_cut = baseline + 0.5
    frequent = sorted((i for i in range(n) if r_count[i] >= 3), key=lambda i: (-r_count[i], i))
    quiet = [(spelling(i), int(r_count[i]), round(float(r_total[i] / r_count[i]), 2))
             for i in frequent if r_total[i] / r_count[i] <= quiet_cut and peaks[i] == 0][:limit // 2]
    return Evidence(rows, before_rows, quiet, round(baseline, 2), len(top), len(random))


def quoted(tokens: Sequence[str]) -> str:
    """``"X"`` / ``"X" and "Y"`` / ``"X", "Y" and "Z"``."""
    q = [f'"{t}"' for t in tokens]
    if not q:
        raise ValueError("no tokens to list")
    return q[0] if len(q) == 1 else f"{', '.join(q[:-1])} and {q[-1]}"


def word_list(tokens: Sequence[str]) -> str:
    """``the word "X"`` / ``the words "X" and "Y"`` / ``the words "X", "Y" and "Z"``."""
    return f"the word{'' if len(tokens) == 1 else 's'} {quoted(tokens)}"


def statistical_explanations(evidence: Evidence, sizes: Sequence[int] = (1, 2, 3, 5, 8)) -> list[str]:
    """Candidate explanations from the table alone: the top carriers as word lists of each size in ``sizes``
    (as many as there are carriers), and the tokens that are most often the peak. Distinct, in that order;
    empty when the unit has no carrier. A caller selects among them on valid data."""
    carriers = [row.token for row in evidence.carriers if row.token.strip()]
    out: list[str] = []
    for k in sizes:
        if k <= len(carriers):
            text = word_list(carriers[:k])
            if text not in out:
                out.append(text)
    by_peaks = [row.token for row in sorted(evidence.carriers, key=lambda r: -r.peaks) if row.peaks > 0]
    if by_peaks:
        text = word_list(by_peaks[:3])
        if text not in out:
            out.append(text)
    if carriers and not out:
        out.append(word_list(carriers))
    return out


@dataclass(frozen=True)
class RankedToken:
    key: str
    """The grouping key (:func:`token_key`)."""
    token: str
    """Its first spelling in the exemplars, as shown in explanations (spaces stripped)."""
    r: float
    """Pearson r, over the train tokens, between the activations and "this token or one ranked above it"."""


def train_only(exemplars: Sequence[Exemplar], what: str) -> None:
    """A ValueError unless every exemplar is a train one (valid selects explanations, test reports them)."""
    held_out = {ex.split for ex in exemplars} - {"train"}
    if held_out:
        raise ValueError(f"{what} train exemplars only, got {'/'.join(sorted(held_out))} ones")


def ranked_tokens(exemplars: Sequence[Exemplar], *, prior: float = 2.0, most: int = 40,
                  lowest: bool = False) -> list[RankedToken]:
    """The tokens of ``exemplars`` (train windows, top and random) that a word list should name, in order:
    tokens seen at least twice (once is anecdote), by their mean activation shrunk towards the overall mean,
    ``(sum + prior * mean) / (count + prior)``, largest first; equal values by key. At most ``most``, and never so
    many that the list would cover every token. Each row carries the train correlation of the indicator of the
    list up to it, so a caller sees where a longer list stops helping.

    ``lowest``: the other side, for a negative explanation (:mod:`ns_dspy.scoring.polarity`): the tokens whose
    shrunk mean is below zero and below the overall mean, lowest first (their correlations are negative). Below
    zero, so that "(negative)" is true of them: a unit that never goes negative has none, and the tokens where
    it is merely quiet are not named as if it were pushed down there."""
    train_only(exemplars, "tokens are ranked on")
    acts, total, count, shown = token_totals(exemplars)
    if not len(acts) or acts.var() <= 0:
        return []
    mu = float(acts.sum()) / len(acts)
    shrunk = {k: (total[k] + prior * mu) / (count[k] + prior) for k in total if k.strip() and count[k] >= 2}
    if lowest:
        order = sorted((k for k in shrunk if shrunk[k] < min(mu, 0.0)), key=lambda k: (shrunk[k], k))
    else:
        order = sorted(shrunk, key=lambda k: (-shrunk[k], k))
    return ranked_rows(order[:most], acts, total, count, shown)


def token_totals(exemplars: Sequence[Exemplar]) -> tuple[np.ndarray, dict[str, float], dict[str, int], dict[str, str]]:
    """Over the tokens of ``exemplars`` (those with tokens): their activations, and per grouping key
    (:func:`token_key`) the sum of its activations, its count and its first spelling as shown in explanations."""
    exemplars = [ex for ex in exemplars if ex.tokens]
    if not exemplars:
        return np.zeros(0), {}, {}, {}
    acts = np.concatenate([np.asarray(ex.activations, np.float64) for ex in exemplars])
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    shown: dict[str, str] = {}
    at = 0
    for ex in exemplars:
        for tok in ex.tokens:
            k = token_key(tok)
            total[k] = total.get(k, 0.0) + float(acts[at])
            count[k] = count.get(k, 0) + 1
            shown.setdefault(k, _show(tok))
            at += 1
    return acts, total, count, shown


def ranked_rows(order: Sequence[str], acts: np.ndarray, total: dict[str, float], count: dict[str, int],
                shown: dict[str, str]) -> list[RankedToken]:
    """:class:`RankedToken` rows for the keys of ``order`` (:func:`token_totals`' sums and counts), each with the
    train correlation of the indicator of the list up to it; stops before a list that would cover every token. A
    key absent from the exemplars adds no token (its row repeats the correlation before it, 0 at the start)."""
    n_all, sum_all, var = len(acts), float(acts.sum()), float(acts.var())
    out: list[RankedToken] = []
    n1, s1 = 0, 0.0
    for k in order:
        n1, s1 = n1 + count.get(k, 0), s1 + total.get(k, 0.0)
        if n1 >= n_all:
            break
        r = 0.0 if n1 == 0 else ((s1 / n1 - (sum_all - s1) / (n_all - n1)) * np.sqrt(n1 * (n_all - n1))
                                 / n_all / np.sqrt(var))
        out.append(RankedToken(k, shown.get(k, k), round(float(r), 6)))
    return out


#: first-tier sizes and numbers of tiers the statistical explainer tries (:func:`tiered_explanations`); four tiers
#: were added when the retrained default simulator read lists of 32 words (dev neurons only: +0.014 +- 0.005 on
#: test over three; a first tier of 6 or 8 raised valid but not test), five tiers on 12-03
#: (``experiments/tier_depth.py``, dev neurons only: +0.009 +- 0.002 on test over four, 11 of 12 up, none down)
TIER_FIRSTS, TIER_COUNTS = (1, 2, 3, 4), (2, 3, 4, 5)
#: the longest list one tier is written as (:func:`tiered_explanations`; None: one list per tier, however long).
#: Lists of at most 32 or 16 tokens were measured on 12-04 and not adopted (``experiments/tier_depth.py``, dev
#: neurons only: test -0.000 +- 0.001 and +0.001 +- 0.001): each list is calibrated on valid, which makes up for the
#: simulator's lower recall of long lists
TIER_LONGEST: int | None = None


def tier_tokens(firsts: Sequence[int] = TIER_FIRSTS, tiers: Sequence[int] = TIER_COUNTS) -> int:
    """The most tokens one set of :func:`tiered_explanations` ``(ranked, firsts, tiers)`` names."""
    return max(k * (2 ** t - 1) for k in firsts for t in tiers)


#: the most tokens one set of tier lists names (4 + 8 + 16 + 32 + 64): how many :func:`ranked_tokens` the explainer
#: asks for
TIER_TOKENS = tier_tokens()
#: the lengths of the negative lists tried (:func:`negative_explanations`)
NEGATIVE_SIZES = (2, 4, 8, 16)


def tiered_explanations(ranked: Sequence[RankedToken], firsts: Sequence[int] = TIER_FIRSTS,
                        tiers: Sequence[int] = TIER_COUNTS, longest: int | None = TIER_LONGEST) -> list[list[str]]:
    """Sets of word lists, one list per tier of ``ranked`` (most first): for each first-tier size ``k`` in
    ``firsts`` and number of tiers ``t`` in ``tiers``, tiers of ``k``, ``2k``, ``4k``, ... tokens (each tier twice
    the one before, as activations thin out), when ``ranked`` has enough tokens. Distinct, in that order.
    A tier of more than ``longest`` tokens is written as the fewest consecutive lists (in rank order, of equal
    length within one) of at most ``longest`` each: the simulator reads long lists with less recall (``None``:
    one list per tier). A caller scores each set as a calibrated union on valid data and keeps the best (with
    the single lists)."""
    if longest is not None and longest < 1:
        raise ValueError(f"longest must be at least 1, got {longest}")
    tokens = [row.token for row in ranked]
    out: list[list[str]] = []
    for k in firsts:
        for t in tiers:
            sizes = [k * 2 ** i for i in range(t)]
            if k < 1 or sum(sizes) > len(tokens):
                continue
            parts, at = [], 0
            for size in sizes:
                n = 1 if longest is None else -(-size // longest)
                parts += [word_list(tokens[at + j * size // n:at + (j + 1) * size // n]) for j in range(n)]
                at += size
            if parts not in out:
                out.append(parts)
    return out


def negative_explanations(lowest: Sequence[RankedToken], sizes: Sequence[int] = NEGATIVE_SIZES) -> list[str]:
    """Negative explanations (:mod:`ns_dspy.scoring.polarity`) from the tokens where the activation is lowest
    (``ranked_tokens(..., lowest=True)``): ``(negative) the words ...`` of the first ``k`` for each ``k`` in
    ``sizes`` that there are enough tokens for. A caller adds one to an explanation set when the set's
    calibrated union scores higher on valid with it."""
    from ..scoring.polarity import negative

    tokens = [row.token for row in lowest]
    return [negative(word_list(tokens[:k])) for k in sizes if 0 < k <= len(tokens)]


def _spaces(token: str, least: int) -> bool:
    return len(token) >= least and set(token) == {" "}


#: the whitespace classes the statistical explainer can name, which a quoted word list cannot show: name ->
#: (which token texts the class holds, the explanation), in order; ``simulator_training``'s ``whitespace`` family
#: trains a simulator on the same classes and these explanations among its descriptions
WHITESPACE: dict[str, tuple] = {
    "line_break": (lambda t: "\n" in t and not t.strip(), "line breaks"),
    "single_line_break": (lambda t: t == "\n", "single line breaks, not blank lines"),
    "blank_line": (lambda t: t.count("\n") >= 2 and not t.strip(), "blank lines (two or more line breaks in a row)"),
    "indentation": (lambda t: _spaces(t, 2), "indentation: the runs of spaces at the start of an indented line"),
    "deep_indentation": (lambda t: _spaces(t, 8), "deep indentation (eight spaces or more)"),
    "space": (lambda t: t == " ", "lone space tokens"),
    "any_whitespace": (lambda t: bool(t) and not t.strip(), "whitespace tokens: spaces, indentation and line breaks"),
}


def whitespace_explanations(exemplars: Sequence[Exemplar], *, prior: float = 2.0, most: int = 3) -> list[str]:
    """Explanations of the whitespace classes (:data:`WHITESPACE`) where the train activation is highest: each
    class seen at least twice in ``exemplars`` (train windows, top and random) whose mean activation, shrunk
    towards the overall mean as :func:`ranked_tokens` shrinks a token's, is above the overall mean; highest first,
    at most ``most``. A caller adds one to an explanation set when the set's calibrated union scores higher on
    valid data with it."""
    train_only(exemplars, "whitespace is ranked on")
    tokens = [t for ex in exemplars for t in ex.tokens]
    if not tokens:
        return []
    acts = np.concatenate([np.asarray(ex.activations, np.float64) for ex in exemplars if ex.tokens])
    mu = float(acts.mean())
    rows = []
    for name, (holds, text) in WHITESPACE.items():
        mask = np.fromiter((holds(t) for t in tokens), dtype=bool, count=len(tokens))
        n = int(mask.sum())
        if n >= 2:
            shrunk = (float(acts[mask].sum()) + prior * mu) / (n + prior)
            if shrunk > mu:
                rows.append((-shrunk, name, text))
    return [text for _, _, text in sorted(rows)[:most]]


def word_class_explanations(exemplars: Sequence[Exemplar], *, most: int = 3, min_count: int = 5, min_r: float = 0.05,
                            prior: float = 2.0, classes: dict[str, str] | None = None) -> list[str]:
    """Explanations of the word classes (:data:`ns_dspy.agents.word_classes.WORD_CLASSES`: plural nouns, forms
    of *be*, ...) that the train activation follows most: for each class with at least ``min_count`` tokens in
    ``exemplars`` (train windows, top and random; a token's class from the shipped lexicon, or ``classes``), its
    mean activation shrunk towards the overall mean as :func:`ranked_tokens` shrinks a token's. A class above the
    overall mean is named as it is ("plural nouns"), one below both it and zero as a negative explanation
    ("(negative) plural nouns", :mod:`ns_dspy.scoring.polarity`); ranked by the train correlation of the class's
    indicator with the activation (in the named direction; at least ``min_r``), largest first, at most ``most``.
    A caller adds one to an explanation set when the set's calibrated union scores higher on valid data with it."""
    from .word_classes import WORD_CLASSES, lexicon

    train_only(exemplars, "word classes are ranked on")
    classes = lexicon() if classes is None else classes
    of = np.array([classes.get(token_key(t), "") for ex in exemplars for t in ex.tokens])
    return _class_explanations(exemplars, {descriptions[0]: of == name for name, (_, descriptions)
                                           in WORD_CLASSES.items()}, most, min_count, min_r, prior)


def spelling_explanations(exemplars: Sequence[Exemplar], *, most: int = 3, min_count: int = 5, min_r: float = 0.05,
                          prior: float = 2.0) -> list[str]:
    """Explanations of the spelling classes (:func:`ns_dspy.agents.word_classes.spelling_classes`: words
    written in all capital letters, words ending in -ing, numbers written with digits, ...) that the train
    activation follows most, chosen and named as :func:`word_class_explanations` chooses word classes. A class
    spans every word of its shape, which a list names only where train shows it."""
    from .word_classes import spelling_classes, spelling_description

    train_only(exemplars, "spelling classes are ranked on")
    marks: dict[str, list[bool]] = {}
    for ex in exemplars:
        if ex.tokens:
            for name, mask in spelling_classes(list(ex.tokens)).items():
                marks.setdefault(name, []).extend(mask)
    return _class_explanations(exemplars, {spelling_description(name): np.array(mask, bool)
                                           for name, mask in marks.items()}, most, min_count, min_r, prior)


def _class_explanations(exemplars: Sequence[Exemplar], masks: dict[str, np.ndarray], most: int, min_count: int,
                        min_r: float, prior: float) -> list[str]:
    """:func:`word_class_explanations`' choice among classes given as ``{description: mask over the tokens of
    exemplars}``."""
    from ..scoring.polarity import negative

    n_tokens = sum(len(ex.tokens) for ex in exemplars)
    if not n_tokens:
        return []
    acts = np.concatenate([np.asarray(ex.activations, np.float64) for ex in exemplars if ex.tokens])
    mu, sd = float(acts.mean()), float(acts.std())
    if sd <= 0:
        return []
    rows = []
    for text, mask in masks.items():
        n = int(mask.sum())
        if n < min_count or n == n_tokens:
            continue
        shrunk = (float(acts[mask].sum()) + prior * mu) / (n + prior)
        r = float(np.corrcoef(mask.astype(np.float64), acts)[0, 1])
        if shrunk > mu and r >= min_r:
            rows.append((-r, text, text))
        elif shrunk < min(mu, 0.0) and r <= -min_r:
            rows.append((r, text, negative(text)))
    return [named for _, _, named in sorted(rows)[:most]]


def context_text(token: str, before: str) -> str:
    """How an explanation names a token in the context of the token before it: ``the word "to" only right after
    "up"`` (what :func:`context_explanations` writes; ``simulator_training``'s ``context`` family trains the
    simulator on the same words)."""
    return f'the word "{token}" only right after "{before}"'


class ContextPair(NamedTuple):
    """A token in the context of the token before it, as :func:`context_pairs` ranks them: both tokens' keys
    (:func:`token_key`) and their shown forms."""

    before: str
    token: str
    shown_before: str
    shown: str

    @property
    def text(self) -> str:
        return context_text(self.shown, self.shown_before)


def context_explanations(exemplars: Sequence[Exemplar], explanations: Sequence[str] = (), *, most: int = 3,
                         min_count: int = 3, prior: float = 2.0) -> list[str]:
    """:func:`context_pairs` written as explanations, ``the word "to" only right after "up"``. A caller adds one to
    an explanation set when the set's calibrated union scores higher on valid data with it."""
    return [pair.text for pair in context_pairs(exemplars, explanations, most=most, min_count=min_count,
                                                prior=prior)]


def context_pairs(exemplars: Sequence[Exemplar], explanations: Sequence[str] = (), *, most: int = 3,
                  min_count: int = 3, prior: float = 2.0) -> list[ContextPair]:
    """The (token before, token) pairs where the train activation lies furthest above what the word lists among
    ``explanations`` (the set chosen so far) give that token: a token of the lists at its list's mean train
    activation, any other at the mean of the tokens no list names. For each (previous token, token) pair seen at
    least ``min_count`` times in ``exemplars`` (train windows, top and random; neither token whitespace nor holding
    a double quote), its mean activation is shrunk towards the overall mean as :func:`ranked_tokens` shrinks a
    token's; a pair above the overall mean is ranked by its occurrences times that excess over the token's level,
    largest first; one pair per token, at most ``most``. Word lists name tokens, not their neighbours: this is the
    part of the activation that the token before carries (``experiments/limits.py``'s top rung;
    ``experiments/context_pairs.py`` reads it exactly)."""
    from .list_edits import parse_word_list

    train_only(exemplars, "contexts are ranked on")
    exemplars = [ex for ex in exemplars if ex.tokens]
    if not exemplars:
        return []
    group: dict[str, int] = {}
    for i, parsed in enumerate(parse_word_list(e) for e in explanations):
        if parsed and not parsed[0]:
            for tok in parsed[1]:
                group.setdefault(token_key(tok), i)
    acts = np.concatenate([np.asarray(ex.activations, np.float64) for ex in exemplars])
    mu = float(acts.mean())
    sums: dict = {}
    counts: dict = {}
    shown: dict[str, str] = {}
    pair_of: dict[tuple[str, str], int] = {}
    at = 0
    for ex in exemplars:
        keys = [token_key(t) for t in ex.tokens]
        for i, tok in enumerate(ex.tokens):
            act, key = float(acts[at]), keys[i]
            at += 1
            shown.setdefault(key, _show(tok))
            g = group.get(key, -1)
            sums[g], counts[g] = sums.get(g, 0.0) + act, counts.get(g, 0) + 1
            if i and key.strip() and keys[i - 1].strip():
                pair = (keys[i - 1], key)
                sums[pair], counts[pair] = sums.get(pair, 0.0) + act, counts.get(pair, 0) + 1
                pair_of[pair] = g
    rows = []
    for pair, g in pair_of.items():
        n = counts[pair]
        if n < min_count or '"' in pair[0] + pair[1]:
            continue
        shrunk = (sums[pair] + prior * mu) / (n + prior)
        gain = n * (shrunk - sums[g] / counts[g])
        if shrunk > mu and gain > 0:
            rows.append((-gain, pair))
    out, named = [], set()
    for _, (before, key) in sorted(rows):
        if key not in named and len(out) < most:
            named.add(key)
            out.append(ContextPair(before, key, shown[before], shown[key]))
    return out
