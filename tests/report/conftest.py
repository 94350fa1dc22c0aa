"""Fixtures of the report tests: real run files made in report_world's toy world; DSPy settings reset."""

from __future__ import annotations

import pytest
from dspy_state import reset_settings
from report_world import explain, toy_store


@pytest.fixture(autouse=True)
def reset_dspy(dspy_defaults):
    """DSPy's settings reset after every test (tests/conftest.py)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"refine": path, "norefine": path, "baseline": path}``: real run files of two units each."""
    base = tmp_path_factory.mktemp("report-runs")
    store = toy_store(base / "store")
    try:
        return {"refine": explain(store, base / "store.explain.sqlite"),
                "norefine": explain(store, base / "store.norefine.sqlite", refine=False),
                "baseline": explain(store, base / "store.baseline.sqlite", baseline=True, baseline_k=3)}
    finally:
        reset_settings()
