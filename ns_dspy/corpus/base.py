"""The text-source plug-in point and the rules every source shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Iterable, Iterator

from ns_dspy.errors import CorpusError

__all__ = ["TextSource", "nonempty_documents", "record_text"]

#: Keys under which chat datasets (LMSYS-Chat-1M, ShareGPT-style dumps) keep a list of {role, content} turns.
CONVERSATION_KEYS = ("conversation", "messages")


class TextSource(ABC):
    """A finite or streaming sequence of documents (plain strings).

    Contract:

    * :meth:`documents` is deterministic: iterating twice yields the same documents in the same order.
    * Empty and whitespace-only documents are never yielded; a source that yields no document at all raises
      :class:`~ns_dspy.errors.CorpusError` ("corpus X is empty ...") when iteration finishes.
    * :meth:`describe` returns a small JSON-serialisable dict with at least ``kind`` and ``location`` (and, for
      the default corpus, each source with its licence); it is recorded in exemplar-store manifests.
    * Opening a source is cheap; user mistakes (bad path, missing field, malformed line) raise ``CorpusError``
      with a one-line message, at the latest while iterating.
    """

    @abstractmethod
    def documents(self) -> Iterator[str]:
        """Yield the documents in a fixed order."""

    @abstractmethod
    def describe(self) -> dict:
        """A small JSON-serialisable description: ``kind``, ``location`` and source-specific details."""

    def __repr__(self) -> str:
        d = self.describe()
        return f"{type(self).__name__}({d.get('location')!r})"


def nonempty_documents(docs: Iterable[str], location: str) -> Iterator[str]:
    """Yield the non-blank documents of ``docs``; raise ``CorpusError`` if there were none."""
    n = 0
    for doc in docs:
        if doc and not doc.isspace():
            n += 1
            yield doc
    if n == 0:
        raise CorpusError(f"corpus {location} is empty (no non-blank document); point it at a file or dataset with text")


def record_text(obj: Any, text_field: str, where: str) -> str | None:
    """The document text of one record: a string, ``obj[text_field]``, or a joined conversation.

    A conversation (``conversation``/``messages`` list of ``{role, content}`` dicts) becomes ``"role: content"``
    lines. ``None`` means "no text" (a null cell) and is skipped by the caller. ``where`` names the record
    (file and line) in error messages.
    """
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict):
        raise CorpusError(f"{where} is a {type(obj).__name__}, expected a string or an object with a {text_field!r} field")
    if text_field in obj:
        value = obj[text_field]
        if value is None or isinstance(value, str):
            return value
        raise CorpusError(f"{where}: field {text_field!r} is a {type(value).__name__}, not a string; pass the text field with text_field=")
    for key in CONVERSATION_KEYS:
        turns = obj.get(key)
        if isinstance(turns, list):
            return join_conversation(turns, f"{where}: {key!r}")
    keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
    raise CorpusError(f"{where} has no {text_field!r} field (keys: {keys}); pass the text field with text_field=")


def join_conversation(turns: list, where: str) -> str:
    """``"role: content"`` lines of a chat transcript."""
    lines = []
    for turn in turns:
        if not isinstance(turn, dict) or "content" not in turn:
            raise CorpusError(f"{where} holds a turn that is not a {{role, content}} object")
        content = turn["content"]
        if content is None:
            continue
        lines.append(f"{turn.get('role') or 'unknown'}: {content}")
    return "\n".join(lines)
