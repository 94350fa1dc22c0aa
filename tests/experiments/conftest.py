"""Fixtures of the experiment tests. experiments/ is not a package: its folder goes on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ns_dspy.lms.scripted import scripted_lm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))

from experiment_world import MarkReader  # noqa: E402


@pytest.fixture(autouse=True)
def reset_dspy(dspy_defaults):
    """DSPy's settings reset after every test (tests/conftest.py)."""


@pytest.fixture
def explainer():
    """``(lm, engine)``: a real ``dspy.LM`` answering with :class:`MarkReader`."""
    reader = MarkReader()
    return scripted_lm([], default=reader)
