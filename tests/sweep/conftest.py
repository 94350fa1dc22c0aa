"""Fixtures of the sweep tests: the toy world of ``sweep_world`` (store, chat server, embedder), a private
ns-dspy cache per test and DSPy's settings reset afterwards."""

from __future__ import annotations

import pytest
from sweep_world import UNITS, ToyServer, make_store


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch, dspy_memory_cache):
    """A private simulation cache, and explain's LM cache in memory: nothing shared (tests/conftest.py)."""
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "store")


@pytest.fixture
def server():
    with ToyServer() as s:
        yield s


@pytest.fixture
def sweep_argv(store, server):
    """``argv(*extra)``: an ``ns-dspy sweep`` command line on the toy world."""

    def argv(*extra: str) -> list[str]:
        return ["sweep", "--store", str(store.path), "--lm", server.lm, "--simulator", "keyword", "--embedder",
                "sweep-words", "--neurons", UNITS, "--seed", "0", "-q", *extra]

    return argv
