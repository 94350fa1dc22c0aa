"""Where units live inside a model, and how their values are read.

A :class:`HookSpec` names a module (a dotted path with ``{layer}``) and whether its input or output is read;
the channels of that tensor are the units. ``mlp`` - the default - is an MLP neuron: the input of the MLP's
down projection, i.e. ``act(gate) * up`` for gated MLPs and ``act(fc)`` for GPT-2 style ones. ``resid`` is the
residual stream after a decoder layer. An optional :class:`Encoder` (e.g. an SAE) maps the hooked vector to
latents first, so SAE latents are units too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, ModelError

__all__ = ["HookSpec", "Encoder", "decoder_layers", "resolve_module"]

# Where decoder-layer lists and MLP output projections live in common Hugging Face architectures.
# Tried in order; data, not code, so adding an architecture is one string.
LAYER_LIST_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                    "transformer.layers", "transformer.blocks", "layers")
MLP_OUT_PATHS = ("mlp.down_proj", "mlp.c_proj", "mlp.dense_4h_to_h", "mlp.fc2", "fc2", "mlp.fc_out",
                 "feed_forward.w2", "ffn.down_proj")
ALIASES = {"mlp": None, "resid": "{layers}.{layer}:output"}
_SPEC_RE = re.compile(r"^(?P<path>[A-Za-z0-9_.{}]+)(?::(?P<io>input|output))?$")


@dataclass(frozen=True)
class HookSpec:
    """A module path template with ``{layer}`` (``None`` = the MLP down projection) and which side to read.

    Parse from ``"mlp"``, ``"resid"`` or e.g. ``"model.layers.{layer}.self_attn.o_proj:input"`` (the side
    defaults to ``output``); ``{layers}`` expands to the model's decoder-layer list.
    """

    template: str | None = None
    io: str = "input"

    @classmethod
    def parse(cls, text: str) -> "HookSpec":
        if text in ALIASES:
            if ALIASES[text] is None:
                return cls()
            text = ALIASES[text]
        m = _SPEC_RE.match(text)
        if not m or "{layer}" not in m.group("path"):
            raise ConfigError(f"bad hookpoint {text!r}: use mlp, resid, or a module path with {{layer}}, "
                              "e.g. model.layers.{layer}.mlp.down_proj:input")
        return cls(m.group("path"), m.group("io") or "output")

    def __str__(self) -> str:
        return "mlp" if self.template is None else f"{self.template}:{self.io}"

    def module_path(self, model: nn.Module, layer: int) -> str:
        layers_path, layers = decoder_layers(model)
        if not 0 <= layer < len(layers):
            raise ModelError(f"layer {layer} out of range: the model has layers 0..{len(layers) - 1}")
        if self.template is None:
            for rel in MLP_OUT_PATHS:
                path = f"{layers_path}.{layer}.{rel}"
                if _has(model, path):
                    return path
            raise ModelError(f"no MLP down projection found in {type(model).__name__}; "
                             "give --hookpoint with a module path, e.g. model.layers.{layer}.mlp.down_proj:input")
        path = self.template.replace("{layers}", layers_path).replace("{layer}", str(layer))
        if not _has(model, path):
            raise ModelError(f"hookpoint module {path!r} not found in {type(model).__name__}: check --hookpoint")
        return path


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False


def resolve_module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def decoder_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The dotted path and the ModuleList of the model's decoder layers."""
    for path in LAYER_LIST_PATHS:
        if _has(model, path):
            mod = model.get_submodule(path)
            if isinstance(mod, nn.ModuleList):
                return path, mod
    lists = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ModelError(f"cannot find decoder layers in {type(model).__name__}; give --hookpoint explicitly")
    return max(lists, key=lambda item: len(item[1]))


class Encoder(nn.Module):
    """Maps hooked vectors to latents: ``relu((x - b_dec) @ W_enc + b_enc)``, or JumpReLU with ``threshold``.

    Loaded from a safetensors file with ``W_enc`` (d_in x d_latent), ``b_enc`` and optionally ``b_dec`` and
    ``threshold`` - the layout of SAELens and Gemma Scope checkpoints.
    """

    def __init__(self, W_enc: torch.Tensor, b_enc: torch.Tensor, b_dec: torch.Tensor | None = None,
                 threshold: torch.Tensor | None = None):
        super().__init__()
        if W_enc.ndim != 2 or b_enc.shape != (W_enc.shape[1],):
            raise ConfigError(f"encoder shapes W_enc {tuple(W_enc.shape)} / b_enc {tuple(b_enc.shape)} do not "
                              "fit: need W_enc (d_in, d_latent) and b_enc (d_latent,)")
        self.register_buffer("W_enc", W_enc.float())
        self.register_buffer("b_enc", b_enc.float())
        self.register_buffer("b_dec", (b_dec if b_dec is not None else torch.zeros(W_enc.shape[0])).float())
        self.register_buffer("threshold", None if threshold is None else threshold.float())

    @classmethod
    def load(cls, path: str | Path) -> "Encoder":
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"encoder file {path} not found: give a .safetensors file with W_enc and b_enc")
        try:
            t = load_file(str(path))
        except Exception as err:
            raise ConfigError(f"cannot read encoder {path}: {err}; it must be a safetensors file") from None
        missing = [k for k in ("W_enc", "b_enc") if k not in t]
        if missing:
            raise ConfigError(f"encoder {path} lacks {', '.join(missing)}: need W_enc (d_in, d_latent), b_enc")
        return cls(t["W_enc"], t["b_enc"], t.get("b_dec"), t.get("threshold"))

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x.float() - self.b_dec) @ self.W_enc + self.b_enc
        if self.threshold is not None:
            return z * (z > self.threshold)
        return torch.relu(z)
