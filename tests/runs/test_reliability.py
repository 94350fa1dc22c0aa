"""Reliability (issue 18, parts 1-3): failed work is retried with fresh samples, not replayed from DSPy's cache;
LM timeouts and a per-neuron budget; claims so that several runners on one run file explain each neuron once.

Toy store of trigger words, a scripted LM (DSPy's engine interface, real adapters, parsing and response cache)
or a fake OpenAI-compatible server on 127.0.0.1, the keyword simulator and an exact word embedder.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
import threading
import time

import dspy
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG
from dspy.utils.exceptions import LMTimeoutError
from fake_chat import FakeChatServer
from fault_lm import WORDS, FaultWords  # the toy words and their exact embedder (--embedder fault-words)
from trigger_words import trigger_store

from ns_dspy.agents.decomposition import DecompositionAgent
from ns_dspy.agents.reliability import ATTEMPT_KEY, UnusableAnswer
from ns_dspy.agents.refinement import RefinementAgent
from ns_dspy.cli import main
from ns_dspy.runs.read import summary_table
from ns_dspy.lms import LMError, make_lm
from ns_dspy.lms.scripted import ScriptedEngine, agent_of, chat_answer
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.runs import NeuronRecord, RunStore
from ns_dspy.runs.runner import explain_units
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId

TRIGGERS = [{" dog": 5.0, " cat": 3.0}, {" mat": 4.0}, {" ran": 5.0}, {" today": 4.0}, {" sat": 3.0}, {}]
U = UnitId(0, 0)
CFG = {"reliability": 1}
GARBAGE = "Sorry, I cannot help with that."


@pytest.fixture(autouse=True)
def fresh_dspy(tmp_path, monkeypatch):
    """DSPy's response cache ON, on disk in this test's directory (as a rerun in a new process would find it)."""
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "ns-cache"))  # the CLI's simulation cache
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(tmp_path / "dspy"))
    yield
    dspy.cache = saved
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


def answer(prompt: str) -> dict:
    """The toy explainer: the same shape of answer for every unit."""
    return {"hypothesis": {"explanation": "dog, cat and mat words"},
            "decomposition": {"conditions": ["This neuron activates on dog", "This neuron activates on mat"]},
            "refinement": {"explanation": "the word dog"}}[agent_of(prompt)]


def cached_lm(respond, *, sleep: float = 0.0, name: str = "reliability", cache: bool = True):
    """``(lm, engine)``: a scripted ``dspy.LM``, by default with DSPy's response cache ON (as ``cache=True``)."""

    def reply(prompt, request):
        time.sleep(sleep)
        return respond(prompt)

    engine = ScriptedEngine([], default=reply)
    return dspy.LM(f"local/{name}", engine=engine, cache=cache, num_retries=0), engine


def program(**kw) -> NeuronScope:
    return NeuronScope(KeywordSimulator(), FaultWords(), ExplainConfig(candidates=1, iterations=1,
                                                                             max_exemplars=5, **kw))


@pytest.fixture
def store(tmp_path):
    return trigger_store(tmp_path / "store", WORDS, TRIGGERS, n=24)


# --- 1. failed work is retried, not replayed -------------------------------------------------------------------
def test_garbage_hypothesis_fails_then_the_rerun_makes_new_calls_and_finishes(store, tmp_path):
    garbage = {"on": True}
    lm, engine = cached_lm(lambda p: GARBAGE if garbage["on"] and agent_of(p) == "hypothesis" else answer(p))
    run = RunStore(tmp_path / "run.sqlite", CFG)
    first = explain_units(program(), store, [U], run, lm, progress=False)[0]
    assert first.status == "failed" and "could not be parsed" in first.error and "\n" not in first.error
    assert first.trace["failure"] == "lm_parse" and first.trace["attempt"] == 0
    assert "failed: 1 (lm_parse 1)" in summary_table([first]).splitlines()
    calls = len(engine.prompts)
    assert calls == 4  # chat + JSON fallback, then a fresh sample: chat + JSON fallback, all garbage
    assert engine.requests[2].config.temperature == 1.0  # the fresh sample is a sample

    garbage["on"] = False  # the LM answers properly now; its garbage is still in DSPy's cache
    again = explain_units(program(), store, [U], run, lm, progress=False)[0]
    assert len(engine.prompts) > calls  # real LM calls, not the cached garbage replayed
    assert again.status == "done" and again.trace["attempt"] == 1 and run.done() == {U}


def test_one_garbage_answer_is_retried_with_a_fresh_sample_in_the_same_run(store, tmp_path):
    seen = []

    def respond(prompt):
        seen.append(agent_of(prompt))
        return GARBAGE if agent_of(prompt) == "hypothesis" and seen.count("hypothesis") <= 2 else answer(prompt)

    lm, engine = cached_lm(respond)
    record = explain_units(program(), store, [U], RunStore(tmp_path / "r.sqlite", CFG), lm, progress=False)[0]
    assert record.status == "done" and seen[:3] == ["hypothesis"] * 3


def test_decomposition_and_refinement_draw_fresh_samples_too():
    garbage = {"on": True}
    lm, engine = cached_lm(lambda p: GARBAGE if garbage["on"] else answer(p), name="agents")
    with dspy.context(lm=lm), pytest.raises(UnusableAnswer, match="no usable conditions in 2 attempts"):
        DecompositionAgent()(explanation="dogs and mats")
    calls, garbage["on"] = len(engine.prompts), False
    with dspy.context(lm=lm, **{ATTEMPT_KEY: 1}):  # the neuron's second run: a fresh sample, not the cache
        assert DecompositionAgent()(explanation="dogs and mats").conditions[0] == "This neuron activates on dog."
    assert len(engine.prompts) > calls

    answers = iter([GARBAGE] * 4 + ["[[ ## explanation ## ]]\nthe word mat\n\n[[ ## completed ## ]]"])
    lm, engine = cached_lm(lambda p: next(answers), name="refine")
    with dspy.context(lm=lm):  # both candidates unparsable (chat and JSON): one fresh sample before giving up
        result = RefinementAgent(candidates=2, iterations=1)(seed="dog words", score=lambda es: [0.5] * len(es))
    assert result.stopped != "lm_failed" and [e for e, _ in result.history] == ["dog words", "the word mat"]
    assert result.failures == 2 and len(engine.prompts) == 5


# --- 2. LM timeouts and a per-neuron budget ---------------------------------------------------------------------
def test_endpoint_lms_get_a_timeout_and_bounded_retries_and_a_hung_call_fails_in_time():
    release = threading.Event()
    hang = {"on": False}

    def reply(body):
        if hang["on"]:
            release.wait(20)
        return "hello"

    with FakeChatServer(reply) as server:
        spec = f"endpoint:{server.url}@fake"
        lm = make_lm(spec)
        assert lm.kwargs["timeout"] == 120  # litellm's own default would be 6000 s
        assert lm.retry.retries == 3 and lm.num_retries == 0  # ns-dspy's bounded retries, not DSPy's own
        assert make_lm("openai:gpt-4o", api_key="sk-test").kwargs["timeout"] == 120
        with pytest.raises(LMError, match="timeout must be a positive number"):
            make_lm(spec, timeout=0)
        lm = make_lm(spec, timeout=1, num_retries=0, cache=False)
        assert lm("warm up") == ["hello"]
        hang["on"] = True
        start = time.monotonic()
        try:
            with pytest.raises(LMTimeoutError):
                lm("this one hangs")
            assert time.monotonic() - start < 2.5
        finally:
            release.set()


def test_retries_wait_a_bounded_time_whatever_the_server_says_and_count_each_failure():
    from dspy.utils.exceptions import LMInvalidRequestError, LMServerError

    from ns_dspy.lms import lm_usage
    from ns_dspy.lms.retry import RetryPolicy

    policy = RetryPolicy()
    waits = [policy.delay(n) for n in range(40)]
    assert 0.25 <= waits[0] <= 0.5 and all(w <= policy.max_s for w in waits) and max(waits) >= policy.max_s / 2
    assert policy.delay(0, retry_after=3600) == policy.max_s and policy.delay(3, retry_after=0.1) == 0.1
    assert policy.worst_case_s(120) == 4 * 120 + 3 * policy.max_s

    script: list = []

    def reply(body):
        return script.pop(0) if script else "hello"

    with FakeChatServer(reply) as server:
        lm = make_lm(f"endpoint:{server.url}@fake", cache=False, timeout=5)
        lm.retry = RetryPolicy(retries=2, base_s=0.05, max_s=0.2)
        # a rate limiter asking for an hour, then a server error: both retried after at most max_s
        script[:] = [(429, {"error": {"message": "slow down"}}, {"Retry-After": "3600"}),
                     (503, {"error": {"message": "busy"}})]
        start = time.monotonic()
        assert lm("hi") == ["hello"] and time.monotonic() - start < 2 and server.calls == 3
        assert lm_usage(lm)["faults"] == {"rate_limit": 1, "server_error": 1}
        assert lm.copy().faults == {}  # a copy (a neuron in the runner) counts its own
        # retries are bounded: three server errors and the call fails
        script[:] = [(500, {"error": {"message": "boom"}})] * 3
        with pytest.raises(LMServerError):
            lm("again")
        assert server.calls == 6 and lm.faults["server_error"] == 4
        # a request the server refuses is not retried
        script[:] = [(400, {"error": {"message": "bad request"}})]
        with pytest.raises(LMInvalidRequestError):
            lm("bad")
        assert server.calls == 7 and sum(lm.faults.values()) == 5


def test_no_retry_starts_once_the_neurons_budget_would_be_spent_by_its_wait():
    import dspy

    from ns_dspy.agents.reliability import BUDGET_KEY, OverBudget
    from ns_dspy.lms.retry import RetryPolicy

    with FakeChatServer(lambda body: (500, {"error": {"message": "boom"}})) as server:
        lm = make_lm(f"endpoint:{server.url}@fake", cache=False, timeout=5)
        lm.retry = RetryPolicy(retries=3, base_s=1.0, max_s=2.0)
        start = time.monotonic()
        with dspy.context(**{BUDGET_KEY: (start + 0.5, 0.5)}), pytest.raises(OverBudget, match="retried LM call"):
            lm("hi")
        assert server.calls == 1 and time.monotonic() - start < 0.5  # the first wait alone would pass the budget
        with pytest.raises(Exception, match="boom"):  # without a budget the retries run as before
            lm.retry = RetryPolicy(retries=1, base_s=0.01, max_s=0.02)
            lm("again")
        assert server.calls == 3


def test_explain_cli_passes_lm_timeout_and_neuron_budget(store, tmp_path, capsys):
    release = threading.Event()

    def reply(body):
        if len(server.bodies) == 1:  # the first call hangs (longer than the test would take)
            release.wait(20)
        return chat_answer(**answer("\n".join(str(m.get("content")) for m in body["messages"])))

    with FakeChatServer(reply) as server:
        start = time.monotonic()
        try:
            code = main(["explain", "--store", str(store.path), "--neurons", "0:0", "--lm",
                         f"endpoint:{server.url}@fake", "--lm-timeout", "1", "--neuron-budget", "0.5",
                         "--simulator", "keyword", "--embedder", "fault-words", "--candidates", "1",
                         "--iterations", "1", "--run", str(tmp_path / "cli.sqlite"), "-q"])
        finally:
            release.set()
        elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    # the hung call timed out after 1 s; the neuron was then over its 0.5 s budget, so no retry was started
    assert code == 1 and elapsed < 15 and server.calls == 1
    assert "over its time budget (0.5 s): stopped before the retried LM call" in out
    assert "failed: 1 (budget 1)" in out.splitlines()


def test_neuron_over_its_budget_fails_with_one_line(store, tmp_path):
    lm, engine = cached_lm(answer, sleep=0.2)
    record = explain_units(program(), store, [U], RunStore(tmp_path / "b.sqlite", CFG), lm, progress=False,
                           neuron_budget_s=0.3)[0]
    assert record.status == "failed" and record.trace["failure"] == "budget"
    assert record.error.startswith("over its time budget (0.3 s): stopped before the ") and "\n" not in record.error
    assert "failed: 1 (budget 1)" in summary_table([record]).splitlines()
    assert len(engine.prompts) <= 3  # it stopped: a whole run makes 4 calls
    lm, _ = cached_lm(answer, name="generous")
    ok = explain_units(program(), store, [U], RunStore(tmp_path / "g.sqlite", CFG), lm, progress=False,
                       neuron_budget_s=60)[0]
    assert ok.status == "done"


# --- 3. one run file, several runners ----------------------------------------------------------------------------
def _record(status: str) -> NeuronRecord:
    return NeuronRecord(U, status, None if status == "done" else "late failure", 1, 0.5, 0.4, None, 10, 0.0, 1.0,
                        {"attempt": 0})


def test_two_runners_on_one_run_file_explain_every_neuron_once(store, tmp_path, caplog):
    units = [UnitId(0, i) for i in range(6)]
    lm, engine = cached_lm(answer, cache=False)  # every call counted
    explain_units(program(), store, units, RunStore(tmp_path / "ref.sqlite", CFG), lm, progress=False)
    once = len(engine.prompts)  # every neuron explained once by one runner

    path, engines, errors = tmp_path / "shared.sqlite", [], []

    def runner():
        lm, engine = cached_lm(answer, sleep=0.15, cache=False)  # a neuron takes about 0.5 s
        engines.append(engine)
        try:  # a lease shorter than a neuron takes: only renewal keeps the other runner off it
            explain_units(program(), store, units, RunStore(path, CFG), lm, progress=False, lease_s=0.3)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=runner) for _ in range(2)]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ns_dspy.runs.runner"):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and caplog.text.count("unit 0:5 failed") == 1  # the failure too happened once
    records = RunStore(path, CFG).records()
    assert [r.status for r in records] == ["done"] * 5 + ["failed"]  # 0:5 never fires
    assert sum(len(e.prompts) for e in engines) == once and all(e.prompts for e in engines)

    run = RunStore(path, CFG)  # a late failure never replaces a finished neuron
    assert run.put(_record("failed")) is False
    assert {r.unit: r.status for r in run.records()}[U] == "done"


def test_a_live_claim_is_skipped_and_an_expired_one_taken_over(store, tmp_path, caplog):
    path = tmp_path / "run.sqlite"
    other = RunStore(path, CFG)
    assert other.claim(U, lease_s=60)
    mine = RunStore(path, CFG)
    assert not mine.claim(U, lease_s=60) and other.claim(U, lease_s=60)  # exclusive; the holder renews
    lm, engine = cached_lm(answer)
    with caplog.at_level(logging.WARNING, logger="ns_dspy.runs.runner"):
        assert explain_units(program(), store, [U], mine, lm, progress=False) == []
    assert engine.prompts == [] and "being explained by another process: 0:0" in caplog.text

    assert other.claim(U, lease_s=0.05)  # its last renewal, then it is killed: no release, the lease runs out
    other.close()
    time.sleep(0.1)
    record = explain_units(program(), store, [U], mine, lm, progress=False)[0]
    assert record.status == "done" and engine.prompts and mine.claims() == {}
    assert not mine.claim(U)  # done: never claimed (nor explained) again


def test_run_files_without_claims_get_the_table(tmp_path):
    path = tmp_path / "old.sqlite"
    RunStore(path, CFG).close()
    con = sqlite3.connect(path)
    con.execute("DROP TABLE claims")
    con.commit()
    con.close()
    run = RunStore(path, CFG)
    assert run.claim(U, lease_s=5) and set(run.claims()) == {U}
    assert run.put(_record("done")) and run.claims() == {} and run.done() == {U}
    assert run.attempts() == {} and run.records()[0].score_valid == 0.5


def test_a_typo_in_the_simulator_or_embedder_leaves_no_run_file(tmp_path, capsys):
    from ns_dspy.cli import main
    from tests.runs.test_runner import _store

    store = _store(tmp_path)
    run = tmp_path / "run.sqlite"
    for bad in (["--simulator", "keywrd"], ["--simulator", "keyword", "--embedder", "nope"]):
        assert main(["explain", "--store", str(store.path), "--neurons", "0:1", "--method", "stats", "--run",
                     str(run), "-q", *bad]) == 2
        assert not run.exists()
    assert main(["explain", "--store", str(store.path), "--neurons", "0:1", "--method", "stats", "--run", str(run),
                 "-q", "--simulator", "keyword"]) == 0  # the corrected command is not refused
    assert "statistical" not in capsys.readouterr().err


def test_a_claim_of_a_dead_process_of_this_machine_is_taken_over_at_once(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "run.sqlite"
    RunStore(path, CFG).close()  # the file exists with its config
    code = ("import sys; from ns_dspy.runs import RunStore; from ns_dspy.types import UnitId; "
            f"r = RunStore({str(path)!r}); assert r.claim(UnitId(0, 0), lease_s=3600); print(r.owner)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # it exited holding an hour-long claim
    mine = RunStore(path, CFG)
    assert U in mine.claims() and mine.claims()[U][0] == done.stdout.strip()
    assert mine.claim(U, lease_s=60)  # its process is gone: taken over now, not in an hour
    live = RunStore(path, CFG)
    assert not live.claim(U, lease_s=60)  # a live holder (this process) is still respected
