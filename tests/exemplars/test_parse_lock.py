"""Parsing under one lock (``ns_dspy.parsing.PARSE_LOCK``): CPython 3.11's ``ast`` parser fails with a SystemError
when two threads parse at once, and numpy parses every ``.npy`` header with ``ast.literal_eval``. Two runners in
one process had a runner thread die of it (``tests/runs/test_reliability.py``, under load), so the store's reads and the
decomposition agent's ``literal_eval`` hold the lock."""

from __future__ import annotations

import ast
import threading

import numpy as np

from ns_dspy.agents.decomposition import parse_conditions
from ns_dspy.exemplars import store as store_module
from ns_dspy.exemplars.store import ExemplarStore
from ns_dspy.parsing import PARSE_LOCK
from ns_dspy.types import UnitId
from tests.exemplars.test_interop import make_store


def test_the_stores_npy_reads_hold_the_parse_lock(tmp_path, monkeypatch):
    make_store(tmp_path / "s")
    held = []
    real = np.load

    def load(*args, **kwargs):
        held.append(PARSE_LOCK.locked())
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module.np, "load", load)
    store = ExemplarStore.open(tmp_path / "s")
    store.train_exemplars(UnitId(2, 3))
    store.layer_stats(2)
    assert held and all(held)


def test_the_decomposition_parses_python_lists_under_the_lock(monkeypatch):
    held = []
    real = ast.literal_eval

    def literal_eval(text):
        held.append(PARSE_LOCK.locked())
        return real(text)

    monkeypatch.setattr(ast, "literal_eval", literal_eval)
    assert parse_conditions("['This neuron activates when a', 'This neuron activates when b']")
    assert held and all(held)


def test_store_reads_from_many_threads_all_succeed(tmp_path):
    make_store(tmp_path / "s")
    errors = []

    def read():
        try:
            for _ in range(20):
                ExemplarStore.open(tmp_path / "s").train_exemplars(UnitId(5, 10))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
