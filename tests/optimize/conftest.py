"""Fixtures of the optimize tests: a fresh DSPy cache and settings per test, and the toy store."""

from __future__ import annotations

import pytest
from toy_neurons import toy_store


@pytest.fixture(autouse=True)
def fresh_dspy(dspy_memory_cache):
    """A fresh in-memory DSPy cache per test (no disk writes, no answers shared between tests), settings reset
    afterwards (tests/conftest.py)."""


@pytest.fixture
def store(tmp_path):
    return toy_store(tmp_path)
