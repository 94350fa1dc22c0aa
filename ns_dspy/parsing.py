"""One lock for Python-syntax parsing in threads.

CPython 3.11's ``ast.parse`` (and so ``ast.literal_eval``) is not safe when two threads parse at once: one of
them can fail with ``SystemError: AST constructor recursion depth mismatch`` (measured: two runners on one run file
in one process, ``tests/runs/test_reliability.py``: a runner thread died of it under load). numpy parses every ``.npy``
header that way, so the exemplar store's array reads race each other and any other parse. ns-dspy's own parsing
holds :data:`PARSE_LOCK`: the store's ``np.load`` calls and the decomposition agent's ``literal_eval``. Parsing
inside DSPy cannot take it; the agents that call DSPy catch that ``SystemError`` as an unusable answer instead.
"""

from __future__ import annotations

import threading

__all__ = ["PARSE_LOCK"]

PARSE_LOCK = threading.Lock()
"""Held while ns-dspy reads a ``.npy`` header or ``literal_eval``s an answer (never held while waiting on anything
else, so it cannot deadlock)."""
