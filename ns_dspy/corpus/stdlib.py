"""What every Python install has: standard-library source code and the language reference topics."""

from __future__ import annotations

import logging
import platform
import random
import sysconfig
from pathlib import Path

from ns_dspy.corpus.sources import SourceBuild, register_source, split_document

__all__ = ["stdlib_files", "STDLIB_CAP_BYTES"]

logger = logging.getLogger(__name__)

STDLIB_LICENCE = "PSF-2.0 (Python Software Foundation License Version 2)"
#: Cap on standard-library code (the topics add ~0.5 MB) so that code does not dominate the default corpus.
STDLIB_CAP_BYTES = 3_500_000
#: Single files above this are skipped (generated tables rather than code people write).
MAX_FILE_BYTES = 250_000
#: Directories skipped anywhere under the standard library: tests, installed packages, the IDE, codec tables,
#: and pydoc_data (its topics are a separate part of this source).
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "encodings", "pydoc_data", "__pycache__"})


def stdlib_files(root: Path, cap_bytes: int = STDLIB_CAP_BYTES) -> list[Path]:
    """Standard-library ``.py`` files under ``root``, a seeded sample of at most ``cap_bytes``, sorted by path.

    The sample is drawn in a fixed random order (``random.Random(0)`` over the sorted paths) so a capped
    selection spans the whole library instead of stopping at the letter ``m``.
    """
    candidates = []
    for p in sorted(root.rglob("*.py"), key=lambda q: q.relative_to(root).as_posix()):
        rel = p.relative_to(root)
        if EXCLUDED_DIRS.intersection(rel.parts[:-1]) or rel.parts[0].startswith("config-") or not p.is_file():
            continue
        size = p.stat().st_size
        if 0 < size <= MAX_FILE_BYTES:
            candidates.append((p, size))
    random.Random(0).shuffle(candidates)
    chosen, total = [], 0
    for p, size in candidates:
        if total + size <= cap_bytes:
            chosen.append(p)
            total += size
    return sorted(chosen, key=lambda q: q.relative_to(root).as_posix())


def topic_documents() -> list[str]:
    """The language-reference texts that ``help()`` shows (``pydoc_data.topics``), one per topic."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # pragma: no cover - stripped-down interpreters
        logger.warning("stdlib: pydoc_data.topics is missing; the language reference topics are left out")
        return []
    return [piece for key in sorted(topics) for piece in split_document(topics[key])]


@register_source("stdlib")
def build_stdlib() -> SourceBuild:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    code = [piece for p in files for piece in split_document(p.read_text(encoding="utf-8", errors="replace"))]
    topics = topic_documents()
    logger.info("stdlib: %d .py files -> %d documents; pydoc topics -> %d documents", len(files), len(code), len(topics))
    return SourceBuild(
        name="stdlib", licence=STDLIB_LICENCE,
        origin=f"Python {platform.python_version()} standard library (.py files, capped) and pydoc_data.topics",
        documents=code + topics,
        extra={"files": len(files), "code_documents": len(code), "topic_documents": len(topics)},
    )
