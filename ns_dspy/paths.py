"""Where ns-dspy keeps what it builds once and reuses (converted models, the default corpus)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> Path:
    """``$NS_DSPY_CACHE`` (default ``~/.cache/ns_dspy``) joined with ``parts``; created on demand."""
    root = Path(os.environ.get("NS_DSPY_CACHE") or Path.home() / ".cache" / "ns_dspy").expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
