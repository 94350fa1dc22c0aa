"""The conformance suites' parameters: one case per registered implementation of each plug-in point.

Every test of ``test_simulators.py`` that takes ``simulator_case`` runs once per kind in the simulator registry,
every test taking ``lm_case`` once per LM kind, every test taking ``embedder_case`` once per embedder kind (as
optuna runs one suite on every sampler). The kinds come from the registries themselves, so a newly registered
backend is picked up at once, and its tests fail until it has a case below: the few facts the contract needs
(a spec for this test world, options it takes, options that change its results).

The world is local and small: the tiny Llama of ``tests/conftest.py`` (prompted), a LoRA adapter saved on it
(finetuned), the fake completions server of ``tests/simulators`` (endpoint simulator), the fake chat server of
``tests/fake_chat.py`` (endpoint and openai LMs, openai embedder), a stand-in for ``llama_cpp.Llama`` (local
LM) and the offline MiniLM package.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "simulators"))  # fake_openai_server

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
"""What every fake LM answers (ChatAdapter's format for a ``question -> answer`` signature)."""


def shipped(registry: dict) -> list[str]:
    """Kinds of a registry implemented by ns_dspy itself (test doubles elsewhere in the suite register kinds too)."""
    return sorted(kind for kind, cls in registry.items() if getattr(cls, "__module__", "").startswith("ns_dspy."))


# --- cases ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimulatorCase:
    spec: Callable[[SimpleNamespace], str]
    """The spec in this test world."""
    known: dict
    """Options the kind takes: accepted."""
    neutral: tuple[dict, dict] | None
    """Two settings of an option that does not change predictions: one cache key."""
    changing: tuple[dict, dict] | None
    """Two settings of an option that changes predictions: two cache keys."""
    bad: dict | None
    """A known option with a value the kind cannot use: refused in one line."""


SIMULATOR_CASES = {
    "keyword": SimulatorCase(lambda w: "keyword", known={}, neutral=None, changing=None, bad=None),
    "prompted": SimulatorCase(lambda w: f"prompted:{w.tiny_llama}", known={"batch_size": 2},
                              neutral=({"batch_size": 1}, {"batch_size": 4}),
                              changing=({"dtype": "float32"}, {"dtype": "bfloat16"}), bad={"batch_size": 0}),
    "finetuned": SimulatorCase(lambda w: f"finetuned:{w.adapter}", known={"batch_size": 2, "merge": True},
                               neutral=({"batch_size": 1}, {"batch_size": 4}),
                               changing=({"dtype": "float32"}, {"dtype": "bfloat16"}), bad={"batch_size": 0}),
    "endpoint": SimulatorCase(lambda w: f"endpoint:{w.completions_url}@fake",
                              known={"concurrency": 2, "retries": 0, "timeout": 10},
                              neutral=({"api_key": "sk-one-secret"}, {"api_key": "sk-another-secret"}),
                              changing=({"top_logprobs": 15}, {"top_logprobs": 5}), bad={"concurrency": 0}),
}


@dataclass(frozen=True)
class LMCase:
    spec: Callable[[SimpleNamespace], str]
    reach: Callable[[SimpleNamespace], dict]
    """Options this test world needs to reach its fake (not part of the contract)."""
    known: dict
    """Options the kind takes: accepted and applied."""
    unknown: str
    """What an option the kind does not know does: ``refused`` (one-line LMError at build) or ``forwarded`` (sent
    to the server as a request parameter: ``dspy.LM`` keyword options are request parameters)."""
    ignores: tuple[str, ...]
    """Options the commands pass to every LM that this kind declares it ignores (make_lm's docstring)."""
    other_model: Callable[[SimpleNamespace], str]
    """Another model of this kind: its answers must never be served from this one's cache."""
    marks: dict = field(default_factory=dict)
    """test name -> pytest marks for this kind (known bugs in modules this suite may not change)."""
    seeds: Callable[[SimpleNamespace], list] | None = None
    """The sampling seeds its backend received, one per request so far; None: the kind sends none (make_lm's
    docstring says which kinds seed their samples)."""


LM_CASES = {
    "local": LMCase(lambda w: f"local:{w.gguf}", reach=lambda w: {}, known={"n_ctx": 512, "seed": 3}, unknown="refused",
                    ignores=("timeout", "hedge"), other_model=lambda w: f"local:{w.other_gguf}",
                    seeds=lambda w: [options.get("seed") for options in StandInLlama.requests]),
    "openai": LMCase(lambda w: "openai:fake", reach=lambda w: {"api_base": w.chat_url},
                     known={"num_retries": 0, "timeout": 10}, unknown="forwarded", ignores=(),
                     other_model=lambda w: "openai:fake-2"),
    "endpoint": LMCase(lambda w: f"endpoint:{w.chat_url}@fake", reach=lambda w: {},
                       known={"num_retries": 0, "timeout": 10},
                       unknown="forwarded", ignores=(), other_model=lambda w: f"endpoint:{w.other_chat_url}@fake",
                       seeds=lambda w: [body.get("seed") for body in w.servers[0].bodies]),
}


@dataclass(frozen=True)
class EmbedderCase:
    spec: str
    known: dict
    neutral: tuple[dict, dict]
    other_model: str
    """Another model of this kind: another name (names key the sweep's embedding cache)."""


EMBEDDER_CASES = {
    "minilm": EmbedderCase("minilm", known={"device": "cpu", "batch_size": 4},
                           neutral=({"batch_size": 2}, {"batch_size": 64}), other_model="minilm:/models/mpnet"),
    "openai": EmbedderCase("openai:fake-embedding", known={"batch_size": 2},
                           neutral=({"batch_size": 1}, {"batch_size": 256}),
                           other_model="openai:fake-embedding-large"),
}


# --- parametrization --------------------------------------------------------------------------------------------
def _kinds(point: str) -> list[str]:
    if point == "simulator":
        from ns_dspy.simulators import Simulator, simulator_kinds

        simulator_kinds()  # imports every shipped backend, so that each has registered
        return shipped(Simulator.registry)
    if point == "lm":
        from ns_dspy.lms import lm_kinds

        return lm_kinds()
    from ns_dspy.agents.embedders import Embedder

    return shipped(Embedder.registry)


_CASES = {"simulator": SIMULATOR_CASES, "lm": LM_CASES, "embedder": EMBEDDER_CASES}


def pytest_generate_tests(metafunc):
    for point, cases in _CASES.items():
        if f"{point}_kind" not in metafunc.fixturenames:
            continue
        params = []
        for kind in sorted(set(_kinds(point)) | set(cases)):  # a stale case fails too
            marks = getattr(cases.get(kind), "marks", {}).get(metafunc.function.__name__, [])
            params.append(pytest.param(kind, id=kind, marks=marks))
        metafunc.parametrize(f"{point}_kind", params)


def _case(point: str, kind: str):
    case = _CASES[point].get(kind)
    if case is None:
        pytest.fail(f"{point} kind {kind!r} is registered but has no conformance case: add one to "
                    f"{point.upper()}_CASES in tests/conformance/conftest.py")
    if kind not in _kinds(point):
        pytest.fail(f"{point} kind {kind!r} has a conformance case but is not registered: remove its case")
    return case


# --- the simulators' world --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def adapter(tiny_llama, tmp_path_factory) -> Path:
    """A fine-tuned simulator folder on the tiny Llama: a perturbed LoRA and a bin head, saved by save_adapter."""
    from tiny_adapters import random_adapter

    return random_adapter(tiny_llama, tmp_path_factory.mktemp("conformance") / "adapter", ["q_proj", "v_proj"])


@pytest.fixture(scope="session")
def completions_server():
    from fake_openai_server import FakeOpenAIServer

    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def simulator_world(tiny_llama, adapter, completions_server) -> SimpleNamespace:
    return SimpleNamespace(tiny_llama=tiny_llama, adapter=adapter, completions_url=completions_server.url)


@pytest.fixture
def simulator_case(simulator_kind, simulator_world) -> SimpleNamespace:
    """``kind``, ``spec``, ``run_options`` and the case's option sets for one registered simulator kind."""
    from ns_dspy.simulators import Simulator

    case = _case("simulator", simulator_kind)
    return SimpleNamespace(kind=simulator_kind, spec=case.spec(simulator_world), case=case,
                           run_options=Simulator.registry[simulator_kind].run_options)


WORDS = ["The", " cat", " sat", " on", " a", " mat", " dog", " ran", " café", "\t", "—"]


@pytest.fixture(scope="session")
def score_store(tmp_path_factory) -> Path:
    """A store of one unit (0:0) firing on " cat" and " dog", in words, with token ids of a foreign tokenizer
    (a 262k vocabulary, as records imported from Gemma would carry)."""
    from ns_dspy.exemplars import LayerData, write_store

    windows = np.array([[0, 1, 2, 3, 4, 5], [0, 6, 7, 3, 4, 5], [0, 8, 9, 1, 10, 6]] * 2)
    acts = np.where(np.isin(windows, [1, 6]), 5.0, 0.0).astype(np.float32)[None]
    slots = {(split, "top"): (np.array([[2 * s, 2 * s + 1]]), acts[:, [2 * s, 2 * s + 1]])
             for s, split in enumerate(("train", "valid", "test"))}
    layer = LayerData(units=np.array([0]), slots=slots, stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2))})
    return write_store(tmp_path_factory.mktemp("conformance") / "store", manifest={"model": {"name": "toy"}},
                       strings=WORDS, windows=windows, window_split=np.array([0, 0, 1, 1, 2, 2]),
                       layers={0: layer}, token_ids=windows + 235_000)


# --- the LMs' world ---------------------------------------------------------------------------------------------
class StandInLlama:
    """Stands in for ``llama_cpp.Llama`` (no llama.cpp build in the fast tests): answers :data:`ANSWER`."""

    calls = 0
    requests: list[dict] = []  # every call's sampling options (seed, temperature, ...), oldest first

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def set_cache(self, cache):  # llama_cpp.Llama's prefix-cache hook (the engine's PrefixCache)
        self.cache = cache

    def create_chat_completion(self, *, messages, **options):
        StandInLlama.calls += 1
        StandInLlama.requests.append(dict(options))
        return {"id": "c1", "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": ANSWER}}],
                "usage": {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}}

    def close(self):
        pass


@pytest.fixture(scope="session")
def chat_servers():
    from fake_chat import FakeChatServer

    with FakeChatServer(lambda body: ANSWER) as one, FakeChatServer(lambda body: ANSWER) as two:
        yield one, two


@pytest.fixture
def lm_world(chat_servers, tmp_path, monkeypatch) -> SimpleNamespace:
    """Two fake chat servers, two GGUF files run by :class:`StandInLlama`, an OpenAI key, and ``calls()``: how
    many requests every fake has answered so far."""
    from ns_dspy.lms import factory
    from ns_dspy.lms import local as local_mod

    for module in (factory, local_mod):
        monkeypatch.setattr(module, "require_llama_cpp", lambda: None)
    monkeypatch.setattr(local_mod, "_import_llama", lambda: StandInLlama)
    monkeypatch.setattr(local_mod, "check_llama_cpp", lambda *a, **k: {"ok": True})  # no library to check
    monkeypatch.setenv("OPENAI_API_KEY", "sk-conformance-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", chat_servers[0].url)  # never the network, whatever a builder reads
    gguf, other = tmp_path / "model.gguf", tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF one")
    other.write_bytes(b"GGUF two")
    one, two = chat_servers
    return SimpleNamespace(gguf=gguf, other_gguf=other, chat_url=one.url, other_chat_url=two.url,
                           servers=chat_servers, calls=lambda: StandInLlama.calls + one.calls + two.calls)


@pytest.fixture
def lm_case(lm_kind, lm_world) -> SimpleNamespace:
    case = _case("lm", lm_kind)
    return SimpleNamespace(kind=lm_kind, spec=case.spec(lm_world), reach=case.reach(lm_world), case=case,
                           other_spec=case.other_model(lm_world))


# --- the embedders' world ---------------------------------------------------------------------------------------
def _fake_embedding(text: str, dim: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [b - 127.5 for b in digest[:dim]]


def _embeddings_answer(body: dict):
    texts = body.get("input")
    if not isinstance(texts, list):
        return 400, {"error": {"message": "the fake embeddings server takes a list of texts", "code": 400}}
    data = [{"object": "embedding", "index": i, "embedding": _fake_embedding(t)} for i, t in enumerate(texts)]
    return 200, {"object": "list", "data": data, "model": body.get("model"),
                 "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}}


@pytest.fixture(scope="session")
def embeddings_server():
    from fake_chat import FakeChatServer

    with FakeChatServer(_embeddings_answer) as server:
        yield server


@pytest.fixture
def embedder_case(embedder_kind, embeddings_server, monkeypatch) -> SimpleNamespace:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-conformance-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", embeddings_server.url)
    case = _case("embedder", embedder_kind)
    return SimpleNamespace(kind=embedder_kind, spec=case.spec, case=case, server=embeddings_server)


def _one_line(err: pytest.ExceptionInfo) -> str:
    from ns_dspy.errors import NsDspyError

    text = str(err.value)
    assert isinstance(err.value, NsDspyError), f"{type(err.value).__name__} is not the project's error class"
    assert text and "\n" not in text
    return text


@pytest.fixture
def one_line():
    """``one_line(excinfo) -> message``: checks that an error is the project's, on one non-empty line."""
    return _one_line
