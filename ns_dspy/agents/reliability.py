"""What the three LM agents share about reliability (the runner sets both per neuron).

**Retry policy.** An answer that cannot be used (DSPy's ChatAdapter and its JSON fallback cannot parse it, or
nothing usable is left) is retried once with a *fresh sample*: the same call with a ``rollout_id`` no first
try uses (:func:`fresh_rollout`) at a temperature above 0. DSPy's response cache keys on the rollout id, so the
retry is a new LM call and never the cached unusable answer again. The id also depends on the neuron's
*attempt* (``dspy.context(ns_dspy_attempt=n)``; the runner counts a neuron's earlier failed runs in the run
file), so rerunning a failed neuron draws samples no earlier run drew, while a first try (and every answer
that was usable) is still served from the cache.

**Budget.** ``dspy.context(ns_dspy_budget=(deadline, seconds))`` (a ``time.monotonic()`` deadline) gives the
neuron a wall-clock budget; every agent calls :func:`check_budget` before each LM call and stops the neuron
with :class:`OverBudget` once it is spent. The check is cooperative: an LM call in flight is bounded by the
LM's own timeout, not interrupted.
"""

from __future__ import annotations

import time

import dspy

from ..errors import NsDspyError
from .errors import AgentError

__all__ = ["UnusableAnswer", "OverBudget", "check_budget", "fresh_rollout", "current_attempt",
           "ATTEMPT_KEY", "BUDGET_KEY"]

ATTEMPT_KEY = "ns_dspy_attempt"
"""``dspy.context`` key: which run of this neuron this is (0 the first; the runner sets it)."""
BUDGET_KEY = "ns_dspy_budget"
"""``dspy.context`` key: ``(time.monotonic() deadline, budget in seconds)`` of the neuron being explained."""
FRESH_STRIDE = 1_000_000
"""Fresh-sample rollout ids are ``(attempt + 1) * FRESH_STRIDE + salt``: above every first-try id (a baseline
draft's ``k``, a refinement candidate's ``iteration * candidates + k``), distinct per attempt."""


class UnusableAnswer(AgentError):
    """An agent's LM answer could not be used, on the first try and on its fresh sample."""

    kind = "lm_parse"


class OverBudget(NsDspyError):
    """The neuron has spent its wall-clock budget (not an :class:`AgentError`: not an outcome of the agents'
    own output, so it is never cached as one)."""

    kind = "budget"


def current_attempt() -> int:
    """The neuron's attempt from ``dspy.context(ns_dspy_attempt=...)``; 0 outside the runner."""
    return int(dspy.settings.get(ATTEMPT_KEY) or 0)


def fresh_rollout(salt: int = 0) -> int:
    """A rollout id for the fresh sample of the call ``salt`` (its first try's rollout id, or 0) in this attempt."""
    return (current_attempt() + 1) * FRESH_STRIDE + int(salt) % FRESH_STRIDE


def check_budget(stage: str, ahead_s: float = 0.0) -> None:
    """Raise :class:`OverBudget` if the neuron's budget (``dspy.context(ns_dspy_budget=...)``) is spent, or will
    be in ``ahead_s`` seconds (a retry's wait)."""
    budget = dspy.settings.get(BUDGET_KEY)
    if budget is not None and time.monotonic() + ahead_s > budget[0]:
        raise OverBudget(f"over its time budget ({budget[1]:g} s): stopped before the {stage} LM call")
