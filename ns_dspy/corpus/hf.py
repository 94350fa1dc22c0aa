"""Hugging Face ``datasets`` corpora, streamed: ``hf:NAME[:CONFIG][@SPLIT]``."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Iterator

from ns_dspy.corpus.base import TextSource, nonempty_documents, record_text
from ns_dspy.errors import CorpusError

__all__ = ["HFSpec", "HuggingFaceCorpus", "parse_hf_spec", "HF_PREFIX"]

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
INSTALL_HINT = "pip install 'ns-dspy[hf]'"


@dataclass(frozen=True)
class HFSpec:
    """A parsed ``hf:`` spec.

    Attributes:
        name: dataset repository id, e.g. ``HuggingFaceFW/fineweb``.
        config: dataset configuration (``sample-10BT``) or ``None`` for the default one.
        split: split to stream; ``train`` unless given after ``@``.
    """

    name: str
    config: str | None = None
    split: str = "train"

    def __str__(self) -> str:
        return f"{HF_PREFIX}{self.name}" + (f":{self.config}" if self.config else "") + f"@{self.split}"


def parse_hf_spec(spec: str) -> HFSpec:
    """Parse ``hf:NAME[:CONFIG][@SPLIT]``; raise ``CorpusError`` on a malformed spec."""
    if not spec.startswith(HF_PREFIX):
        raise CorpusError(f"{spec!r} is not a Hugging Face spec; write hf:NAME[:CONFIG][@SPLIT]")
    rest, at, split = spec[len(HF_PREFIX):].partition("@")
    name, colon, config = rest.partition(":")
    if not name or (colon and not config) or (at and not split) or ":" in config or "@" in split:
        raise CorpusError(f"malformed corpus spec {spec!r}; write hf:NAME[:CONFIG][@SPLIT], e.g. hf:HuggingFaceFW/fineweb:sample-10BT@train")
    return HFSpec(name=name, config=config or None, split=split or "train")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


class HuggingFaceCorpus(TextSource):
    """A Hugging Face dataset streamed with ``load_dataset(..., streaming=True)`` (no full download).

    Documents are ``row[text_field]``, or the joined ``conversation``/``messages`` turns for chat datasets
    such as ``lmsys/lmsys-chat-1m``. Iteration order is the dataset's own (no shuffling), so it is deterministic.
    """

    def __init__(self, spec: str | HFSpec, *, text_field: str = "text") -> None:
        self.spec = spec if isinstance(spec, HFSpec) else parse_hf_spec(spec)
        self.text_field = text_field
        if importlib.util.find_spec("datasets") is None:
            raise CorpusError(f"corpus {self.spec} needs the Hugging Face datasets package; {INSTALL_HINT}")

    def _rows(self) -> Iterator[dict]:
        from datasets import load_dataset  # lazy: heavy, optional

        s = self.spec
        logger.info("streaming %s", s)
        try:
            ds = load_dataset(s.name, s.config, split=s.split, streaming=True)
            yield from ds
        except CorpusError:
            raise
        except Exception as e:  # network, auth, missing dataset/config/split
            raise CorpusError(f"cannot stream {s} ({_one_line(e)}); check the name, config, split, network and HF_TOKEN") from None

    def documents(self) -> Iterator[str]:
        def texts() -> Iterator[str]:
            for i, row in enumerate(self._rows()):
                text = record_text(row, self.text_field, f"{self.spec} row {i}")
                if text is not None:
                    yield text

        return nonempty_documents(texts(), str(self.spec))

    def describe(self) -> dict:
        s = self.spec
        return {"kind": "hf", "location": str(s), "name": s.name, "config": s.config, "split": s.split, "text_field": self.text_field}
