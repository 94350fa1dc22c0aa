"""Where ns-dspy keeps what it builds once and reuses (converted models, the default corpus)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "check_writable"]


def cache_dir(*parts: str) -> Path:
    """``$NS_DSPY_CACHE`` (default ``~/.cache/ns_dspy``) joined with ``parts``; created on demand."""
    root = Path(os.environ.get("NS_DSPY_CACHE") or Path.home() / ".cache" / "ns_dspy").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_writable(path: str | Path, option: str, *, directory: bool = False) -> Path:
    """Refuse, in one line (:class:`~ns_dspy.errors.ConfigError`) and before any work, an output that could not
    be written at the end: ``path`` is where ``option`` (e.g. ``--run``) puts a file (``directory``: a folder).
    Its nearest existing folder must take a new folder with a file in it (tried with a temporary one, removed at
    once: permissions, read-only file systems and pseudo file systems such as /proc all answer for real), a file
    path must not be a folder and a folder path not a file. Returns ``path`` as a Path."""
    import tempfile

    from .errors import ConfigError

    path = Path(path).expanduser()
    if path.is_dir() and not directory:
        raise ConfigError(f"{option} {path} is a directory: give a file name inside it")
    if path.exists() and directory and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file: give a directory")
    if path.is_file() and not os.access(path, os.W_OK):
        raise ConfigError(f"cannot write {option} {path}: it is read-only; choose another {option}")
    folder = path if directory else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(f"cannot write {option} {path} ({folder} is not a directory): choose another {option}")
    try:
        probe = Path(tempfile.mkdtemp(prefix=".ns-dspy-write-check-", dir=folder))
        try:
            (probe / "f").write_bytes(b"")
        finally:
            (probe / "f").unlink(missing_ok=True)
            probe.rmdir()
    except OSError as err:
        reason = err.strerror or str(err)
        raise ConfigError(f"cannot write {option} {path} ({folder}: {reason}): choose another {option}") from None
    return path
