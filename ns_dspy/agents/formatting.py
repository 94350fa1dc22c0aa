"""Text the agents read and write: exemplars with activating tokens marked, scored histories, LM output clean-up.

Exemplars are shown as the paper's explainer sees them: one numbered line per text window, the tokens on
which the neuron fires strongly wrapped in ``<<`` ``>>`` (a run of consecutive activating tokens shares one
pair), newlines and tabs written as ``\\n`` / ``\\t`` escapes so every exemplar stays on one line, strongest
first. No activation values are printed: small explainer models quoted them as if they were part of the text
("activates when a maximum activation of 0.89 is mentioned"), and the order already carries the strength.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence

import numpy as np

from ..types import Exemplar

__all__ = ["MARK_OPEN", "MARK_CLOSE", "format_exemplars", "format_history", "clean_output", "leaked_instructions",
           "drop_task_talk", "copied_instructions", "COPIED_WORDS"]

MARK_OPEN, MARK_CLOSE = "<<", ">>"
_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _escape(token: str) -> str:
    return token.translate(_ESCAPES)


def _window(lengths: list[int], center: int, budget: int) -> tuple[int, int]:
    """Token range ``[lo, hi)`` around ``center`` whose text fits ``budget`` characters, mostly left context
    (an activation depends only on the tokens before it)."""
    lo, hi, used = center, center + 1, lengths[center]
    while lo > 0 and used + lengths[lo - 1] <= budget * 3 // 4:
        lo -= 1
        used += lengths[lo]
    while hi < len(lengths) and used + lengths[hi] <= budget:
        used += lengths[hi]
        hi += 1
    while lo > 0 and used + lengths[lo - 1] <= budget:
        lo -= 1
        used += lengths[lo]
    return lo, hi


def _render(tokens: Sequence[str], active: np.ndarray) -> str:
    """Tokens joined, each run of active tokens in one pair of marks; spaces at a run's edges stay outside."""
    out, i, n = [], 0, len(tokens)
    while i < n:
        if not active[i]:
            out.append(_escape(tokens[i]))
            i += 1
            continue
        j = i
        while j < n and active[j]:
            j += 1
        run = "".join(tokens[i:j])
        core = run.strip(" ")
        if core:
            left = run[: len(run) - len(run.lstrip(" "))]
            right = run[len(run.rstrip(" ")):]
            out.append(f"{left}{MARK_OPEN}{_escape(core)}{MARK_CLOSE}{right}")
        else:  # a run of bare spaces: show it, marked
            out.append(f"{MARK_OPEN}{run}{MARK_CLOSE}")
        i = j
    return "".join(out)


def format_exemplars(exemplars: Sequence[Exemplar], *, max_exemplars: int = 20, threshold: float = 0.3,
                     max_chars: int = 600) -> str:
    """One numbered line per exemplar, strongest first, activating tokens marked.

    Args:
        exemplars: the windows to show; the ``max_exemplars`` with the highest maximum activation are kept.
        threshold: a token is marked when its activation is positive and at least ``threshold`` times the
            maximum activation over the shown exemplars.
        max_chars: a longer window is cut to about this many characters around its most active token,
            keeping mostly the text before it; cuts are shown as ``...``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    shown = sorted((ex for ex in exemplars if ex.tokens), key=lambda ex: -ex.max_activation)[:max_exemplars]
    top = max((ex.max_activation for ex in shown), default=0.0)
    lines = []
    for k, ex in enumerate(shown, 1):
        acts = ex.activations
        active = (acts > 0) & (acts >= threshold * top) if top > 0 else np.zeros(len(acts), dtype=bool)
        lo, hi = _window([len(_escape(t)) for t in ex.tokens], int(np.argmax(acts)), max_chars)
        text = _render(ex.tokens[lo:hi], active[lo:hi])
        text = ("..." if lo > 0 else "") + text + ("..." if hi < len(ex.tokens) else "")
        lines.append(f"{k}. {text}")
    return "\n".join(lines)


HISTORY_DECIMALS = 3
"""Decimals of the scores :func:`format_history` writes."""
_HISTORY_BEST = re.compile(r"^\s*1\. score (-?\d+(?:\.\d+)?):", re.M)


def history_best(history: str) -> float | None:
    """The score of the best (rank 1) explanation in a history as :func:`format_history` writes it, or None."""
    m = _HISTORY_BEST.search(history)
    return float(m.group(1)) if m else None


def format_history(history: Sequence[tuple[str, float]], *, limit: int | None = None,
                   notes: Callable[[int, str], Sequence[str]] | None = None) -> str:
    """Explanations with their scores, best first (ties keep their order), at most ``limit`` of them;
    ``notes(rank, text)`` gives lines shown indented under an entry (rank 1 is the best)."""
    ranked = sorted(history, key=lambda item: -item[1])[:limit]
    lines = []
    for k, (text, score) in enumerate(ranked, 1):
        lines.append(f"{k}. score {score:.{HISTORY_DECIMALS}f}: {' '.join(text.split())}")
        lines += [f"   {note}" for note in (notes(k, text) if notes else ())]
    return "\n".join(lines)


_MARKER = re.compile(r"\[\[\s*##\s*[^\]#]*?\s*##\s*\]\]")
_FENCE = re.compile(r"^```[\w-]*\s*\n?(.*?)\n?```$", re.S)
_LABEL = re.compile(r"^(?:(?:new|refined|improved|final|raw)\s+)?(?:explanation|interpretation|description)\s*:\s*",
                    re.I)


def clean_output(text: object) -> str:
    """An LM's free-text field without leaked ``[[ ## field ## ]]`` markers, code fences, a leading
    ``Explanation:`` label or enclosing quotes."""
    s = _MARKER.sub(" ", str(text or "")).strip()
    if m := _FENCE.match(s):
        s = m.group(1).strip()
    s = _LABEL.sub("", s).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        s = s[1:-1].strip()
    return s


_DOUBLE_QUOTED = r"\"[^\"]*\"|\u201c[^\u201d]*\u201d|`[^`]*`"
DOUBLE_QUOTED = re.compile(_DOUBLE_QUOTED)
"""Spans in double quotes, curly quotes or backticks: quoted cues, whose marks end no sentence. Single quotes are
left out, as apostrophes would open spans across sentence ends (:func:`ns_dspy.optimize.best_steps.in_format`)."""
_QUOTED = re.compile(_DOUBLE_QUOTED + r"|'[^'\n]{1,40}'")
_META = re.compile(r"\b(?:explanations?|(?:marked|highlighted) (?:tokens?|words?|spans?))\b|"
                   + re.escape(MARK_OPEN) + r"[^\n]{0,40}?" + re.escape(MARK_CLOSE), re.I)


COPIED_WORDS = 5
"""A run of this many consecutive words shared with the agent's instructions is copied from them, not written about
the neuron (4 also matched plain phrasing such as "the neuron's activation on")."""
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def copied_instructions(text: str, instructions: str, n: int = COPIED_WORDS) -> str | None:
    """The first run of ``n`` consecutive words of ``text`` (outside quoted words, case and punctuation ignored)
    that ``instructions`` also contain, or None. A small LM that has nothing to say about the neuron echoes its
    prompt ("... would predict activation where there is none"); the simulator then reads the task's own words."""
    if not instructions:
        return None
    words = _WORD.findall(_QUOTED.sub(" ", text).lower())
    known = _runs(instructions, n)
    return next((" ".join(words[i:i + n]) for i in range(len(words) - n + 1) if tuple(words[i:i + n]) in known), None)


@functools.lru_cache(maxsize=16)
def _runs(instructions: str, n: int) -> frozenset[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of ``instructions`` (an agent's few prompts: built once each, not once
    per sentence checked)."""
    said = _WORD.findall(instructions.lower())
    return frozenset(tuple(said[i:i + n]) for i in range(len(said) - n + 1))


def leaked_instructions(text: str, instructions: str = "") -> str | None:
    """What in an explanation talks about the task instead of the neuron (the explanation itself, the marked
    tokens, a span copied with its marks, or :data:`COPIED_WORDS` words copied from ``instructions``, the
    agent's own), outside quoted words; None when nothing does. A small LM often
    answers "The new explanation should focus on ...": such a text describes the answer it was asked for, and
    the simulator can only read it as noise. (Mentions of "the excerpts" are left alone: the offline LM writes
    them into most conditions, "X appears in the excerpts about Y", which still name a cue.) Quoted words are
    the neuron's own cues and never count (an explanation may be 'the word "explanation"')."""
    bare = _QUOTED.sub(" ", text)
    found = _META.search(bare)
    return found.group(0) if found else copied_instructions(text, instructions)


_ANSWER = r"(?:the|this|my|our|a|an)\s+(?:(?:new|improved|refined|revised|updated|better|final|current|more\s+specific)\s+)?" \
    r"(?:explanation|description|interpretation)"
_TALK_LEAD = re.compile(
    _ANSWER + r"\s+(?:(?:now|should|will|would|could|must|can)\s+)?(?:be\s+)?(?:(?:even\s+)?more\s+)?"
    r"(?:focus(?:es|ed)?|concentrates?|centers?|centres?|emphasi[sz]es?|highlights?|targets?|describes?|says?|states?)"
    r"\s+(?:(?:more|even\s+more)\s+)?(?:(?:specifically|closely|narrowly|precisely|only|mainly)\s+)?(?:on|that)?\s*:?\s*|"
    + _ANSWER + r"\s+(?:is|would\s+be|could\s+be)\s*(?:that\s+)?:?\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def drop_task_talk(text: str, instructions: str = "") -> str:
    """``text`` without talk about the task that a description of the neuron can be read out of: a leading
    "The new explanation focuses on" / "A better explanation would be:" clause, and whole sentences that talk
    about the task ("This explanation is more specific.", or one that copies ``instructions``: see
    :func:`leaked_instructions`) when another sentence does not. What remains is checked by
    :func:`leaked_instructions` as before; a text that is all task talk comes back unchanged (and is refused
    there)."""
    stripped = text.strip()
    lead = _TALK_LEAD.match(stripped)
    rest = stripped[lead.end():] if lead else stripped
    if not rest:
        return text
    sentences = _SENTENCE_END.split(rest)
    kept = [s for s in sentences if not leaked_instructions(s, instructions)]
    if kept and len(kept) < len(sentences):
        rest = " ".join(kept)
    return rest[:1].upper() + rest[1:] if rest != stripped else text
