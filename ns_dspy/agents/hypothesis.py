"""Stage 1: a recall-oriented raw explanation of a neuron from its top-activating train exemplars."""

from __future__ import annotations

from collections.abc import Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..types import Exemplar
from .errors import AgentError
from .formatting import clean_output, format_exemplars
from .signatures import Hypothesize

__all__ = ["HypothesisAgent"]


class HypothesisAgent(dspy.Module):
    """``forward(exemplars) -> Prediction(explanation)``: one raw explanation that keeps every plausible cue.

    Uses the LM in ``dspy.settings`` (set it with ``dspy.context(lm=...)``). Only train exemplars may be
    shown: valid and test windows are what explanations are scored on.

    Args:
        max_exemplars, threshold, max_chars: how exemplars are shown (see :func:`format_exemplars`).
        chain_of_thought: let the LM reason before answering (``dspy.ChainOfThought``).
    """

    def __init__(self, *, max_exemplars: int = 20, threshold: float = 0.3, max_chars: int = 600,
                 chain_of_thought: bool = False):
        super().__init__()
        self.max_exemplars, self.threshold, self.max_chars = max_exemplars, threshold, max_chars
        self.hypothesize = (dspy.ChainOfThought if chain_of_thought else dspy.Predict)(Hypothesize)

    def forward(self, exemplars: Sequence[Exemplar], *, config: dict | None = None) -> dspy.Prediction:
        """``config``: LM options for this call only, e.g. ``{"rollout_id": k, "temperature": 1.0}`` for the
        k-th of several distinct drafts."""
        held_out = sorted({ex.split for ex in exemplars} - {"train"})
        if held_out:
            raise AgentError(f"the hypothesis agent is shown train exemplars only, got {'/'.join(held_out)} ones")
        if not any(ex.max_activation > 0 for ex in exemplars):
            raise AgentError("unit has no activation in its train exemplars: nothing to explain")
        text = format_exemplars(exemplars, max_exemplars=self.max_exemplars, threshold=self.threshold,
                                max_chars=self.max_chars)
        try:
            result = self.hypothesize(exemplars=text, config=dict(config or {}))
        except AdapterParseError as err:
            raise AgentError(f"the hypothesis LM's answer could not be parsed ({err.adapter_name})") from err
        explanation = clean_output(result.explanation)
        if not explanation:
            raise AgentError("the hypothesis LM returned an empty explanation")
        return dspy.Prediction(explanation=explanation)
