"""Explanations of the negative side of a unit's activation.

The MLP neurons of gated models (GeGLU in Gemma, SwiGLU in Llama and Qwen) are signed: ``act(gate) * up`` goes
below zero as readily as above it, and for many neurons the largest excursions are negative (a gemma-3-270m
neuron chosen by activation frequency peaks at 2.8 and dips to -13.8; on its random windows 94% of the variance
around the mean is below it). The score correlates with the true, signed activations, so an explanation of where
the unit *fires* cannot account for where it is pushed down, and a table of per-token means beats every word
list. Transluce's neuron descriptions explain the two polarities apart for the same reason.

An explanation that starts with :data:`MARKER` (``"(negative) the words \\"economic\\" and \\"annual\\""``)
describes where the activation goes **below zero**. It is simulated like any other explanation, with
the marker removed (the simulator predicts where the described pattern is present, 0..10), and its prediction
enters the score negated: high where the pattern is, so low activation there. A single negative explanation's
score is then the correlation of that negated prediction with the truth, and in a neuron-level union the
negative modes pull the combined prediction down where they apply
(:func:`ns_dspy.scoring.calibration.union`). The marker is part of the explanation's text, so a reader (and every
record, report and table) sees which side a mode describes.
"""

from __future__ import annotations

__all__ = ["MARKER", "is_negative", "negative", "simulated_text"]

MARKER = "(negative)"


def is_negative(text: str) -> bool:
    """Whether ``text`` explains the negative side (starts with :data:`MARKER`, case and leading space aside)."""
    return text.lstrip()[:len(MARKER)].lower() == MARKER


def simulated_text(text: str) -> str:
    """What the simulator reads: ``text`` without the negative marker (unchanged for a positive explanation)."""
    return text.lstrip()[len(MARKER):].strip() if is_negative(text) else text


def negative(text: str) -> str:
    """``text`` (a description of where the activation is low) marked as a negative explanation."""
    if is_negative(text):
        return text
    return f"{MARKER} {text.strip()}"
