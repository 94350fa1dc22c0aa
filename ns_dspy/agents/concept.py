"""A concept for the statistical word lists: the LM names what the unit's top tokens have in common.

The statistical explainer names tokens; a list of them is read as those tokens only, so a neuron that responds to
a category ("bounds on a quantity": *least*, *most*, *up to*, *more than*, *maximum*) scores on test only where test
repeats train's words. Naming a category from a word list is a smaller task than explaining marked excerpts:
:class:`ConceptAgent` shows the LM the unit's highest-ranked train tokens (:func:`ranked_tokens`) and asks for a
short category name, and :func:`concept_explanations` writes it as the simulator's training data phrases a category
with examples (``bounds on a quantity, such as "least", "most" and "max"``) and alone. The program lets a concept
replace or join the chosen set when that scores higher on valid (``ExplainConfig.concepts``, off). Measured with
the offline LM on 12 development neurons (``experiments/concepts.py``): its names are generic ("technology",
"code", "time" for the neuron above) and test moved by -0.001 +- 0.001, so it stays off; the step is there for an
LM that names categories.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..types import Exemplar
from .evidence import quoted, ranked_tokens, token_key, train_only
from .formatting import clean_output
from .reliability import bounded_answer, check_budget
from .signatures import NameConcept

__all__ = ["ConceptAgent", "concept_explanations", "clean_concept"]

_TASK = re.compile(r"\b(?:neurons?|activat\w*|tokens?|excerpts?|category|categories)\b", re.I)
_WORDS = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")


def clean_concept(text: object, most_words: int = 8) -> str:
    """A category name from the LM's answer: the first line, without a leading label, quotes or final full stop;
    empty when what is left is not a short name (no word, more than ``most_words`` words, or words about the task
    instead of the text: "neuron", "activates", "tokens")."""
    s = clean_output(text).splitlines()[0].strip() if clean_output(text) else ""
    s = re.sub(r"^(?:category(?: name)?|concept|answer)\s*:\s*", "", s, flags=re.I).strip().strip("\"'`*").strip()
    s = s.rstrip(".").strip()
    words = _WORDS.findall(s)
    if not words or len(s.split()) > most_words or _TASK.search(s):
        return ""
    return s


def concept_explanations(concept: str, examples: Sequence[str], shown: int = 4) -> list[str]:
    """The concept with its first ``shown`` examples (``'X, such as "a", "b" and "c"'``, the simulator's phrasing
    of a category with examples) and alone."""
    ex = [e for e in examples if e and '"' not in e][:shown]
    return ([f"{concept}, such as {quoted(ex)}"] if ex else []) + [concept]


class ConceptAgent(dspy.Module):
    """``forward(exemplars, k) -> Prediction(concepts, words)``: up to ``k`` distinct category names for the
    unit's ``words`` (the ``most`` highest-ranked tokens of the train ``exemplars`` that hold a letter, strongest
    first), one LM call each (rollouts 0..k-1). An answer that is not a short category name is dropped (logged by
    the caller through ``failed``); none at all is not an error (the lists stay as they are).

    Uses the LM in ``dspy.settings``."""

    def __init__(self, *, most: int = 12, max_tokens: int = 24, temperature: float = 0.7):
        super().__init__()
        self.most, self.max_tokens, self.temperature = most, max_tokens, temperature
        self.name = dspy.Predict(NameConcept)

    def words(self, exemplars: Sequence[Exemplar]) -> list[str]:
        """The words shown: the ``most`` highest-ranked train tokens that hold a letter, strongest first, each
        with the token before it where at least half of its train occurrences follow that same word ("at
        least")."""
        train_only(exemplars, "concepts are named from")
        rows = [r for r in ranked_tokens(exemplars, most=4 * self.most) if _WORDS.search(r.token)][: self.most]
        before: dict[str, Counter] = {r.key: Counter() for r in rows}
        for ex in exemplars:
            for prev, tok in zip(ex.tokens, ex.tokens[1:]):
                if (key := token_key(tok)) in before:
                    before[key][prev.strip()] += 1
        out = []
        for r in rows:
            seen = before[r.key]
            prev, n = seen.most_common(1)[0] if seen else ("", 0)
            common = n >= 2 and 2 * n >= sum(seen.values()) and _WORDS.fullmatch(prev)
            out.append(f"{prev} {r.token}" if common else r.token)
        return out

    def forward(self, exemplars: Sequence[Exemplar], k: int = 3) -> dspy.Prediction:
        words = self.words(exemplars)
        concepts: list[str] = []
        failed = 0
        if words:
            text = ", ".join(words)
            for rollout in range(k):
                check_budget("concepts")
                config = {"rollout_id": rollout, "max_tokens": self.max_tokens,
                          **({"temperature": self.temperature} if rollout else {})}
                try:
                    with bounded_answer("concepts", self.max_tokens):
                        name = clean_concept(self.name(words=text, config=config).concept)
                except AdapterParseError:
                    name = ""
                if not name:
                    failed += 1
                elif name.casefold() not in {c.casefold() for c in concepts}:
                    concepts.append(name)
        return dspy.Prediction(concepts=concepts, words=words, failed=failed)
