"""SQLite steps that a concurrent opener can make fail at once, retried.

Switching a new file to WAL, or creating its tables, while another process or thread opens the same file fails
immediately with "database is locked": SQLite does not call the busy handler there, whatever the connection's
timeout. Every SQLite file that several workers open (run store, simulation cache) goes through
:func:`retry_locked` for those steps.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["retry_locked"]

T = TypeVar("T")


def retry_locked(step: Callable[[], T], seconds: float = 60.0) -> T:
    """Run ``step``, retrying with backoff (10 ms doubling to 0.5 s) while SQLite says the database is locked or
    busy, for at most ``seconds``; any other error, or the last one after the deadline, is raised."""
    deadline, wait = time.monotonic() + seconds, 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as err:
            text = str(err)
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 0.5)
