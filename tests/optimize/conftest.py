"""Fixtures of the optimize tests: a fresh DSPy cache and settings per test, and the toy store."""

from __future__ import annotations

import copy

import dspy
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG
from toy_neurons import toy_store


@pytest.fixture(autouse=True)
def fresh_dspy():
    """A fresh in-memory DSPy cache per test (no disk writes, no answers shared between tests)."""
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    yield
    dspy.cache = saved
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


@pytest.fixture
def store(tmp_path):
    return toy_store(tmp_path)
