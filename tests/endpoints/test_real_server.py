"""``ns-dspy explain --lm endpoint:...`` and ``ns-dspy score --simulator endpoint:...`` against a real server:
llama-cpp-python's ``python -m llama_cpp.server`` with SmolLM2-135M-Instruct on 127.0.0.1 (see ``conftest.py``).

The commands run as a user runs them (``ns_dspy.cli.main``), on a toy store of one trigger-word neuron with 2
windows per split, with the smallest settings the CLI allows. SmolLM2's explanations are nonsense and its
simulations meaningless: what is tested is that every request the commands send is one the real server
serves, and that what it answers is read (usage, echoed prompt logprobs), within a bounded time.
"""

from __future__ import annotations

import math
import re
import time

import pytest
from fault_lm import WORDS  # importing it registers the instant exact-word embedder "fault-words"
from trigger_words import trigger_store

from ns_dspy.cli import main
from ns_dspy.runs import RunStore

pytestmark = pytest.mark.slow

EXPLAIN_BUDGET_S = 150  # --neuron-budget: ~30 s on 2 idle cores; the rest is headroom for a loaded machine
SCORE_S = 120  # 2 prompts of ~200 tokens at ~0.1 s per echoed token, served one after the other


@pytest.fixture(autouse=True)
def fresh(dspy_memory_cache, tmp_path, monkeypatch):
    """A fresh in-memory DSPy cache and a private ns-dspy cache (simulations) per test."""
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "ns-cache"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Layer 0, unit 0:0 fires on " cat" (5) and " mat" (3) (0:1 is dead); 6 windows of 6 words, 2 per split."""
    return trigger_store(tmp_path_factory.mktemp("store") / "store", WORDS, [{" cat": 5.0, " mat": 3.0}, {}], n=6)


def test_explain_with_an_endpoint_lm_finishes_the_neuron(llama_server, store, tmp_path, capsys):
    run = tmp_path / "run.sqlite"
    argv = ["explain", "--store", str(store.path), "--neurons", "0:0", "--run", str(run), "-q",
            "--lm", f"endpoint:{llama_server.spec}", "--temperature", "0", "--lm-timeout", "60",
            "--neuron-budget", str(EXPLAIN_BUDGET_S), "--simulator", "keyword", "--embedder", "fault-words",
            "--max-exemplars", "3", "--candidates", "1", "--iterations", "1", "--no-refine"]
    start = time.monotonic()
    code = main(argv)
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    [record] = RunStore(run).records()
    assert (code, record.status) == (0, "done"), f"{record.error} | {out[-500:]}"
    assert "Traceback" not in out + err
    assert record.trace["clusters"] and all(c["explanation"].strip() for c in record.trace["clusters"])
    usage = record.trace["lm_usage"]  # read from the real server's answers
    assert usage["calls"] >= 2 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert seconds < EXPLAIN_BUDGET_S + 60


def test_score_with_an_endpoint_simulator_prints_a_finite_score(llama_server, store, capsys):
    start = time.monotonic()
    code = main(["score", str(store.path), "0:0", "the words cat and mat", "--simulator",
                 f"endpoint:{llama_server.spec}", "--table", "1"])
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 0, err
    score = re.match(r"unit 0:0, test: score (\S+)", out)
    assert score and math.isfinite(float(score.group(1))), out
    assert "pooled Pearson r over 12 tokens of 2 exemplars" in out  # every slot of both test windows was read
    predicted = [float(line.split()[-1]) for line in out.split("predicted\n")[1].strip().splitlines()]
    assert len(predicted) == 6 and all(0 <= p <= 10 for p in predicted)
    assert seconds < SCORE_S


def test_a_server_without_prompt_logprobs_is_one_error_line(llama_server_without_logprobs, store, capsys):
    start = time.monotonic()
    code = main(["score", str(store.path), "0:0", "the words cat and mat", "--simulator",
                 f"endpoint:{llama_server_without_logprobs.spec}"])
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("ns-dspy: error: the endpoint at http://127.0.0.1:") and "returns no prompt logprobs" in line
    assert "logits_all=False" in line and "--logits_all true" in line  # what the server said, and the fix
    assert seconds < 5  # refused at once, not retried as a transient server error


def test_an_endpoint_lm_gets_each_sample_again_from_a_real_server(llama_server):
    """The seeds an ``endpoint:`` LM sends (its own for a first sample, one per DSPy rollout id) are honoured by
    a real server: the same rollout gives the same answer again, other rollouts other answers. A first call
    fills the server's context with the prompt, so that every timed call evaluates the same last token alone
    (llama.cpp's arithmetic depends on how a prompt is batched)."""
    import dspy

    from ns_dspy.lms import make_lm

    lm = make_lm(f"endpoint:{llama_server.spec}", temperature=1.0, max_tokens=16, cache=False, timeout=60)
    prompt = "Write one short sentence about the sea."  # lm(prompt): DSPy 3.4 deprecates lm(messages=[dicts])

    def ask(rollout=None) -> str:
        with dspy.context(lm=lm):
            return lm(prompt, **({} if rollout is None else {"rollout_id": rollout}))[0]

    ask(0)  # fills the context (evaluated from an empty one: another batching than the calls below)
    first = ask()
    answers = {rollout: ask(rollout) for rollout in (1, 2, 3)}
    assert ask(1) == answers[1] and ask() == first
    assert len({first, *answers.values()}) >= 3  # sampled at temperature 1: the seeds pick other samples
