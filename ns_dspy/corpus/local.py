"""Corpora on local disk: ``.txt``, ``.jsonl``, ``.json``, ``.parquet`` files, or a directory of them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterator

from ns_dspy.corpus.base import CONVERSATION_KEYS, TextSource, nonempty_documents, record_text
from ns_dspy.errors import CorpusError
from ns_dspy.registry import Registry

__all__ = ["LocalCorpus", "SUPPORTED_SUFFIXES"]

logger = logging.getLogger(__name__)

Reader = Callable[[Path, str], Iterator["str | None"]]
_READERS: Registry[Reader] = Registry("corpus file extension", error=CorpusError)
"""File suffix -> reader yielding a file's documents (None for a record without text)."""

PARQUET_BATCH_ROWS = 1024


def _open_text(path: Path):
    return path.open("r", encoding="utf-8", newline=None)


def _utf8_error(path: Path) -> CorpusError:
    return CorpusError(f"{path} is not UTF-8 text; convert it to UTF-8")


@_READERS.register(".txt")
def _read_txt(path: Path, text_field: str) -> Iterator[str | None]:
    try:
        yield path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise _utf8_error(path) from None


@_READERS.register(".jsonl")
def _read_jsonl(path: Path, text_field: str) -> Iterator[str | None]:
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise CorpusError(f"{path} line {lineno} is not valid JSON ({e.msg}); each line must be one JSON object") from None
                yield record_text(obj, text_field, f"{path} line {lineno}")
    except UnicodeDecodeError:
        raise _utf8_error(path) from None


@_READERS.register(".json")
def _read_json(path: Path, text_field: str) -> Iterator[str | None]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except json.JSONDecodeError as e:
        raise CorpusError(f"{path} line {e.lineno} is not valid JSON ({e.msg}); fix the file") from None
    if not isinstance(data, list):
        raise CorpusError(f"{path} holds a JSON {type(data).__name__}; a .json corpus must be a list of strings or objects")
    for i, obj in enumerate(data):
        yield record_text(obj, text_field, f"{path} item {i}")


@_READERS.register(".parquet")
def _read_parquet(path: Path, text_field: str) -> Iterator[str | None]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a core dependency
        raise CorpusError("reading .parquet corpora needs pyarrow; pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError on a bad file
        raise CorpusError(f"{path} is not a readable Parquet file ({type(e).__name__}); fix or replace it") from None
    columns = pf.schema_arrow.names
    column = text_field if text_field in columns else next((k for k in CONVERSATION_KEYS if k in columns), None)
    if column is None:
        raise CorpusError(f"{path} has no {text_field!r} column (columns: {', '.join(columns[:8])}); pass the text column with text_field=")
    row = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[column]):
        for value in batch.column(0).to_pylist():
            row += 1
            if column != text_field and value is not None:
                value = {column: value}
            yield record_text(value, text_field, f"{path} row {row}") if value is not None else None


SUPPORTED_SUFFIXES = tuple(sorted(_READERS))


def _files(root: Path) -> list[Path]:
    """The corpus files under directory ``root``, sorted by relative path; hidden files are skipped."""
    found = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() in _READERS:
            found.append(rel)
        else:
            logger.debug("skipping %s: not one of %s", p, ", ".join(SUPPORTED_SUFFIXES))
    return [root / rel for rel in sorted(found, key=lambda r: r.as_posix())]


class LocalCorpus(TextSource):
    """A local file or a directory of files (recursively, sorted by relative path).

    ``.txt``: the whole file is one document. ``.jsonl``: one JSON object per line, the document is
    ``obj[text_field]`` or a joined ``conversation``/``messages`` list. ``.json``: a list of strings or such
    objects. ``.parquet``: column ``text_field``, read in row-group batches.
    """

    def __init__(self, path: str | Path, *, text_field: str = "text") -> None:
        path = Path(path).expanduser()
        if not path.exists():
            raise CorpusError(
                f"corpus path {path} does not exist; pass an existing {'/'.join(SUPPORTED_SUFFIXES)} file or directory, "
                "'default', or 'hf:NAME[:CONFIG][@SPLIT]'"
            )
        if path.is_file() and path.suffix.lower() not in _READERS:
            raise CorpusError(f"{path} has unknown extension {path.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
        self.path = path.resolve()
        self.text_field = text_field

    def files(self) -> list[Path]:
        return [self.path] if self.path.is_file() else _files(self.path)

    def _raw(self) -> Iterator[str | None]:
        for f in self.files():
            logger.debug("reading %s", f)
            yield from _READERS[f.suffix.lower()](f, self.text_field)

    def documents(self) -> Iterator[str]:
        return nonempty_documents((d for d in self._raw() if d is not None), str(self.path))

    def describe(self) -> dict:
        kind = "directory" if self.path.is_dir() else self.path.suffix.lower().lstrip(".")
        return {"kind": "local", "location": str(self.path), "format": kind, "text_field": self.text_field}
