"""Building blocks of the default corpus: the source registry, tool calls and document chunking.

A default-corpus source is a function that returns a :class:`SourceBuild` (documents plus provenance) or
raises :class:`SourceUnavailable` when a tool, package or the network is missing; the assembler then logs a
warning and goes on with the remaining sources. Sources register themselves with :func:`register_source`
in :data:`SOURCES` (a :class:`~ns_dspy.registry.Registry`).
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ns_dspy.errors import CorpusError
from ns_dspy.registry import Registry

__all__ = ["SourceBuild", "SourceUnavailable", "register_source", "SOURCES", "run_tool", "split_document"]

logger = logging.getLogger(__name__)

#: Longer texts are cut at paragraph (blank-line) boundaries into pieces of about equal size below this.
MAX_DOCUMENT_CHARS = 8000


class SourceUnavailable(Exception):
    """A default-corpus source cannot be built here (tool, package or network missing); it is skipped."""


@dataclass
class SourceBuild:
    """The documents of one default-corpus source and what ``sources.json`` records about it.

    Attributes:
        name: short source id, also written as ``source`` on each corpus line.
        licence: licence or redistribution terms of the text.
        origin: where the text came from (package and version, path).
        documents: the documents, already cleaned and split.
        extra: small JSON-serialisable details (e.g. genre counts) merged into the ``sources.json`` entry.
    """

    name: str
    licence: str
    origin: str
    documents: list[str]
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        nbytes = sum(len(d.encode("utf-8")) for d in self.documents)
        return {"name": self.name, "licence": self.licence, "origin": self.origin,
                "bytes": nbytes, "documents": len(self.documents), **self.extra}


SourceFn = Callable[[], SourceBuild]
SOURCES: Registry[SourceFn] = Registry("default-corpus source", error=CorpusError)


def register_source(name: str) -> Callable[[SourceFn], SourceFn]:
    """Decorator: register a default-corpus source function under ``name`` (a taken name is refused)."""
    return SOURCES.register(name)


def run_tool(args: list[str], cwd: Path, *, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run an external tool; any failure (missing, timeout, non-zero exit) becomes ``SourceUnavailable``."""
    if shutil.which(args[0]) is None:
        raise SourceUnavailable(f"{args[0]} is not installed")
    logger.debug("running %s in %s", " ".join(args), cwd)
    try:
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SourceUnavailable(f"{' '.join(args)} timed out after {timeout:.0f} s") from None
    except OSError as e:
        raise SourceUnavailable(f"{' '.join(args)} failed: {e}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
        raise SourceUnavailable(f"{' '.join(args)} exited with {proc.returncode}: {lines[-1] if lines else 'no output'}")
    return proc


_BLANK_LINES = re.compile(r"(\n[ \t]*\n\s*)")


def split_document(text: str, max_chars: int = MAX_DOCUMENT_CHARS) -> list[str]:
    """Cut ``text`` into pieces of roughly equal size, each at most about ``max_chars``, at blank lines.

    A short text stays whole. A paragraph longer than ``max_chars`` is cut at line ends instead; a single
    line longer than that stays whole. The text between cuts is kept verbatim; blank pieces are dropped.
    """
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    parts = _BLANK_LINES.split(text)  # paragraph, separator, paragraph, ...
    segments: list[str] = []
    for i in range(0, len(parts), 2):
        para, sep = parts[i], parts[i + 1] if i + 1 < len(parts) else ""
        if len(para) > max_chars:
            lines = para.splitlines(keepends=True)
            lines[-1] += sep
            segments.extend(lines)
        else:
            segments.append(para + sep)
    target = len(text) / -(-len(text) // max_chars)
    pieces, current, size = [], [], 0
    for seg in segments:
        if current and (size + len(seg) > max_chars or size >= target):
            pieces.append("".join(current))
            current, size = [], 0
        current.append(seg)
        size += len(seg)
    if current:
        pieces.append("".join(current))
    return [p.strip() for p in pieces if p.strip()]
