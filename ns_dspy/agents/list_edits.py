"""Refinement of word lists from their own errors: the statistical modes edited against valid, confirmed on train.

The statistical explainer writes word lists from the train exemplars and chooses a set of them on valid. Like the
Refinement agent, which shows the LM each candidate's missed tokens and false alarms on valid, :func:`edit_lists`
reads the set's errors there and proposes edits, without an LM: the set's calibrated union is simulated on the
valid windows and each token type's residual (the truth scaled to 0..10, the valid maximum at 10, minus the
calibrated prediction, summed over its valid occurrences) names the most **missed** tokens (not listed, seen at
least twice, positive residual), the worst **false alarms** (listed, negative residual) and, with several positive
lists (tiers), the most **misplaced** tokens (listed, seen at least twice, largest residual either way, whose valid
level is nearer another list's). The candidates of a round: each missed token added to the positive list whose
tokens' mean valid activation is nearest its own, all of them added, each false alarm dropped, all of them
dropped, each misplaced token moved to the list nearest its level.

Two options were measured and are off by default. A **screen** (``screen=N``) simulates fewer candidates: it ranks
them by the score they would get if the simulator read each changed list as it reads the list it came from (an
added token at that list's mean prediction on its listed tokens, a dropped one at its mean elsewhere), simulates
the best N, then one more at a time, in the screen's order, while none simulated so far passes (a gain on valid and
the train check below) and the screen still expects a gain of more than ``min_delta``; the exact valid score
decides. **Moves** (``moves=True``) also move a listed token to the positive list whose level is nearest its own.
Measured with ``experiments/list_edits.py`` (tokens simulated per neuron in new explanation-text pairs): on the 12
development neurons the screen (N = 3) made the same edits as simulating every candidate on all 12, for 58,900
tokens against 75,000, and moves raised test by +0.004 more (within noise); measured once on the 16 evaluation
neurons, the screen missed one edit worth +0.18 on one neuron (test gain +0.011 against +0.022, 57,800 tokens
against 69,600), with or without moves. A 17-21% saving does not pay for that.

The best candidate on valid is taken when it raises the valid score by more than ``min_delta`` **and does not
lower the set's score on the train windows** (the explainer's own data; calibrations fitted on valid), else the
next best on valid that passes. Without that check the edits fit the valid windows only: on 12 development
neurons of gemma-3-270m, +0.055 on valid and -0.008 on test; with it +0.032 and +0.009, no neuron lower on test
(``experiments/list_edits.py``). Test data is never read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..scoring import HeldOut, Score, polysemantic
from ..scoring.calibration import union
from ..scoring.correlation import pooled
from ..scoring.heldout import simulate
from ..scoring.polarity import is_negative
from ..types import Exemplar
from .evidence import token_key, train_only, word_list

__all__ = ["Edited", "edit_lists", "parse_word_list", "render_word_list"]

WordList = tuple[bool, list[str]]  # (negative, tokens)


def parse_word_list(text: str) -> WordList | None:
    """``(negative, tokens)`` of a list as :func:`~.evidence.word_list` writes it (``(negative) `` in front for a
    negative mode), or None for any other text (one that does not render back to itself)."""
    negative = is_negative(text)
    body = text.split(") ", 1)[1] if negative else text
    m = re.match(r"the words? (.*)$", body, re.S)
    if not m:
        return None
    tokens = re.findall(r'"(.*?)"(?:, | and |$)', m.group(1), re.S)
    return (negative, tokens) if tokens and word_list(tokens) == body else None


def render_word_list(negative: bool, tokens: Sequence[str]) -> str:
    return f"(negative) {word_list(tokens)}" if negative else word_list(tokens)


@dataclass
class Edited:
    """What :func:`edit_lists` did: the explanations (the input when nothing was taken), their valid score
    (``score``: the calibrated union, or the one list's own score), each explanation's own valid score
    (``valids``, from the same simulations) and the edits taken, ``(edit, valid score)``."""

    explanations: list[str]
    score: Score
    valids: list[float]
    edits: list[tuple[str, float]] = field(default_factory=list)


class _Sets:
    """Simulations of word-list sets on one unit's valid and train windows, each text simulated once per split;
    the ``fixed`` texts (not word lists) join every set after its lists."""

    def __init__(self, simulator, valid: HeldOut, train: Sequence[Exemplar], fixed: Sequence[str] = ()):
        self.simulator, self.valid, self.train = simulator, valid, [ex for ex in train if ex.tokens]
        self.fixed = list(fixed)
        self._preds: dict[tuple[str, str], list[np.ndarray]] = {}
        self._keys = [[token_key(t) for t in ex.tokens] for ex in valid.exemplars]

    def preds(self, texts: list[str], split: str) -> list[list[np.ndarray]]:
        exemplars = self.valid.exemplars if split == "valid" else self.train
        missing = [t for t in dict.fromkeys(texts) if (t, split) not in self._preds]
        if missing:
            for t, p in zip(missing, simulate(self.simulator, missing, exemplars)):
                self._preds[(t, split)] = p
        return [self._preds[(t, split)] for t in texts]

    def texts(self, sets: list[WordList]) -> list[str]:
        return [render_word_list(*s) for s in sets] + self.fixed

    def valid_score(self, sets: list[WordList]) -> Score:
        texts = self.texts(sets)
        return polysemantic(self.simulator, texts, self.valid, calibration=self.valid,
                            preds=self.preds(texts, "valid"))

    def screen_score(self, sets: list[WordList], base: list[WordList]) -> float:
        """The valid score ``sets`` would get if the simulator read each changed list as it reads the ``base`` list
        it came from (the one of the same sign sharing most tokens): a newly listed token at that list's mean
        prediction on its listed tokens, an unlisted one at its mean elsewhere, every other token as simulated.
        Lists already simulated count as simulated. It only ranks a round's candidates: the exact score decides."""
        texts = [render_word_list(*s) for s in sets]
        base_preds = self.preds([render_word_list(*b) for b in base], "valid")
        preds = []
        for text, (negative, tokens) in zip(texts, sets):
            if (text, "valid") in self._preds:
                preds.append(self._preds[(text, "valid")])
                continue
            new = {token_key(t) for t in tokens}
            j = max((i for i, b in enumerate(base) if b[0] == negative),
                    key=lambda i: len(new & {token_key(t) for t in base[i][1]}))
            old = {token_key(t) for t in base[j][1]}
            was = [np.fromiter((t in old for t in k), bool, len(k)) for k in self._keys]
            now = [np.fromiter((t in new for t in k), bool, len(k)) for k in self._keys]
            flat, inside = np.concatenate(base_preds[j]), np.concatenate(was)
            hit = float(flat[inside].mean()) if inside.any() else float(flat.max())
            miss = float(flat[~inside].mean()) if (~inside).any() else 0.0
            preds.append([np.where(n & ~w, hit, np.where(w & ~n, miss, p)) for p, w, n in
                          zip(base_preds[j], was, now)])
        return polysemantic(self.simulator, texts + self.fixed, self.valid, calibration=self.valid,
                            preds=preds + self.preds(self.fixed, "valid")).value

    def own_scores(self, texts: list[str]) -> list[float]:
        """Each text's own valid score (uncalibrated, as :func:`~ns_dspy.scoring.score` gives it)."""
        trues = [ex.activations for ex in self.valid.exemplars]
        kinds = [ex.kind for ex in self.valid.exemplars]
        return [float(pooled(p, trues, kinds).r) for p in self.preds(texts, "valid")]

    def train_score(self, sets: list[WordList], calibration) -> float:
        texts = self.texts(sets)
        preds = self.preds(texts, "train")
        negative = [n for n, _ in sets] + [is_negative(t) for t in self.fixed]
        combined = union(preds, calibration, negative=negative) if len(texts) > 1 else preds[0]
        return pooled(combined, [ex.activations for ex in self.train], [ex.kind for ex in self.train]).r


def _candidates(sets: list[WordList], current: Score, valid: HeldOut, n: int,
                moves: bool = False) -> list[tuple[str, list[WordList]]]:
    trues = np.concatenate([np.asarray(ex.activations, np.float64) for ex in valid.exemplars])
    scaled = trues * 10.0 / max(float(trues.max()), 1e-9)
    combined = np.concatenate([np.asarray(p, np.float64) for p in current.predictions])
    residual: dict[str, float] = {}
    count: dict[str, int] = {}
    truth: dict[str, float] = {}
    shown: dict[str, str] = {}
    for tok, y, p in zip((t for ex in valid.exemplars for t in ex.tokens), scaled, combined):
        k = token_key(tok)
        residual[k], count[k], truth[k] = residual.get(k, 0.0) + y - p, count.get(k, 0) + 1, truth.get(k, 0.0) + y
        shown.setdefault(k, tok.strip() or tok)
    positive = [i for i, (negative, _) in enumerate(sets) if not negative]
    if not positive:
        return []
    listed = {token_key(t) for negative, tokens in sets if not negative for t in tokens}
    missed = [k for k in sorted(residual, key=lambda k: (-residual[k], k))
              if k not in listed and count[k] >= 2 and k.strip() and residual[k] > 0 and '"' not in shown[k]][:n]
    false = [k for k in sorted(residual, key=lambda k: (residual[k], k)) if k in listed and residual[k] < 0][:n]

    def nearest(k: str) -> int:  # the positive list whose other tokens' mean valid activation is nearest the token's
        best, gap = positive[-1], float("inf")
        for i in positive:
            means = [truth[token_key(t)] / count[token_key(t)] for t in sets[i][1]
                     if token_key(t) in count and token_key(t) != k]
            if means and abs(float(np.mean(means)) - truth[k] / count[k]) < gap:
                best, gap = i, abs(float(np.mean(means)) - truth[k] / count[k])
        return best

    def add(keys: list[str]) -> list[WordList]:
        out = [(negative, list(tokens)) for negative, tokens in sets]
        for k in keys:
            out[nearest(k)][1].append(shown[k])
        return out

    def drop(keys: set[str]) -> list[WordList]:
        out = [(negative, [t for t in tokens if negative or token_key(t) not in keys]) for negative, tokens in sets]
        return [s for s in out if s[1]]

    def move(k: str, to: int) -> list[WordList]:
        out = [(negative, [t for t in tokens if negative or token_key(t) != k]) for negative, tokens in sets]
        out[to][1].append(next(t for i in positive for t in sets[i][1] if token_key(t) == k))
        return [s for s in out if s[1]]

    # a listed token whose valid level is nearer another positive list's (a tier too high or too low)
    home = {token_key(t): i for i in positive for t in sets[i][1]}
    misplaced = [(k, nearest(k)) for k in sorted(home, key=lambda k: (-abs(residual.get(k, 0.0)), k))
                 if moves and len(positive) > 1 and count.get(k, 0) >= 2 and residual[k] != 0.0]
    misplaced = [(k, to) for k, to in misplaced if to != home[k]][:n]
    edits = [(f"move {shown[k]!r} to list {to + 1}", move(k, to)) for k, to in misplaced]

    def named(keys: list[str]) -> str:  # "'a' + 'b'": an edit of several tokens names them all
        return " + ".join(repr(shown[k]) for k in keys)

    edits += [(f"add {shown[k]!r}", add([k])) for k in missed] + \
        ([(f"add {named(missed)}", add(missed))] if len(missed) > 1 else [])
    edits += [(f"drop {shown[k]!r}", drop({k})) for k in false] + \
        ([(f"drop {named(false)}", drop(set(false)))] if len(false) > 1 else [])
    return [(name, s) for name, s in edits if any(not negative for negative, _ in s)]


def edit_lists(simulator, explanations: Sequence[str], valid: HeldOut, train: Sequence[Exemplar], *,
               rounds: int = 3, tokens: int = 3, min_delta: float = 1e-3, confirm: bool = True,
               moves: bool = False, screen: int = 0) -> Edited:
    """Refine a set of word lists (``explanations``, e.g. the statistical explainer's choice) against its errors
    on ``valid`` for up to ``rounds`` rounds, each edit confirmed on the ``train`` exemplars (see the module's
    docstring; ``tokens``: missed tokens, false alarms and misplaced tokens considered per round; ``confirm=False``:
    no train check, the ablation that shows why it is there; ``moves``: also move a listed token to the positive
    list whose other tokens' mean valid activation is nearest its own; ``screen``: simulate only the round's
    ``screen`` candidates that :meth:`_Sets.screen_score` ranks best, 0 for every candidate). A text that is not
    a word list (an explanation of a whitespace class, prose) stays in the set as it is, after the lists: its
    predictions are part of every candidate's union, so an edit is judged with it. A set with no word list is
    returned as it is."""
    if valid.split != "valid":
        raise ValueError(f"word lists are edited against valid data, got {valid.split!r}")
    train_only(train, "edits are confirmed on")
    parsed = [parse_word_list(t) for t in explanations]
    fixed = [t for t, p in zip(explanations, parsed) if p is None]
    sets = _Sets(simulator, valid, train, fixed)
    if len(fixed) == len(parsed):
        texts = list(explanations)  # one explanation's score is its own (polysemantic calibrates several only)
        return Edited(texts, polysemantic(simulator, texts, valid, calibration=valid, preds=sets.preds(texts, "valid")),
                      sets.own_scores(texts))
    current_sets = [(p[0], list(p[1])) for p in parsed if p is not None]
    current = sets.valid_score(current_sets)
    taken: list[tuple[str, float]] = []
    for _ in range(rounds):
        candidates = _candidates(current_sets, current, valid, tokens, moves)
        if 0 < screen < len(candidates):
            # simulate the screen's best first, then one more at a time while none of those simulated passes
            # and the screen still expects a gain: the choice is then the exhaustive search's in most rounds
            guess = [sets.screen_score(s, current_sets) for _, s in candidates]
            order = sorted(range(len(candidates)), key=lambda i: -guess[i])
            groups = [order[:screen]] + [[i] for i in order[screen:] if guess[i] > current.value + min_delta]
        else:
            groups = [list(range(len(candidates)))]
        scored, chosen, floor = [], None, None
        for group in groups:
            scored += [(sets.valid_score(candidates[i][1]), *candidates[i]) for i in group]
            better = sorted((x for x in scored if x[0].value > current.value + min_delta), key=lambda x: -x[0].value)
            if confirm and better:
                if floor is None:  # the current set's train score, once a round
                    floor = sets.train_score(current_sets, current.calibration)
                chosen = next((x for x in better if sets.train_score(x[2], x[0].calibration) >= floor - 1e-9), None)
            else:
                chosen = better[0] if better else None
            if chosen is not None:
                break
        if chosen is None:
            break
        current, name, current_sets = chosen
        taken.append((name, float(current.value)))
    texts = sets.texts(current_sets)
    return Edited(texts, current, sets.own_scores(texts), taken)
