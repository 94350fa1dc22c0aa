"""DSPy's global state in tests: its settings back to DSPy's defaults, and a private in-memory response cache.

Used by the fixtures ``dspy_defaults`` and ``dspy_memory_cache`` of ``tests/conftest.py`` (which directories
turn on for every test in their own conftest.py), and directly by module-scoped fixtures.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager


def reset_settings() -> None:
    """``dspy.configure`` with DSPy's default configuration (no LM, no adapter, ...)."""
    import dspy
    from dspy.dsp.utils.settings import DEFAULT_CONFIG

    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


@contextmanager
def memory_cache() -> Iterator[None]:
    """A fresh in-memory DSPy response cache (no disk writes, nothing shared with other tests) inside the block;
    the cache in use before is put back afterwards."""
    import dspy

    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    try:
        yield
    finally:
        dspy.cache = saved
