"""Text sources: the documents whose tokens activations are recorded on.

``open_corpus(spec)`` turns a user-facing spec into a :class:`TextSource`:

* ``"default"``: the offline default corpus (Brown corpus, Python docs, Python stdlib), built once and cached;
* a local path: a ``.txt``, ``.jsonl``, ``.json`` or ``.parquet`` file, or a directory of them;
* ``"hf:NAME[:CONFIG][@SPLIT]"``: a Hugging Face dataset, streamed (needs ``pip install 'ns-dspy[hf]'``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ns_dspy.corpus.base import TextSource
from ns_dspy.corpus.default import DEFAULT_CORPUS, DefaultCorpus, assemble_default_corpus
from ns_dspy.corpus.hf import HF_PREFIX, HuggingFaceCorpus, parse_hf_spec
from ns_dspy.corpus.local import LocalCorpus
from ns_dspy.errors import CorpusError

__all__ = [
    "TextSource",
    "open_corpus",
    "DEFAULT_CORPUS",
    "DefaultCorpus",
    "LocalCorpus",
    "HuggingFaceCorpus",
    "assemble_default_corpus",
    "parse_hf_spec",
]


def open_corpus(spec: str | os.PathLike, *, text_field: str = "text") -> TextSource:
    """The :class:`TextSource` for ``spec``: ``"default"``, a local path, or ``"hf:NAME[:CONFIG][@SPLIT]"``.

    ``text_field`` names the text field/column of jsonl, json, parquet and Hugging Face records. Opening the
    default corpus builds its cache on first use (seconds; uses npm and apt-get if present).
    """
    if isinstance(spec, os.PathLike):
        return LocalCorpus(Path(spec), text_field=text_field)
    if not isinstance(spec, str) or not spec.strip():
        raise CorpusError(f"corpus spec {spec!r} is empty; pass 'default', a path, or 'hf:NAME[:CONFIG][@SPLIT]'")
    if spec == DEFAULT_CORPUS:
        return DefaultCorpus()
    if spec.startswith(HF_PREFIX):
        return HuggingFaceCorpus(spec, text_field=text_field)
    return LocalCorpus(spec, text_field=text_field)
