"""Issue 18: ``kill -9`` at random points of an ``ns-dspy explain`` run, ten times, each followed by a restart.

Each run is a child process (``multiprocessing``'s fork server, which imports ns-dspy, DSPy and litellm once,
so a child starts in milliseconds and the ten restarts cost no ten interpreter start-ups) running the command
line against a fake OpenAI-compatible server on 127.0.0.1 (``tests/fault_lm.py``) with the keyword simulator.
It is killed with SIGKILL at a seeded random point: after a random number of its LM calls, plus a random
delay, so kills land in LM calls, in scoring, in SQLite writes and between neurons. After every kill the run
file passes ``PRAGMA integrity_check``, holds no half-written row and has lost or changed no finished neuron;
a last run finishes the job, and every neuron is then done exactly once.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import sqlite3
import time

import pytest
from fake_chat import FakeChatServer
from fault_lm import FaultyExplainer, explain_argv, fault_store, run_cli

N = 20
KILLS = 10
SEED = 18


def _rows(path) -> dict[str, tuple]:
    """The run file's neuron rows, checked: integrity, complete JSON traces, a done row's full record."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT unit, status, error, number, score_valid, score_test, seconds, trace "
                           "FROM neurons").fetchall()
    finally:
        con.close()
    out = {}
    for unit, status, error, number, valid, test, seconds, trace in rows:
        parsed = json.loads(trace)  # a half-written trace would not parse
        assert isinstance(parsed, dict) and parsed["unit"] == unit
        if status == "done":
            assert number and valid is not None and test is not None and seconds is not None
            assert parsed["finals"] and "polysemantic" in parsed and "lm_usage" in parsed
        else:
            assert status == "failed" and error and "failure" in parsed
        out[unit] = (status, error, number, valid, test, seconds, trace)
    return out


@pytest.mark.skipif(not hasattr(signal, "SIGKILL") or "forkserver" not in multiprocessing.get_all_start_methods(),
                    reason="needs SIGKILL and the fork server (POSIX)")
def test_ten_kills_then_resume_lose_and_duplicate_nothing(tmp_path):
    store = fault_store(tmp_path / "store", N)
    run = tmp_path / "run.sqlite"
    env = {"NS_DSPY_CACHE": str(tmp_path / "ns-cache"), "DSPY_CACHEDIR": str(tmp_path / "dspy"),
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["fault_lm", "ns_dspy.cli", "ns_dspy.runs.runner", "ns_dspy.build",
                                "ns_dspy.program", "ns_dspy.simulators", "litellm", "litellm.main", "openai",
                                "hdbscan"])
    rng = random.Random(SEED)
    explainer = FaultyExplainer(rate=0.0, latency_s=0.05)  # a healthy LM: only the kills go wrong
    kept: dict[str, tuple] = {}  # done rows seen so far: they must survive every later kill unchanged
    with FakeChatServer(explainer) as server:
        argv = explain_argv(store.path, run, server.url, N, "--concurrency", "2")
        kills = 0
        while kills < KILLS:
            child = ctx.Process(target=run_cli, args=(argv, env))
            calls = server.calls
            child.start()
            after = rng.randint(1, 5)  # its LM calls before the kill
            deadline = time.monotonic() + 60
            while server.calls < calls + after and child.is_alive() and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.2))
            assert child.is_alive(), f"the run finished before kill {kills + 1}: give it more work"
            child.kill()  # SIGKILL
            child.join(30)
            assert child.exitcode == -signal.SIGKILL
            kills += 1
            rows = _rows(run) if run.exists() else {}
            for unit, row in kept.items():
                assert rows.get(unit) == row, f"kill {kills} lost or changed finished neuron {unit}"
            kept.update({u: r for u, r in rows.items() if r[0] == "done"})
        assert 0 < len(kept) < N  # the kills fell among the neurons, not all before or after them

        child = ctx.Process(target=run_cli, args=(argv, env))
        child.start()
        child.join(120)
        assert child.exitcode == 0
    rows = _rows(run)
    assert sorted(rows) == sorted(f"0:{u}" for u in range(N))  # each neuron once (the unit is the key)
    assert all(row[0] == "done" for row in rows.values())
    assert all(rows[u] == row for u, row in kept.items())  # finished before a kill: never explained again
    con = sqlite3.connect(run)
    assert con.execute("SELECT count(*) FROM claims").fetchone()[0] == 0  # no claim of a killed run left over
    con.close()
