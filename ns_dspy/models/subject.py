"""Loading a subject model: a Hugging Face causal LM by name or local path, or a registered offline model."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError, ModelError
from ..machine import cpu_description
from .offline import offline_names, resolve_offline

__all__ = ["Subject", "load_subject", "parse_dtype", "resolve_dtype", "fast_bf16", "default_device", "check_device",
           "prefix_ids", "kv_cache_keyword"]

log = logging.getLogger(__name__)

_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
           "float32": torch.float32, "fp32": torch.float32}


def fast_bf16(device: str) -> bool:
    """Whether bfloat16 matrix products are fast on ``device``: CUDA with bf16 support, an x86 CPU with
    AVX512-BF16 or AMX-BF16, or an ARM CPU with the BF16 extension. Elsewhere torch emulates them: on an AVX2-only
    CPU (measured: AMD EPYC Zen 3, torch 2.13) a bf16 matmul ran ~100x slower than float32."""
    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device != "cpu":
        return True
    return bool(set(cpu_description()["flags"]) & {"avx512_bf16", "amx_bf16", "bf16"})


def resolve_dtype(name: str, device: str) -> str:
    """``auto`` -> ``bfloat16`` where it is fast on ``device`` (:func:`fast_bf16`), else ``float32``; other names
    unchanged (checked by :func:`parse_dtype`)."""
    if name == "auto":
        return "bfloat16" if fast_bf16(device) else "float32"
    parse_dtype(name)
    return name


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}: use auto, bfloat16, float16 or float32") from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(name: str | None, option: str = "--device", *, present: bool = True) -> None:
    """A one-line :class:`ConfigError` unless ``name`` (None or "" for the default) is a device ns-dspy runs models
    on: ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. ``present``: also one that this machine has (that GPU, MPS).
    Configurations check the name only (``present=False``): a Ray head without a GPU configures GPU workers;
    :func:`load_subject` checks presence where the model loads, before any weight is read."""
    if not name:
        return
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"{option} {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{option} {name!r}: ns-dspy runs models on cpu, cuda or mps only")
    if not present:
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{option} {name}: this machine's torch sees no CUDA GPU: use cpu or leave it out")
        if device.index is not None and device.index >= count:
            raise ConfigError(f"{option} {name}: there are {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{option} {name}: MPS is not available here: use cpu or leave it out")


def kv_cache_keyword(body: torch.nn.Module) -> str | None:
    """The keyword under which ``body.forward`` takes a KV cache to read and extend: ``cache`` (transformers 5.2x
    on), ``past_key_values`` (before; a deprecated alias since, removed in 5.40), or None for a model without
    one. The simulators pass their prefix caches by this name, so one code runs on either transformers."""
    import inspect

    params = inspect.signature(body.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


@dataclass
class Subject:
    """A loaded subject model and its tokenizer.

    ``prefix_ids`` are the special tokens the tokenizer puts before text (e.g. Gemma's ``<bos>``); recording
    feeds them before every window but never records their positions.
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    prefix_ids: list[int]

    @property
    def body(self) -> torch.nn.Module:
        """The transformer body without the output layer: recording never needs logits."""
        return getattr(self.model, "base_model", self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_strings(self, ids: list[int]) -> list[str]:
        """Each id decoded on its own, so the strings concatenate to the window's text."""
        return [self.tokenizer.decode([i]) for i in ids]

    def describe(self) -> dict:
        return {"name": self.name, "class": type(self.model).__name__,
                "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
                "vocab_size": len(self.tokenizer), "prefix_ids": self.prefix_ids}


def prefix_ids(tokenizer) -> list[int]:
    """The special tokens ``tokenizer`` puts before any text (e.g. ``<bos>``), found by encoding a probe."""
    probe = "hello"
    with_special = tokenizer(probe)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for start in range(len(with_special) - len(plain) + 1):
        if with_special[start:start + len(plain)] == plain:
            return list(with_special[:start])
    return []


def load_subject(name: str, *, dtype: str = "auto", device: str | None = None) -> Subject:
    """Load ``name``: a registered offline model (see ``offline_names()``), a local folder, or a hub id.

    Hub ids are only fetched when the hub is reachable and ``HF_HUB_OFFLINE`` is not set; otherwise they must
    already be in the local Hugging Face cache. Every failure is a one-line :class:`ModelError`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_device(device)  # a GPU this machine lacks: one line, before anything is read
    device = device or default_device()
    torch_dtype = parse_dtype(resolve_dtype(dtype, device))
    local = resolve_offline(name)
    source = str(local) if local else name
    if local is None and not Path(name).exists() and "/" not in name:
        raise ModelError(f"unknown model {name!r}: give a local folder, a Hugging Face id like "
                         f"meta-llama/Llama-3.1-8B, or an offline model ({', '.join(offline_names())})")
    if local is None and Path(name).exists() and not (Path(name) / "config.json").exists():
        raise ModelError(f"{name} is not a model folder (no config.json): give a save_pretrained folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    except (OSError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        offline = " (no network: HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise ModelError(f"cannot load model {name!r}{offline}: {first}") from None
    model.to(device).eval().requires_grad_(False)
    return Subject(name=name, model=model, tokenizer=tokenizer, prefix_ids=prefix_ids(tokenizer))
