"""Headless Chromium for the report tests: find it, install Debian's package when missing, render pages.

CI runs on a fresh Debian machine as root with Debian's package archive reachable, so a missing browser is
installed with ``apt-get install chromium`` (``apt-get update`` first when the package lists are missing or
stale). A file lock serialises concurrent test sessions; apt's own lock is waited for. Where nothing can be
installed (not root, no apt, no sudo), :func:`ensure_chromium` says exactly why, for ``pytest.skip``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["find_chromium", "ensure_chromium", "screenshot", "dump_dom"]

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PACKAGES = ("chromium", "fonts-dejavu-core")  # fonts: a bare container may have none to draw text with
LOCK = Path(tempfile.gettempdir()) / "ns-dspy-chromium-install.lock"
APT_OPTIONS = ["-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]


def find_chromium() -> str | None:
    override = os.environ.get("NS_DSPY_CHROMIUM")
    if override:
        return override if Path(override).is_file() else None
    return next(filter(None, map(shutil.which, NAMES)), None)


def _apt_prefix() -> list[str] | None:
    if not shutil.which("apt-get"):
        return None
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    return None


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"{' '.join(cmd[:3])} timed out after {timeout:.0f} s")


def ensure_chromium(timeout: float = 900) -> tuple[str | None, str]:
    """``(path, "")`` of a Chromium binary, installing Debian's package if needed; ``(None, reason)`` when it
    cannot be installed here (no apt, not root, or apt-get failed: the reason quotes apt's error)."""
    found = find_chromium()
    if found:
        return found, ""
    if os.environ.get("NS_DSPY_CHROMIUM"):
        return None, f"NS_DSPY_CHROMIUM={os.environ['NS_DSPY_CHROMIUM']} is not a file"
    prefix = _apt_prefix()
    if prefix is None:
        why = "apt-get is missing" if not shutil.which("apt-get") else "not root and no passwordless sudo"
        return None, (f"Chromium is not installed and cannot be installed here ({why}): "
                      "run `apt-get install chromium` (Debian) or set NS_DSPY_CHROMIUM to a Chromium binary")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing it right now
        found = find_chromium()
        if found:
            return found, ""
        install = prefix + ["apt-get", "install", *APT_OPTIONS, *PACKAGES]
        result = _run(install, timeout)
        if result.returncode != 0:  # a fresh machine has no (or stale) package lists
            update = _run(prefix + ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=600"], timeout)
            if update.returncode != 0:
                return None, f"apt-get update failed ({update.returncode}): {_last(update.stderr)}"
            result = _run(install, timeout)
        if result.returncode != 0:
            return None, f"apt-get install {' '.join(PACKAGES)} failed ({result.returncode}): {_last(result.stderr)}"
    found = find_chromium()
    return (found, "") if found else (None, f"apt-get installed {PACKAGES[0]} but none of {NAMES} is on PATH")


def _last(text: str) -> str:
    return " ".join(text.strip().splitlines()[-3:])[-400:]


def _flags(profile: Path) -> list[str]:
    flags = ["--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
             "--disable-dev-shm-usage", "--mute-audio", f"--user-data-dir={profile}", "--virtual-time-budget=3000"]
    if os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return flags


def _browser(binary: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="ns-dspy-chromium-") as profile:
        result = subprocess.run([binary, *_flags(Path(profile)), *args], capture_output=True, text=True,
                                timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited {result.returncode}: {result.stderr.strip()[-600:]}")
    return result


def screenshot(binary: str, page: Path, png: Path, *, size: tuple[int, int] = (1280, 1600),
               timeout: float = 180) -> Path:
    """Render ``page`` headless into ``png`` (``size`` = window width, height). Every compositor stage (raster
    included) runs before the frame is drawn: without it a loaded machine once got a screenshot whose last line
    of text was not yet painted."""
    _browser(binary, [f"--window-size={size[0]},{size[1]}", "--run-all-compositor-stages-before-draw",
                      f"--screenshot={png}", page.resolve().as_uri()], timeout)
    return png


def dump_dom(binary: str, page: Path, *, timeout: float = 180) -> str:
    """The page's DOM serialised by the browser after it loaded and ran its scripts."""
    return _browser(binary, ["--dump-dom", page.resolve().as_uri()], timeout).stdout
