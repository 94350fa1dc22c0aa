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

A call that is merely slow is **hedged** (Dean and Barroso, "The Tail at Scale"): when a try has had no answer
for ``hedge_factor`` times the 90th percentile of this LM's recent answer times (at least ``hedge_min_s``, and
only once ``hedge_samples`` answers were timed), the same request is sent once more and the first answer wins;
the other request is abandoned (it ends on its own within the timeout, and what it costs is counted as usual).
A hung connection then costs about twice a normal answer instead of the whole timeout. At most ``hedge_share`` of
tries are hedged, so a server that is slow for everyone gets at most 10% more requests, and no hedge is sent when
its delay would reach the timeout. Answers faster than 50 ms (the response cache's) are not timed. A request
outlived by its hedge is counted as ``slow`` in ``lm.faults``; ``hedge=False`` turns hedging off.
Every transient failure met is counted by kind in ``lm.faults`` (a fresh counter per :meth:`RetryingLM.copy`,
so per neuron in the runner); :func:`~ns_dspy.lms.factory.lm_usage` reports it, the run file keeps it in each
neuron's trace and the summary of ``ns-dspy explain`` adds it up.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

import dspy

__all__ = ["RetryPolicy", "RetryingLM", "AnswerTimes", "fault_kind", "DEFAULT_RETRY"]


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient LM failure is retried (see the module docstring)."""

    retries: int = 3
    base_s: float = 0.5
    max_s: float = 4.0
    hedge: bool = True
    hedge_factor: float = 2.0
    hedge_min_s: float = 1.0
    hedge_samples: int = 8
    hedge_share: float = 0.1

    def __post_init__(self) -> None:
        from .assets import LMError

        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise LMError(f"LM retries must be a whole number >= 0, got {self.retries!r}")
        if not 0 <= self.base_s <= self.max_s:
            raise LMError(f"LM backoff must satisfy 0 <= base <= max, got {self.base_s} and {self.max_s}")
        if not isinstance(self.hedge, bool):
            raise LMError(f"LM hedge must be true or false, got {self.hedge!r}")
        if not (self.hedge_factor >= 1 and self.hedge_min_s > 0 and 0 <= self.hedge_share <= 1
                and self.hedge_samples >= 1):
            raise LMError("LM hedging needs factor >= 1, a positive minimum delay, a share in [0, 1] and >= 1 sample")

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``attempt`` (0 = the first retry); ``retry_after``: the server's hint."""
        if retry_after is not None and retry_after >= 0:
            return min(float(retry_after), self.max_s)
        return min(self.base_s * 2 ** min(attempt, 30), self.max_s) * (rng or random).uniform(0.5, 1.0)

    def worst_case_s(self, timeout_s: float) -> float:
        """The longest one LM call can take: every try times out and every wait is the longest."""
        return (self.retries + 1) * timeout_s + self.retries * self.max_s


DEFAULT_RETRY = RetryPolicy()

_CACHED_S = 0.05
"""Answers faster than this came from DSPy's response cache (no network call): they are not timed."""


class AnswerTimes:
    """The recent answer times of one LM and its copies (so of a whole run), and how many tries were hedged."""

    def __init__(self, keep: int = 64):
        self._times: deque = deque(maxlen=keep)
        self._lock = threading.Lock()
        self.tries = 0
        self.hedged = 0

    def __getstate__(self):
        with self._lock:
            return {"times": list(self._times), "keep": self._times.maxlen, "tries": self.tries,
                    "hedged": self.hedged}

    def __setstate__(self, state):
        self._times = deque(state["times"], maxlen=state["keep"])
        self._lock = threading.Lock()
        self.tries, self.hedged = state["tries"], state["hedged"]

    def timed(self, seconds: float) -> None:
        if seconds >= _CACHED_S:
            with self._lock:
                self._times.append(seconds)

    def hedge_delay(self, policy: RetryPolicy, timeout: float | None) -> float | None:
        """Seconds after which this try is hedged, or None when it is not (off, too few answers timed yet, or
        the delay would reach the timeout). Counts the try."""
        with self._lock:
            self.tries += 1
            if not policy.hedge or len(self._times) < policy.hedge_samples:
                return None
            ordered = sorted(self._times)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
        delay = max(policy.hedge_min_s, policy.hedge_factor * p90)
        return None if timeout is not None and delay >= timeout else delay

    def may_hedge(self, policy: RetryPolicy) -> bool:
        """Whether one more hedge keeps hedged tries within ``policy.hedge_share`` of all tries; counts it."""
        with self._lock:
            if self.hedged >= policy.hedge_share * self.tries:
                return False
            self.hedged += 1
            return True


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
        self.answer_times = AnswerTimes()  # shared by copies: one run's LM calls

    def _count(self, kind: str) -> None:
        with self._faults_lock:
            self.faults[kind] += 1

    def _failed(self, err: Exception, attempt: int) -> float | None:
        """Count ``err``; the seconds to wait before retrying it, or None when it is not retried."""
        kind = fault_kind(err)
        if kind is None:
            return None
        self._count(kind)
        if attempt >= self.retry.retries:
            return None
        return 0.0 if kind == "timeout" else self.retry.delay(attempt, _retry_after(err))

    @staticmethod
    def _within_budget(wait: float) -> None:
        """A retry is not started when the neuron's time budget (``--neuron-budget``) is spent by then."""
        from ..agents.reliability import check_budget  # agents import lms: only at call time

        check_budget("retried", ahead_s=wait)

    def _hedge_delay(self) -> float | None:
        return self.answer_times.hedge_delay(self.retry, self.kwargs.get("timeout"))

    def _try(self, call):
        """One try of ``call`` (a request), hedged when it is slow (module docstring); returns its answer or
        raises the error of its last request to fail."""
        delay = self._hedge_delay()
        if delay is None:
            start = time.monotonic()
            out = call()
            self.answer_times.timed(time.monotonic() - start)
            return out
        answers: queue.Queue = queue.Queue()

        def send():
            context = contextvars.copy_context()  # DSPy settings, the neuron's budget and meters go along

            def run():
                start = time.monotonic()
                try:
                    answers.put((True, context.run(call), time.monotonic() - start))
                except BaseException as err:  # noqa: BLE001 - handed to the waiting caller
                    answers.put((False, err, time.monotonic() - start))

            # a daemon thread: an abandoned request never holds up the end of the process
            threading.Thread(target=run, name="ns-dspy-lm-try", daemon=True).start()

        send()
        pending = 1
        try:
            ok, value, took = answers.get(timeout=delay)
        except queue.Empty:
            if self.answer_times.may_hedge(self.retry):
                send()
                pending += 1
            ok, value, took = answers.get()
        while True:
            pending -= 1
            if ok:
                self.answer_times.timed(took)
                if pending:
                    self._count("slow")  # outlived by its hedge (or the hedge by it)
                return value
            if not pending or fault_kind(value) is None:
                raise value
            self._count(fault_kind(value))  # the other request may still answer
            ok, value, took = answers.get()

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        attempt = 0
        while True:
            try:
                return self._try(lambda: super(RetryingLM, self).__call__(prompt, messages=messages, **kwargs))
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
                return await self._atry(lambda: super(RetryingLM, self).acall(prompt, messages=messages, **kwargs))
            except Exception as err:
                wait = self._failed(err, attempt)
                if wait is None:
                    raise
            self._within_budget(wait)
            await asyncio.sleep(wait)
            attempt += 1

    async def _atry(self, call):
        """:meth:`_try` for coroutines: the slower request is cancelled, not abandoned."""
        delay = self._hedge_delay()
        if delay is None:
            start = time.monotonic()
            out = await call()
            self.answer_times.timed(time.monotonic() - start)
            return out
        started = {asyncio.ensure_future(call()): time.monotonic()}
        done, _ = await asyncio.wait(set(started), timeout=delay)
        if not done and self.answer_times.may_hedge(self.retry):
            started[asyncio.ensure_future(call())] = time.monotonic()
        tasks = set(started)
        try:
            while True:
                done, tasks = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                answered = [t for t in done if t.exception() is None]
                failed = [t for t in done if t.exception() is not None]
                last = None if answered or tasks else failed.pop()  # raised below, counted by the retry loop
                for task in failed:
                    if fault_kind(task.exception()) is None and not answered:
                        raise task.exception()
                    if fault_kind(task.exception()):
                        self._count(fault_kind(task.exception()))
                if answered:
                    self.answer_times.timed(time.monotonic() - started[answered[0]])
                    if tasks:
                        self._count("slow")
                    return answered[0].result()
                if last is not None:
                    raise last.exception()
        finally:
            for task in tasks:
                task.cancel()

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
