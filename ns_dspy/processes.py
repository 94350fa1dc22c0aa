"""Whether another process of this machine is alive: what lets a worker take over a dead worker's work at once.

A process id means something only within one machine boot and one PID namespace (two containers may share a
hostname and reuse ids), so the id is always paired with :func:`process_space`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_space", "pid_alive"]


def process_space() -> str | None:
    """Where this process's id means something: the machine's boot and its PID namespace (Linux), else None.
    Two workers in one space can tell whether the other's process is alive; a hostname alone cannot (two
    containers may share one)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    """True unless no process ``pid`` exists (in this PID namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
