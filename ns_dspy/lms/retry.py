"""ns-dspy's retry policy for network LMs (``openai:``, ``endpoint:``): bounded retries with bounded backoff.

DSPy's own loop waits 1 s, 2 s, 4 s, ... between tries and obeys a server's ``Retry-After`` whatever it says (a
rate limiter answering ``Retry-After: 3600`` would stop a neuron for an hour). :class:`RetryingLM` is a
``dspy.LM`` that turns DSPy's retries off and retries itself, under a :class:`RetryPolicy`:

- only transient failures are retried: a rate limit (429), a server error (5xx), a timeout (no answer within
  the LM's ``timeout``) and a broken connection (refused, reset, closed without an answer); a bad request, a
  wrong key or a context overflow fails at once;
- at most ``retries`` retries per call (3: when 30% of calls fail transiently, about 1 call in 120 still fails
  after 4 tries, and its neuron is retried by the next run); before retry ``n`` (0-based) it waits ``base_s * 2**n`` seconds, capped
  at ``max_s``, times a random factor in [0.5, 1] so that neurons explained in parallel do not retry in
  lockstep; a server's ``Retry-After`` replaces that wait but is capped at ``max_s`` too; a call that timed out
  is retried at once (the timeout was the wait).

So one LM call costs at most ``(retries + 1) * timeout + retries * max_s`` (:meth:`RetryPolicy.worst_case_s`).
Every transient failure met is counted by kind in ``lm.faults`` (a fresh counter per :meth:`RetryingLM.copy`,
so per neuron in the runner); :func:`~ns_dspy.lms.factory.lm_usage` reports it, the run file keeps it in each
neuron's trace and the summary of ``ns-dspy explain`` adds it up.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

import dspy

__all__ = ["RetryPolicy", "RetryingLM", "fault_kind", "DEFAULT_RETRY"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient LM failure is retried (see the module docstring)."""

    retries: int = 3
    base_s: float = 0.5
    max_s: float = 4.0

    def __post_init__(self) -> None:
        from .assets import LMError

        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise LMError(f"LM retries must be a whole number >= 0, got {self.retries!r}")
        if not 0 <= self.base_s <= self.max_s:
            raise LMError(f"LM backoff must satisfy 0 <= base <= max, got {self.base_s} and {self.max_s}")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0 = the first retry); ``retry_after``: the server's hint."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_s)
        return min(self.base_s * 2 ** min(attempt, 30), self.max_s) * (rng or random).uniform(0.5, 1.0)

    def worst_case_s(self, timeout_s: float) -> float:
        """The longest one LM call can take: every try times out and every wait is the longest."""
        return (self.retries + 1) * timeout_s + self.retries * self.max_s


DEFAULT_RETRY = RetryPolicy()


def fault_kind(err: BaseException) -> str | None:
    """``rate_limit``, ``server_error``, ``timeout`` or ``connection`` for a transient LM failure, else None."""
    from dspy.utils.exceptions import (LMLockTimeoutError, LMRateLimitError, LMServerError, LMTimeoutError,
                                       LMTransportError)

    if isinstance(err, LMServerError):  # litellm reports a connection closed without an answer as a 500
        return "connection" if _broken_connection(err) else "server_error"
    for cls, kind in ((LMRateLimitError, "rate_limit"), (LMTimeoutError, "timeout"), (LMTransportError, "connection"),
                      (LMLockTimeoutError, "connection")):
        if isinstance(err, cls):
            return kind
    return None


_CONNECTION_ERRORS = {"APIConnectionError", "RemoteProtocolError", "ConnectError", "ReadError", "WriteError",
                      "NetworkError"}


def _broken_connection(err: BaseException) -> bool:
    """Whether ``err`` was caused by a broken connection (openai's / httpx's error somewhere in its chain)."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen and len(seen) < 16:
        seen.add(id(cause))
        if isinstance(cause, ConnectionError) or type(cause).__name__ in _CONNECTION_ERRORS:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _retry_after(err: BaseException) -> float | None:
    value = getattr(err, "retry_after", None)
    try:
        value = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return value if value is not None and value == value and value != float("inf") else None


class RetryingLM(dspy.LM):
    """A ``dspy.LM`` retrying transient failures under ``retry`` (a :class:`RetryPolicy`), counting them in
    ``faults``. DSPy's own retries are off (``num_retries=0``); the response cache is DSPy's, unchanged."""

    def __init__(self, model: str, *, retry: RetryPolicy = DEFAULT_RETRY, **kwargs):
        kwargs.pop("num_retries", None)
        super().__init__(model, num_retries=0, **kwargs)
        self.retry = retry
        self.faults: Counter = Counter()
        self._faults_lock = threading.Lock()

    def _failed(self, err: Exception, attempt: int) -> float | None:
        """Count ``err``; the seconds to wait before retrying it, or None when it is not retried."""
        kind = fault_kind(err)
        if kind is None:
            return None
        with self._faults_lock:
            self.faults[kind] += 1
        if attempt >= self.retry.retries:
            return None
        return 0.0 if kind == "timeout" else self.retry.delay(attempt, _retry_after(err))

    @staticmethod
    def _within_budget(wait: float) -> None:
        """A retry is not started when the neuron's time budget (``--neuron-budget``) is spent by then."""
        from ..agents.reliability import check_budget  # agents import lms: only at call time

        check_budget("retried", ahead_s=wait)

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        attempt = 0
        while True:
            try:
                return super().__call__(prompt, messages=messages, **kwargs)
            except Exception as err:
                wait = self._failed(err, attempt)
                if wait is None:
                    raise
            self._within_budget(wait)
            time.sleep(wait)
            attempt += 1

    async def acall(self, prompt=None, *, messages=None, **kwargs):
        attempt = 0
        while True:
            try:
                return await super().acall(prompt, messages=messages, **kwargs)
            except Exception as err:
                wait = self._failed(err, attempt)
                if wait is None:
                    raise
            self._within_budget(wait)
            await asyncio.sleep(wait)
            attempt += 1

    def copy(self, **kwargs):
        copied = super().copy(**kwargs)
        copied.faults = Counter()  # each copy (each neuron in the runner) counts its own
        copied._faults_lock = threading.Lock()
        return copied

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_faults_lock", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._faults_lock = threading.Lock()
