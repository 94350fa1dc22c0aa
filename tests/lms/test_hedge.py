"""Hedged LM requests (ns_dspy/lms/retry.py): a try without an answer for ~2x the usual answer time is sent once
more and the first answer wins, so a hung connection costs about two answers, not the whole timeout."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_chat import FakeChatServer, Hang  # noqa: E402

from ns_dspy.lms import make_lm  # noqa: E402
from ns_dspy.lms.retry import AnswerTimes, RetryPolicy  # noqa: E402

ANSWER_S = 0.1  # slower than a response-cache hit (50 ms), so it is timed


def _server(hang_on: set[str], hang_s: float = 8.0):
    """Answers after ANSWER_S; the first request whose prompt contains a word of ``hang_on`` hangs ``hang_s``."""
    lock = threading.Lock()

    def reply(body):
        text = "\n".join(str(m.get("content")) for m in body.get("messages", []))
        with lock:
            word = next((w for w in hang_on if w in text), None)
            if word is not None:
                hang_on.discard(word)
        if word is not None:
            return Hang(hang_s)
        time.sleep(ANSWER_S)
        return "hello"

    return FakeChatServer(reply)


def _lm(server, **policy):
    lm = make_lm(f"endpoint:{server.url}@fake", cache=False, timeout=5, num_retries=0)
    lm.retry = RetryPolicy(retries=0, hedge_min_s=0.3, **policy)
    assert lm("first") == ["hello"]  # the first call also loads litellm: not a usual answer time
    lm.answer_times = AnswerTimes()
    for n in range(lm.retry.hedge_samples):  # answer times to judge "slow" by
        assert lm(f"warm {n}") == ["hello"]
    return lm


def test_a_hung_request_is_hedged_and_answered_in_about_two_answer_times():
    with _server({"stuck"}) as server:
        lm = _lm(server)
        calls = server.calls
        start = time.monotonic()
        assert lm("stuck here") == ["hello"]
        took = time.monotonic() - start
        # hedged after max(0.3, 2 x ~0.1) s and answered ~0.1 s later; unhedged it would fail after the 5 s timeout
        assert 0.3 <= took < 1.5, took
        assert server.calls == calls + 2
        assert lm.faults == {"slow": 1}
        assert lm.answer_times.hedged == 1
        # copies (the runner's neurons) share the answer times and the hedge budget, not the fault counts
        copy = lm.copy()
        assert copy.answer_times is lm.answer_times and copy.faults == {}


def test_hedging_is_bounded_by_its_share_and_can_be_turned_off():
    with _server({"one", "two"}, hang_s=1.0) as server:
        lm = _lm(server, hedge_share=0.0)
        calls = server.calls
        start = time.monotonic()
        with pytest.raises(Exception, match="(?i)timeout|timed out|disconnect|closed|connection"):
            lm.copy(timeout=0.8)("one")  # no hedge allowed: the hang costs the whole timeout
        assert time.monotonic() - start >= 0.75 and server.calls == calls + 1
        off = _lm(server, hedge=False)
        assert off._hedge_delay() is None


def test_no_hedge_when_its_delay_would_reach_the_timeout_and_cache_hits_are_not_timed():
    times = AnswerTimes()
    policy = RetryPolicy(hedge_min_s=1.0, hedge_samples=2)
    for _ in range(3):
        times.timed(0.001)  # response-cache hits: no network call, not an answer time
    assert times.hedge_delay(policy, timeout=10) is None
    times.timed(2.0)
    times.timed(3.0)
    assert times.hedge_delay(policy, timeout=10) == 6.0  # 2 x the 90th percentile
    assert times.hedge_delay(policy, timeout=6) is None  # a hedge at the timeout would be a plain retry
    assert times.hedge_delay(RetryPolicy(hedge=False), timeout=10) is None
    with pytest.raises(Exception, match="hedging needs"):
        RetryPolicy(hedge_factor=0.5)


def test_the_async_path_hedges_too_and_cancels_the_slower_request():
    with _server({"stuck"}) as server:
        lm = _lm(server)
        start = time.monotonic()
        assert asyncio.run(lm.acall("stuck async")) == ["hello"]
        assert time.monotonic() - start < 1.5
        assert lm.faults == {"slow": 1}
