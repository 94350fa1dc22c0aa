"""Issue 18: ``ns-dspy explain`` against an LM that fails 30% of its calls in every way a real endpoint does.

A fake OpenAI-compatible server on 127.0.0.1 (``tests/fault_lm.py``) answers every agent validly, except that a
seeded 30% of calls get an HTTP 500, an HTTP 429, a connection closed without an answer, a hang longer than
``--lm-timeout`` or garbage text. The command line runs as a user would run it, then once more (the README's
advice after failures). ``benchmarks/faults.py`` measures the same setting's wall time against a fault-free run.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter

import dspy
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG
from fake_chat import FakeChatServer
from fault_lm import FAULTS, FaultyExplainer, explain_argv, fault_store

from ns_dspy.cli import main
from ns_dspy.lms.retry import DEFAULT_RETRY
from ns_dspy.runs import RunStore

N = 12
TIMEOUT_S = 1.0
HANG_S = 3.0  # longer than the timeout: the client must give up, the server would have answered nothing
SEED = 5  # a seed whose first run meets every kind of fault and leaves neurons failed (so the rerun heals)
KIND = {"http_500": "server_error", "http_429": "rate_limit", "drop": "connection", "hang": "timeout"}


@pytest.fixture(autouse=True)
def fresh_dspy(tmp_path, monkeypatch):
    """DSPy's response cache ON, on disk in this test's directory (as a rerun in a new process would find it)."""
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "ns-cache"))
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(tmp_path / "dspy"))
    yield
    dspy.cache = saved
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


def _line(out: str, prefix: str) -> str | None:
    return next((line for line in out.splitlines() if line.startswith(prefix)), None)


def _kinds(line: str) -> Counter:
    """``"LM call failures: 7 (timeout 3, connection 4)"`` -> Counter(timeout=3, connection=4)."""
    inner = line.split("(", 1)[1].rstrip(")")
    return Counter({k: int(n) for k, n in (part.rsplit(" ", 1) for part in inner.split(", "))})


def test_30_percent_faulty_lm_all_neurons_done_after_one_rerun(tmp_path, capsys):
    store = fault_store(tmp_path / "store", N)
    explainer = FaultyExplainer(rate=0.3, seed=SEED, latency_s=0.02, hang_s=HANG_S)
    path = tmp_path / "run.sqlite"
    with FakeChatServer(explainer) as server:
        argv = explain_argv(store.path, path, server.url, N, "--lm-timeout", str(TIMEOUT_S), "--concurrency", "4")

        start = time.monotonic()
        first_code = main(argv)
        first_s = time.monotonic() - start
        first_out = capsys.readouterr().out
        first = {r.unit: r for r in RunStore(path).records()}
        injected = Counter(explainer.injected)
        hangs = list(server.hangs)
        calls = server.calls

        assert set(injected) == set(FAULTS)  # every kind of fault was met
        assert sum(injected.values()) >= 0.2 * calls  # about 30% of the calls failed
        failed = {u for u, r in first.items() if r.status == "failed"}
        assert len(first) == N and first_code == 0 and 0 < len(failed) < N

        # every failure is counted by kind: the failed neurons, and every transient LM failure the server caused
        expected = Counter(r.trace["failure"] for r in first.values() if r.status == "failed")
        assert _kinds(_line(first_out, "failed: ")) == expected
        assert sum(expected.values()) == len(failed) and "\n" not in "".join(first[u].error for u in failed)
        transient = Counter({KIND[k]: n for k, n in injected.items() if k in KIND})
        assert _kinds(_line(first_out, "LM call failures: ")) == transient

        # a hung call cost the timeout, not the hang; the whole run stayed bounded
        assert hangs and all(h.client_gave_up and TIMEOUT_S - 0.05 <= h.waited_s <= TIMEOUT_S + 1.0 for h in hangs)
        assert first_s < DEFAULT_RETRY.worst_case_s(TIMEOUT_S) * 6

        # the rerun: the failed neurons are retried with fresh LM calls, the done ones are left alone
        assert main(argv) == 0
        rerun_out = capsys.readouterr().out
        assert server.calls > calls
    records = {r.unit: r for r in RunStore(path).records()}
    assert len(records) == N and all(r.status == "done" for r in records.values()), rerun_out
    assert _line(rerun_out, "failed: ") is None
    for unit, record in records.items():
        if unit in failed:
            assert record.trace["attempt"] == 1  # retried once, as a new attempt
        else:  # never explained twice: its row is the first run's, untouched
            assert json.dumps(record.trace, sort_keys=True) == json.dumps(first[unit].trace, sort_keys=True)
            assert (record.seconds, record.score_valid) == (first[unit].seconds, first[unit].score_valid)
