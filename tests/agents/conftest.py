"""Fakes for the agent tests: a scripted LM (raw answer text per call, records every prompt) and a fake
embedder with exact vectors. DSPy's global settings are reset after every test."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents import Embedder
from ns_dspy.agents.embedders import normalise_rows
from ns_dspy.lms.scripted import scripted_lm


@pytest.fixture(autouse=True)
def reset_dspy_settings(dspy_defaults):
    """DSPy's settings reset after every test (tests/conftest.py)."""


@pytest.fixture
def scripted():
    """``make(script, default=...) -> (lm, engine)``: a real ``dspy.LM`` over a :class:`ScriptedEngine`."""

    return scripted_lm


class TableEmbedder(Embedder):
    """Exact vectors from a table (rows normalised); counts its calls."""

    def __init__(self, table: dict[str, list[float]]):
        self.table, self.calls = table, 0

    @property
    def name(self) -> str:
        return "table"

    def embed(self, texts):
        self.calls += 1
        dim = len(next(iter(self.table.values())))
        if not texts:
            return np.zeros((0, dim), dtype=np.float32)
        return normalise_rows(np.array([self.table[t] for t in texts], dtype=np.float32))


@pytest.fixture
def table_embedder():
    return TableEmbedder
