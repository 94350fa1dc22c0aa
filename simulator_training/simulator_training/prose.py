"""Explanations written as a language model writes them: long, hedged, with quoted examples and exceptions.

The synthetic families describe each unit in short phrases ("words about death", "Fires on commas."). The
explanations a simulator has to read in use are longer: an explainer LM writes a preamble, hedges, quotes a few
examples, names words the unit does not fire on and closes with a sentence that adds nothing ("Other tokens
show little or no activation."). A simulator trained on short phrases only reads such text worse: measured on
real gemma-3-270m neurons, the same three quoted peak words scored 0.151 as a bare list and 0.092 wrapped in
three sentences (``experiments/long_prose.py``). :func:`long_explanations` writes such variants of a unit's
description from what is true of the unit's own exemplars:

* the examples are token types the unit is reliably active on (mean target >= ``active`` over their
  occurrences in its exemplars), so a quoted example is never false;
* the exceptions are token types that sit near active tokens but are quiet on every one of their occurrences
  (the words an explanation would warn about), so "but not" is never false either;
* the preamble, hedge and closing sentences are chosen so that they hold for every unit.

``build-data --long N`` stores ``N`` of them per unit as ``long_explanations`` (training draws from both lists;
``eval`` / ``decoys --style long`` read the long ones). They are drawn from a generator of their own, so a
dataset built with ``--long`` has exactly the units, exemplars and short explanations of one built without.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Sequence

import numpy as np

from ns_dspy.agents.evidence import quoted

__all__ = ["token_stats", "examples_and_exceptions", "long_explanations"]

OPENERS = ("This neuron", "The neuron", "This unit", "Based on the excerpts, this neuron",
           "Looking at the examples, the neuron", "Across these excerpts, the neuron", "In these examples, the neuron")
VERBS = ("fires on", "responds to", "is activated by", "appears to respond to", "seems to fire on",
         "is most active on", "detects", "mainly activates on", "appears to track")
LEADS = ("After reviewing the examples, a clear pattern emerges.", "The activations follow a consistent pattern.",
         "Let me describe what this neuron does.", "The highlighted tokens share a common feature.")
EXAMPLES = (", such as {q}", ", for example {q}", " (e.g. {q})", ". Typical examples are {q}", ", including {q}",
            ". Examples from the excerpts include {q}")
EXCEPTIONS = (", but not on {q}", ". It does not fire on {q}", ". Nearby words like {q} stay quiet",
              ". It stays near zero on {q}, even when they appear close by", ", while words like {q} do not activate it")
CLOSERS = ("Other tokens show little or no activation.", "The pattern holds across different topics.",
           "This is a fairly consistent pattern in the examples.", "Activation elsewhere in the text is generally low.",
           "This seems to be its main role in these excerpts.", "Most of the remaining text leaves it inactive.")
TWO = ("{a}, and also {b}", "two things: {a}, and {b}", "{a} as well as {b}")
TWO_WEAK = ("{a}, and more weakly {b}", "{a} most strongly, with smaller activations on {b}",
            "mainly {a}; it is weaker on {b}")


def token_stats(exemplars: Sequence, quiet: float, window: int):
    """Per token type (stripped, lower-cased) over ``exemplars`` (anything with ``tokens`` and ``activations``):
    its surface forms, occurrences, quiet occurrences (activation below ``quiet``), activation mass, and how
    often it sits within ``window`` tokens of an active token (other than itself)."""
    forms: dict[str, Counter] = defaultdict(Counter)
    count, quiet_n, near = Counter(), Counter(), Counter()
    mass: dict[str, float] = defaultdict(float)
    for ex in exemplars:
        acts = np.asarray(ex.activations, dtype=float)
        active = np.flatnonzero(acts >= quiet)
        keys = [tok.strip().lower() for tok in ex.tokens]
        for tok, key, a in zip(ex.tokens, keys, acts):
            if not key:
                continue
            forms[key][tok.strip()] += 1
            count[key] += 1
            quiet_n[key] += a < quiet
            mass[key] += float(a)
        nearby = {j for i in active for j in range(max(0, i - window), min(len(keys), i + window + 1)) if j != i}
        for j in sorted(nearby):
            if keys[j] and acts[j] < quiet:
                near[keys[j]] += 1
    return forms, count, quiet_n, mass, near


def examples_and_exceptions(exemplars: Sequence, *, active: float = 5.0, quiet: float = 1.0, window: int = 3,
                            most: int = 8) -> tuple[list[str], list[str]]:
    """Up to ``most`` example words (token types whose mean target over their occurrences is >= ``active``, the
    commonest first) and up to ``most`` exception words (types seen at least twice, quiet on every occurrence,
    at least twice within ``window`` tokens of an active token; ranked by near^2 / occurrences), each as its
    commonest surface form. Words holding a double quote are left out (they cannot be quoted)."""
    forms, count, quiet_n, mass, near = token_stats(exemplars, quiet, window)

    def shown(k: str) -> str:
        return forms[k].most_common(1)[0][0]

    good = [k for k in count if mass[k] / count[k] >= active and '"' not in k]
    examples = [shown(k) for k in sorted(good, key=lambda k: (-count[k], k))[:most]]
    bad = [k for k in near if near[k] >= 2 and count[k] >= 2 and quiet_n[k] == count[k] and '"' not in k]
    exceptions = [shown(k) for k in sorted(bad, key=lambda k: (-near[k] ** 2 / count[k], k))[:most]]
    return examples, exceptions


def _lower(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def long_explanations(descriptions: Sequence[str], exemplars: Sequence, rng: random.Random, n: int = 3, *,
                      weak: str | None = None) -> list[str]:
    """``n`` distinct long explanations of a unit described by ``descriptions`` (phrases such as "words about
    death"; ``weak``: a second part, ``"DESCRIPTION"`` or ``"DESCRIPTION|weak"``, as
    :class:`~simulator_training.concepts.Concept` has it) whose ``exemplars`` carry its true activations.
    Quoted examples are added only where the description quotes nothing itself."""
    examples, exceptions = examples_and_exceptions(exemplars)
    out: list[str] = []
    for _ in range(n * 6):
        core = _lower(rng.choice(list(descriptions)).strip().rstrip("."))
        if weak:
            b, _, flag = weak.partition("|")
            core = rng.choice(TWO_WEAK if flag == "weak" else TWO).format(a=core, b=_lower(b.strip().rstrip(".")))
        parts = []
        if rng.random() < 0.3:
            parts.append(rng.choice(LEADS) + " ")
        parts.append(f"{rng.choice(OPENERS)} {rng.choice(VERBS)} {core}")
        if examples and '"' not in core and rng.random() < 0.7:
            k = rng.randint(1, min(4, len(examples)))
            parts.append(rng.choice(EXAMPLES).format(q=quoted(rng.sample(examples, k))))
        if exceptions and rng.random() < 0.4:
            k = rng.randint(1, min(2, len(exceptions)))
            parts.append(rng.choice(EXCEPTIONS).format(q=quoted(rng.sample(exceptions, k))))
        parts.append(".")
        for closer in rng.sample(CLOSERS, rng.choice((0, 1, 1, 2))):
            parts.append(" " + closer)
        text = "".join(parts)
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out
