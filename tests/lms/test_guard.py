"""The llama.cpp guard: a library that dies in native code is checked in a child process and becomes one line.

The broken libraries here are stand-in ``llama_cpp`` packages put first on the path: one whose model load kills
its own process with SIGILL (what a miscompiled AMX build does), one that does so only with llama.cpp's extra
weight buffers on (the native AMX path), and a working one that counts its loads. The real library is checked
by the slow tests through the same guard (every in-process load passes it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ns_dspy.lms import LlamaCppEngine, LMError
from tests.fake_llama import make_library
from ns_dspy.lms.guard import REINSTALL, check_llama_cpp, library_fingerprint
from ns_dspy.machine import cpu_description

ROOT = Path(__file__).resolve().parents[2]

@pytest.fixture
def gguf(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF-not-really")
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_library_that_dies_with_sigill_is_one_line_and_no_verdict(tmp_path, gguf, cache, monkeypatch, fake_llama_cpp):
    fake_llama_cpp("sigill")
    assert library_fingerprint()["version"] == "0.0-fake"
    with pytest.raises(LMError) as err:
        check_llama_cpp(gguf)
    message = str(err.value)
    assert "crashed with SIGILL" in message and REINSTALL in message and "\n" not in message
    assert not list((cache / "lms" / "checks").glob("*.json"))  # a failure is never cached: checked again next time
    with pytest.raises(LMError, match="SIGILL"):
        LlamaCppEngine(gguf).check()
    assert "llama_cpp" not in sys.modules  # this process never loaded the broken library


def test_broken_library_exits_2_with_one_line_from_the_commands(tmp_path, gguf, cache):
    from tests.runs.test_runner import _store

    store = _store(tmp_path)
    fake = make_library(tmp_path, "sigill")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(ROOT)]), "NS_DSPY_CACHE": str(cache)}
    run = tmp_path / "run.sqlite"
    explain = subprocess.run([sys.executable, "-m", "ns_dspy.cli", "explain", "--store", str(store.path),
                              "--neurons", "0:1", "--lm", f"local:{gguf}", "--simulator", "keyword", "--run", str(run),
                              "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert explain.returncode == 2, explain.stderr
    lines = [line for line in explain.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ns-dspy: error:") and "SIGILL" in lines[0]
    assert not run.exists()  # checked before the run file was made
    doctor = subprocess.run([sys.executable, "-m", "ns_dspy.cli", "doctor", "-q", "--lm", f"local:{gguf}"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert doctor.returncode == 1
    assert any(line.startswith("FAIL llama.cpp decode:") and "SIGILL" in line for line in doctor.stdout.splitlines())


def test_a_native_amx_build_falls_back_to_plain_weight_buffers(tmp_path, gguf, cache, monkeypatch, fake_llama_cpp):
    loads = tmp_path / "loads.jsonl"
    monkeypatch.setenv("FAKE_LLAMA_LOADS", str(loads))
    fake_llama_cpp("amx")
    verdict = check_llama_cpp(gguf)
    assert verdict["ok"] and verdict["extra_buffers"] is False and "SIGILL" in verdict["note"]
    engine = LlamaCppEngine(gguf, n_ctx=512)
    from dspy.lm15 import Config, Message, Request

    reply = engine.complete(Request(model="local/x", messages=(Message.user("hi"),), config=Config(max_tokens=4)))
    assert reply.text == "fine"  # loaded in this process, with the extra buffers off, and alive
    seen = [json.loads(line) for line in loads.read_text().splitlines()]
    assert [s["extra"] for s in seen] == [True, False, False]  # probe crashed, probe passed, engine loaded plain
    assert seen[-1]["pid"] == os.getpid() and seen[0]["pid"] != os.getpid()
    import llama_cpp.llama_cpp as lib

    assert lib.llama_model_default_params().use_extra_bufts is True  # the switch is restored after the load


def test_a_pass_is_cached_per_library_and_cpu(tmp_path, gguf, cache, monkeypatch, fake_llama_cpp):
    loads = tmp_path / "loads.jsonl"
    monkeypatch.setenv("FAKE_LLAMA_LOADS", str(loads))
    fake_llama_cpp("ok")
    first = check_llama_cpp(gguf, n_threads=1)
    assert first["ok"] and first["extra_buffers"] and first["prompt_tokens"] > 10
    assert first["key"]["cpu"] == cpu_description()
    check_llama_cpp(gguf, n_threads=1)
    assert len(loads.read_text().splitlines()) == 1  # the second check read the verdict
    check_llama_cpp(gguf, n_threads=2)
    assert len(loads.read_text().splitlines()) == 2  # other load settings: checked again
    lib = tmp_path / "fake-llama" / "ok" / "llama_cpp" / "lib" / "libllama.so"
    lib.write_bytes(b"rebuilt")
    check_llama_cpp(gguf, n_threads=1)
    assert len(loads.read_text().splitlines()) == 3  # another build of the library: checked again


def test_no_library_names_the_portable_install(tmp_path, gguf, monkeypatch):
    import importlib.machinery

    real = importlib.machinery.PathFinder.find_spec
    monkeypatch.setattr(importlib.machinery.PathFinder, "find_spec",
                        classmethod(lambda cls, name, *a: None if name == "llama_cpp" else real(name, *a)))
    with pytest.raises(LMError, match="requirements/local.txt"):
        check_llama_cpp(gguf)
