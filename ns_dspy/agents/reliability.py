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

**Bounded answers.** Each agent bounds its answer (``max_tokens``: a paragraph, a list of short conditions, a
sentence or two) so that a small LM looping on a list stops early. An answer cut there is expected, so DSPy's
warning for it ("LM response was truncated; increase max_tokens ...") would give the wrong advice: inside
:func:`bounded_answer` it becomes one INFO line naming the agent and its bound. DSPy's warnings for every other call
(a user's own program in the same process) pass unchanged.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dspy

from ..errors import NsDspyError
from .errors import AgentError

__all__ = ["UnusableAnswer", "OverBudget", "check_budget", "bounded_answer", "fresh_rollout", "current_attempt",
           "ATTEMPT_KEY", "BUDGET_KEY"]

log = logging.getLogger(__name__)

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


TRUNCATED = "LM response was truncated"
"""How DSPy's warning for an answer cut at ``max_tokens`` begins (``dspy.clients.lm``)."""
_BOUND: contextvars.ContextVar[tuple[str, int | None] | None] = contextvars.ContextVar("ns_dspy_bound", default=None)


class _BoundedAnswers(logging.Filter):
    """On DSPy's LM logger: its truncation warning, for a call made inside :func:`bounded_answer`, is replaced by one
    INFO line of ours; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _BOUND.get()
        if bound is None or not str(record.msg).startswith(TRUNCATED):
            return True
        stage, max_tokens = bound
        log.info("%s: the LM's answer reached the agent's bound (%s tokens) and was cut there", stage,
                 max_tokens if max_tokens is not None else "the LM's")
        return False


_FILTER = _BoundedAnswers()


@contextmanager
def bounded_answer(stage: str, max_tokens: int | None) -> Iterator[None]:
    """An agent's LM call (the block) whose answer the agent bounds at ``max_tokens``: an answer cut there is
    logged as such at INFO instead of DSPy's warning (see the module docstring)."""
    logging.getLogger("dspy.clients.lm").addFilter(_FILTER)  # once: a filter already there is not added again
    token = _BOUND.set((stage, max_tokens))
    try:
        yield
    finally:
        _BOUND.reset(token)
