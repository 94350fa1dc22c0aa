"""What this machine is: its CPU (:func:`cpu_description`, for llama.cpp's decode check and the dtype choice) and
whether another of its processes is alive (what lets a worker take over a dead worker's work at once).

A process id means something only within one machine boot and one PID namespace (two containers may share a
hostname and reuse ids), so the id is always paired with :func:`process_space`.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["cpu_description", "process_space", "pid_alive"]


def cpu_description() -> dict:
    """This CPU's model name and feature flags (Linux ``/proc/cpuinfo``: x86 ``flags``, ARM ``Features``;
    elsewhere ``platform`` and no flags)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = value.split()
    except OSError:
        pass
    return {"machine": platform.machine(), "model": model, "flags": flags}


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
