"""Fixtures of the report tests: real run files made in report_world's toy world; DSPy settings reset."""

from __future__ import annotations

import copy

import dspy
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG
from report_world import explain, toy_store


@pytest.fixture(autouse=True)
def reset_dspy():
    yield
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


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
        dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
