"""Adapter folders of the fine-tuned simulator: what one holds, writing one (:func:`save_adapter`), finding one
(a folder or the name of a shipped adapter, :func:`resolve_adapter`) and checking its manifest
(:func:`read_adapter_manifest`).

An adapter folder written by :func:`save_adapter` holds (safetensors and JSON only, never pickles):

* ``adapter_model.safetensors``, ``adapter_config.json``: the peft LoRA adapter;
* ``bin_head.safetensors``: the bin head's ``weight`` (11, hidden) and ``bias`` (11,);
* ``ns_dspy_simulator.json``: the manifest (format, version, base model name, tokenizer fingerprint, bins; and
  ``layers`` when the adapter was trained on the base's first layers only).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import warnings
from pathlib import Path

import torch

from ..atomic import atomic_dir, atomic_write_json
from ..errors import ConfigError
from .finetuned_format import FORMAT_VERSION, BinHead

__all__ = ["FORMAT_NAME", "MANIFEST", "ADAPTER_FILE", "HEAD_FILE", "SHIPPED_DIR", "tokenizer_fingerprint",
           "peft_quietly", "save_adapter", "shipped_adapters", "resolve_adapter", "read_adapter_manifest"]

FORMAT_NAME = "ns-dspy-finetuned-simulator"
MANIFEST = "ns_dspy_simulator.json"
ADAPTER_FILE = "adapter_model.safetensors"
HEAD_FILE = "bin_head.safetensors"

SHIPPED_DIR = Path(__file__).resolve().parent / "trained"
"""Adapters that ship with ns_dspy, one folder per name (``finetuned:gemma-3-270m``); see ``simulator_training/``."""

_FINGERPRINT_IDS = 5000
_FINGERPRINT_PROBE = "Neuron 7 fires on cats."


@contextlib.contextmanager
def peft_quietly():
    """Wrap peft's model wrapping (``get_peft_model``, ``PeftModel.from_pretrained``): peft reads
    ``is_gradient_checkpointing``, an alias transformers 5.x deprecates with a FutureWarning on every access, which
    would reach the user's terminal on every simulator load. That one warning only; every other stays."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def tokenizer_fingerprint(tokenizer) -> dict:
    """``{"vocab_size", "fingerprint"}``: sha256 of the vocabulary size, the token strings of the first 5000
    ids and the ids of a probe sentence with special tokens (so a tokenizer that adds ``<bos>`` differs)."""
    size = len(tokenizer)
    sample = {"vocab_size": size,
              "tokens": tokenizer.convert_ids_to_tokens(list(range(min(size, _FINGERPRINT_IDS)))),
              "probe": list(tokenizer(_FINGERPRINT_PROBE)["input_ids"])}
    blob = json.dumps(sample, ensure_ascii=True, sort_keys=True).encode()
    return {"vocab_size": size, "fingerprint": hashlib.sha256(blob).hexdigest()}


def save_adapter(model_with_peft: torch.nn.Module, bin_head: BinHead, out_dir: str | Path, *, base_model: str,
                 tokenizer, extra: dict | None = None, overwrite: bool = False) -> Path:
    """Write an adapter folder atomically (built under a temporary name, then renamed) and return its path.

    ``base_model`` is the name :func:`~ns_dspy.models.subject.load_subject` loads the base with (an offline
    name such as ``gemma-3-270m``, a folder or a hub id); ``extra`` (JSON-serialisable: training data, steps,
    scores) is merged into the manifest.
    """
    if not hasattr(model_with_peft, "peft_config"):
        raise ConfigError("save_adapter needs a peft model (peft.get_peft_model or PeftModel.from_pretrained)")
    manifest = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "base_model": str(base_model),
                "tokenizer": tokenizer_fingerprint(tokenizer), "bins": int(bin_head.weight.shape[0]),
                "hidden_size": int(bin_head.weight.shape[1]), **(extra or {})}
    try:
        with atomic_dir(out_dir, overwrite=overwrite) as tmp:
            model_with_peft.save_pretrained(str(tmp), safe_serialization=True)
            bin_head.save(tmp / HEAD_FILE)
            atomic_write_json(tmp / MANIFEST, manifest)
    except FileExistsError:
        raise ConfigError(f"{out_dir} already exists: choose another folder or pass overwrite=True") from None
    return Path(out_dir)


def shipped_adapters() -> list[str]:
    """Names of the adapters shipped inside the package (``finetuned:NAME`` loads one)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / MANIFEST).is_file())


def resolve_adapter(arg: str | Path) -> Path:
    """An adapter folder from ``finetuned:ARG``: an existing folder, else the name of a shipped adapter."""
    folder = Path(arg).expanduser()
    if not folder.exists() and str(arg) in shipped_adapters():
        return SHIPPED_DIR / str(arg)
    if not folder.exists():
        shipped = ", ".join(shipped_adapters()) or "none"
        raise ConfigError(f"adapter folder {arg} does not exist: give a folder written by save_adapter or a "
                          f"shipped adapter name ({shipped})")
    return folder


def read_adapter_manifest(folder: Path) -> dict:
    """The manifest of an adapter folder, after checking that the folder is one this ns_dspy reads (format,
    version, files); any problem is a one-line :class:`~ns_dspy.errors.ConfigError`."""
    if not folder.is_dir():
        raise ConfigError(f"adapter folder {folder} does not exist: give a folder written by save_adapter")
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a fine-tuned simulator folder (no {MANIFEST}): "
                          "give a folder written by save_adapter") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({str(err).splitlines()[0]}): "
                          "write the folder again with save_adapter") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ConfigError(f"{path} is not a {FORMAT_NAME} manifest: give a folder written by save_adapter")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{folder} has simulator format version {manifest.get('format_version')!r} but this "
                          f"ns_dspy reads version {FORMAT_VERSION}: use a matching ns_dspy or retrain the adapter")
    for name in (ADAPTER_FILE, "adapter_config.json", HEAD_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder} lacks {name}: write the folder again with save_adapter")
    layers = manifest.get("layers")
    if layers is not None and (type(layers) is not int or layers < 1):
        raise ConfigError(f"{path}: layers must be a positive whole number (the base's decoder layers the adapter "
                          f"was trained on), not {layers!r}: write the folder again with save_adapter")
    return manifest
