"""EndpointSimulator against a local fake OpenAI-compatible server (127.0.0.1 only, never the network)."""

from __future__ import annotations

import asyncio
import socket
import time

import numpy as np
import pytest
from fake_openai_server import FakeOpenAIServer

from ns_dspy.errors import ConfigError, NsDspyError
from ns_dspy.simulators.align import locate_tokens
from ns_dspy.simulators.base import build_simulator
from ns_dspy.simulators.endpoint import EndpointError, EndpointSimulator
from ns_dspy.simulators.prompt import PROMPT_VERSION
from ns_dspy.types import Exemplar

DOG = Exemplar(["The", " dog", " barked", " at", " the", " dog", "."], np.zeros(7))
ODD = Exemplar(["Le", " café", " —", " dog", "\n", "\t", "é", " naïve"], np.zeros(8))
FAST = dict(retries=0, backoff=0.0, timeout=5)


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


def sim(server, **kw) -> EndpointSimulator:
    return EndpointSimulator(server.url, "fake", **{**FAST, **kw})


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    assert isinstance(err.value, NsDspyError)
    return text


def test_predictions_follow_the_explanation(server):
    preds = sim(server).simulate(["dogs, or a dog", "words for colours"], [DOG, ODD])
    assert len(preds) == 2 and all(len(row) == 2 for row in preds)
    for row in preds:
        for p, x in zip(row, [DOG, ODD]):
            assert p.dtype == np.float32 and p.shape == (len(x.tokens),)
            assert ((p >= 0) & (p <= 10)).all()
    dog = preds[0][0]
    assert (dog[[1, 5]] > 8).all() and (np.delete(dog, [1, 5]) < 1).all()
    assert (preds[1][0] < 1).all()
    assert server.requests == 4


def test_identical_pairs_are_sent_once_and_empty_exemplars_skip_the_server(server):
    empty = Exemplar([], np.zeros(0))
    preds = sim(server).simulate(["a dog"], [DOG, DOG, empty])
    assert server.requests == 1
    np.testing.assert_array_equal(preds[0][0], preds[0][1])
    assert preds[0][2].shape == (0,)


@pytest.mark.parametrize("style", ["echo", "vllm"])
@pytest.mark.parametrize("shape", [
    {},
    {"offsets": "bytes"},                                      # offsets counted in UTF-8 bytes
    {"offsets": "cumulative", "bos": "<s>"},                   # vLLM: BOS text shifts every offset
    {"offsets": "cumulative", "split_utf8": True},             # pieces of characters decode to U+FFFD
    {"merge_tab": True},                                       # "\tunknown" is one token
    {"bos": "<|begin_of_text|>", "split_utf8": True, "offsets": "bytes"},
], ids=["chars", "bytes", "bos", "split-utf8", "merged-tab", "all"])
def test_non_ascii_tokens_align_whatever_the_server_tokenization(shape, style):
    with FakeOpenAIServer(**shape) as server:
        s = sim(server, style=style)
        pred = s.simulate(["a café for a dog, naïve"], [ODD])[0][0]
    high = [1, 3, 7]  # " café", " dog", " naïve"
    assert (pred[high] > 8).all(), pred
    assert (np.delete(pred, high) < 1).all(), pred
    assert s.missing_slots == 0 and s.slots == len(ODD.tokens)


def test_locate_tokens_reads_char_byte_and_shifted_offsets():
    prompt = "é a\tb"
    assert locate_tokens(prompt, ["é", " a", "\t", "b"], [0, 1, 3, 4]) == [(0, 1), (1, 3), (3, 4), (4, 5)]
    assert locate_tokens(prompt, ["é", " a", "\t", "b"], [0, 2, 4, 5]) == [(0, 1), (1, 3), (3, 4), (4, 5)]
    shifted = locate_tokens(prompt, ["<s>", "é", " a", "\t", "b"], [0, 3, 4, 6, 7])
    assert shifted == [None, (0, 1), (1, 3), (3, 4), (4, 5)]
    # byte offsets place the pieces of a split character; text matching alone cannot
    assert locate_tokens("é\t", ["\ufffd", "\ufffd", "\t"], [0, 1, 2]) == [(0, 1), None, (1, 2)]
    assert locate_tokens("é\t", ["\ufffd", "\ufffd", "\t"]) == [None, None, (1, 2)]


def test_concurrency_is_limited():
    exemplars = [Exemplar([f" w{i}", " dog"], np.zeros(2)) for i in range(6)]
    with FakeOpenAIServer(delay=0.1) as server:
        sim(server, concurrency=2).simulate(["dog"], exemplars)
        assert server.requests == 6 and server.max_in_flight == 2
        server.max_in_flight = 0
        sim(server, concurrency=6).simulate(["a dog"], exemplars)
        assert server.max_in_flight > 2  # the fake does see concurrent requests


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retries_on_server_errors_then_succeed(status):
    with FakeOpenAIServer(fail_first=2, fail_status=status) as server:
        pred = sim(server, retries=2, backoff=0.01).simulate(["dog"], [DOG])[0][0]
        assert server.requests == 3
    assert pred[1] > 8


def test_retries_exhausted_says_how_many_tries_and_the_last_error():
    with FakeOpenAIServer(fail_first=100) as server:
        with pytest.raises(EndpointError) as err:
            sim(server, retries=2, backoff=0.01).simulate(["dog"], [DOG])
        assert server.requests == 3
    text = one_line(err)
    assert "3 tries" in text and "500" in text and "failing on purpose" in text


def test_timeouts_are_retried_then_reported():
    with FakeOpenAIServer(delay=3.0) as server:
        start = time.monotonic()
        with pytest.raises(EndpointError) as err:
            sim(server, timeout=0.2, retries=1, backoff=0.01).simulate(["dog"], [DOG])
        assert time.monotonic() - start < 2.5  # two 0.2 s timeouts, not two 3 s answers (room for a loaded CI)
        assert server.requests == 2
    text = one_line(err)
    assert "timed out" in text and "2 tries" in text and "timeout=" in text


def test_connection_refused_names_the_url():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(EndpointError) as err:
        EndpointSimulator(url, "fake", retries=1, backoff=0.01).simulate(["dog"], [DOG])
    text = one_line(err)
    assert text.startswith(f"no server at {url}") and "--simulator" in text


@pytest.mark.parametrize("style", ["echo", "vllm"])
def test_no_logprobs_is_an_error_not_zeros(style):
    with FakeOpenAIServer(no_logprobs=True) as server:
        if style == "vllm":  # a non-vLLM server ignores prompt_logprobs
            server._vllm = lambda *a: {}
        with pytest.raises(EndpointError) as err:
            sim(server, style=style).simulate(["dog"], [DOG])
    assert "no logprobs" in one_line(err) or "no prompt_logprobs" in one_line(err)


def test_logprobs_of_generated_tokens_only_are_rejected():
    with FakeOpenAIServer(generated_only=True) as server, pytest.raises(EndpointError) as err:
        sim(server).simulate(["dog"], [DOG])
    assert "echo" in one_line(err)


def test_vllm_style_needs_prompt_token_ids():
    with FakeOpenAIServer(token_ids=False) as server, pytest.raises(EndpointError) as err:
        sim(server, style="vllm").simulate(["dog"], [DOG])
    assert "return_token_ids" in one_line(err)


def test_no_bin_in_the_top_logprobs_asks_for_more():
    with FakeOpenAIServer(no_bins=True) as server, pytest.raises(EndpointError) as err:
        sim(server).simulate(["dog"], [DOG])
    assert "top_logprobs" in one_line(err)


def test_bad_request_shows_the_servers_reason(server):
    with pytest.raises(EndpointError) as err:
        sim(server, top_logprobs=30).simulate(["dog"], [DOG])
    text = one_line(err)
    assert "400" in text and "max allowed: 20" in text
    assert server.requests == 1  # not retried


def test_unknown_model_is_a_404_error(server):
    with pytest.raises(EndpointError) as err:
        EndpointSimulator(server.url, "nope", **FAST).simulate(["dog"], [DOG])
    text = one_line(err)
    assert "'nope'" in text and "/models" in text


def test_api_key_is_sent_but_never_shown(monkeypatch):
    secret, wrong = "sk-right-key-0123456789", "sk-wrong-key-9876543210"
    with FakeOpenAIServer(api_key=secret) as server:
        with pytest.raises(EndpointError) as err:
            sim(server, api_key=wrong).simulate(["dog"], [DOG])
        text = one_line(err)
        assert "401" in text and "api_key" in text and wrong not in text
        monkeypatch.setenv("OPENAI_API_KEY", secret)
        s = sim(server)
        assert s.simulate(["dog"], [DOG])[0][0][1] > 8
        for shown in (s.cache_key, repr(s), str(vars(s).get("api_key", ""))):
            assert secret not in shown


def test_cache_key_names_what_changes_predictions():
    a = EndpointSimulator("http://user:pw@127.0.0.1:9/v1/?key=s3cret", "m", api_key="sk-abcdefgh")
    assert a.cache_key == f"endpoint|http://127.0.0.1:9/v1|m|echo|{PROMPT_VERSION}|top15"
    assert "pw" not in a.cache_key and "s3cret" not in a.cache_key and "sk-abcdefgh" not in a.cache_key
    b = EndpointSimulator("http://127.0.0.1:9/v1", "m", top_logprobs=20, style="vllm")
    assert b.cache_key == f"endpoint|http://127.0.0.1:9/v1|m|vllm|{PROMPT_VERSION}|top20"


def test_build_simulator_from_spec(server):
    s = build_simulator(f"endpoint:{server.url}@fake", top_logprobs=5, retries=0)
    assert isinstance(s, EndpointSimulator) and s.kind == "endpoint"
    assert (s.base_url, s.model, s.top_logprobs) == (server.url, "fake", 5)
    assert s.simulate(["dog"], [DOG])[0][0][1] > 8
    assert build_simulator("endpoint:http://h:1/v1@org/model@v2").model == "v2"  # split at the last '@'


@pytest.mark.parametrize("spec, options", [
    ("endpoint:http://127.0.0.1:8000/v1", {}),
    ("endpoint:127.0.0.1:8000@m", {}),
    ("endpoint:http://127.0.0.1:8000/v1@m", {"styel": "echo"}),
    ("endpoint:http://127.0.0.1:8000/v1@m", {"style": "chat"}),
    ("endpoint:http://127.0.0.1:8000/v1@m", {"concurrency": 0}),
])
def test_bad_specs_and_options_are_config_errors(spec, options):
    with pytest.raises(ConfigError) as err:
        build_simulator(spec, **options)
    one_line(err)


def test_simulate_works_inside_a_running_event_loop(server):
    s = sim(server)

    async def main():
        direct = await s.asimulate(["dog"], [DOG])
        return direct, s.simulate(["dog"], [DOG])  # a sync call from async code runs in a worker thread

    direct, nested = asyncio.run(main())
    np.testing.assert_array_equal(direct[0][0], nested[0][0])
    assert direct[0][0][1] > 8


def test_every_command_reaches_the_endpoint_simulator_with_its_run_options(tmp_path, capsys, monkeypatch):
    """The commands pass --dtype / --device to every simulator; an endpoint one runs on its server and must
    accept the defaults (the README's own command failed on this), and refuse a concrete value in one line."""
    from ns_dspy.cli import main
    from ns_dspy.errors import ConfigError
    from ns_dspy.exemplars import LayerData, write_store
    from ns_dspy.simulators import build_simulator

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    words = ["The", " cat", " sat", " on", " a", " mat", " dog", " ran"]
    windows = np.array([[0, 1, 2, 3, 4, 5], [0, 6, 7, 3, 4, 5]] * 3)
    acts = np.where(np.isin(windows, [1, 6]), 5.0, 0.0).astype(np.float32)[None]
    slots = {(split, "top"): (np.array([[2 * s, 2 * s + 1]]), acts[:, [2 * s, 2 * s + 1]])
             for s, split in enumerate(("train", "valid", "test"))}
    layer = LayerData(units=np.array([0]), slots=slots, stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2))})
    store = write_store(tmp_path / "store", manifest={"model": {"name": "toy"}}, strings=words, windows=windows,
                        window_split=np.array([0, 0, 1, 1, 2, 2]), layers={0: layer})
    with FakeOpenAIServer() as server:
        spec = f"endpoint:{server.url}@fake"
        assert build_simulator(spec, dtype="auto", device=None).cache_key.startswith("endpoint|")
        with pytest.raises(ConfigError, match="--dtype bfloat16 sets how a local simulator runs"):
            build_simulator(spec, dtype="bfloat16", device=None)
        assert main(["score", str(store), "0:0", "the words cat and dog", "--simulator", spec, "--table", "0"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("unit 0:0, test: score ") and float(out.split("score ")[1].split()[0]) > 0.5
        assert main(["score", str(store), "0:0", "cat", "--simulator", spec, "--dtype", "float32"]) == 2
        assert "leave --dtype out" in capsys.readouterr().err


def test_every_backend_refuses_an_option_it_does_not_take_in_one_line():
    from ns_dspy.errors import ConfigError
    from ns_dspy.simulators import build_simulator

    for spec in ("keyword", "endpoint:http://127.0.0.1:9/v1@m", "prompted:gemma-3-270m", "finetuned:gemma-3-270m"):
        with pytest.raises(ConfigError, match=r"unknown \w+ simulator option\(s\) batch_sise: it takes"):
            build_simulator(spec, batch_sise=4)  # refused before any model is loaded
    with pytest.raises(ConfigError, match="takes no argument"):
        build_simulator("keyword:x")
