"""The statistical explainer with the extra candidates it can add to its chosen set (a negative list, whitespace,
word-class, spelling-class and context explanations) off, but those a test names: one program for the tests of
each extra."""

from __future__ import annotations

from ns_dspy.config import ExplainConfig
from ns_dspy.program import NeuronScope

EXTRAS = ("negative", "whitespace", "word_classes", "spelling", "context")


def stats_only(reader, **on: bool) -> NeuronScope:
    """``NeuronScope(method="stats")`` reading with ``reader``, every extra of :data:`EXTRAS` off unless ``on``
    names it."""
    return NeuronScope(reader, None, ExplainConfig(method="stats", **{**dict.fromkeys(EXTRAS, False), **on}))
