"""Stage 1: a recall-oriented raw explanation of a neuron from its train exemplars and their token statistics."""

from __future__ import annotations

from collections.abc import Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..types import Exemplar
from .errors import AgentError
from .evidence import token_evidence
from .formatting import clean_output, format_exemplars
from .reliability import UnusableAnswer, bounded_answer, check_budget, fresh_rollout
from .signatures import Hypothesize

__all__ = ["HypothesisAgent"]


class HypothesisAgent(dspy.Module):
    """``forward(exemplars) -> Prediction(explanation, statistics)``: one raw explanation that keeps every
    plausible cue.

    Uses the LM in ``dspy.settings`` (set it with ``dspy.context(lm=...)``). Only train exemplars may be
    shown: valid and test windows are what explanations are scored on. ``exemplars`` are the unit's train top
    windows and, optionally, its train random windows (``kind == "random"``): the strongest ``max_exemplars``
    top windows are shown with their activating tokens marked, then up to ``max_quiet`` random ones (mostly
    quiet text), and the token statistics of all of them (:func:`~ns_dspy.agents.evidence.token_evidence`).

    An answer that cannot be parsed or is empty is retried once with a fresh sample (see the module
    docstring) at ``retry_temperature`` (or the call's own temperature); a second failure raises
    :class:`UnusableAnswer` for this neuron.

    Args:
        max_exemplars, threshold, max_chars: how exemplars are shown (see :func:`format_exemplars`).
        max_quiet: random (quiet) windows shown after the top ones.
        statistics: show the token statistics table (False: the paper's prompt, excerpts only).
        chain_of_thought: let the LM reason before answering (``dspy.ChainOfThought``).
        retry_temperature: temperature of the fresh sample when the call sets none.
        max_tokens: the most tokens the answer may take, unless the call's ``config`` sets it (a raw
            explanation is a paragraph; a small LM looping on a list would otherwise run to the LM's limit).
    """

    def __init__(self, *, max_exemplars: int = 20, threshold: float = 0.3, max_chars: int = 600,
                 max_quiet: int = 5, statistics: bool = True, chain_of_thought: bool = False,
                 retry_temperature: float = 1.0, max_tokens: int = 512):
        super().__init__()
        self.max_exemplars, self.threshold, self.max_chars = max_exemplars, threshold, max_chars
        self.max_tokens = max_tokens
        self.max_quiet, self.statistics, self.retry_temperature = max_quiet, statistics, retry_temperature
        self.hypothesize = (dspy.ChainOfThought if chain_of_thought else dspy.Predict)(Hypothesize)

    def forward(self, exemplars: Sequence[Exemplar], *, config: dict | None = None) -> dspy.Prediction:
        """``config``: LM options for this call only, e.g. ``{"rollout_id": k, "temperature": 1.0}`` for the
        k-th of several distinct drafts."""
        held_out = sorted({ex.split for ex in exemplars} - {"train"})
        if held_out:
            raise AgentError(f"the hypothesis agent is shown train exemplars only, got {'/'.join(held_out)} ones")
        top = [ex for ex in exemplars if ex.kind != "random"]
        quiet = [ex for ex in exemplars if ex.kind == "random"]
        if not any(ex.max_activation > 0 for ex in top):
            raise AgentError("unit has no activation in its train exemplars: nothing to explain")
        shown = sorted(top, key=lambda ex: -ex.max_activation)[: self.max_exemplars] + quiet[: self.max_quiet]
        text = format_exemplars(shown, max_exemplars=len(shown), threshold=self.threshold, max_chars=self.max_chars)
        table = token_evidence(top, quiet).table() if self.statistics else "(not given)"
        first = {"max_tokens": self.max_tokens, **(config or {})}
        fresh = {**first, "rollout_id": fresh_rollout(first.get("rollout_id") or 0),
                 "temperature": first.get("temperature") or self.retry_temperature}
        problems = []
        for call in (first, fresh):
            check_budget("hypothesis")
            try:
                with bounded_answer("hypothesis", call.get("max_tokens")):
                    result = self.hypothesize(exemplars=text, statistics=table, config=call)
            except AdapterParseError as err:
                problems.append(f"answer could not be parsed ({err.adapter_name})")
                continue
            except SystemError as err:  # CPython 3.11's parser failing on garbage while another thread parses
                problems.append(f"answer could not be parsed ({err})")
                continue
            explanation = clean_output(result.explanation)
            if explanation:
                return dspy.Prediction(explanation=explanation, statistics=table)
            problems.append("empty explanation")
        raise UnusableAnswer(f"the hypothesis LM's answer could not be used in 2 attempts ({'; then '.join(problems)})")
