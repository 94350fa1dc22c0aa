"""A subject model's shape (layers, residual and MLP widths) from its config alone: no weights are loaded, no
offline model is converted and nothing but a ``config.json`` is read, so that ``ns-dspy record`` can refuse a
layer or unit that does not exist before the expensive part starts."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

__all__ = ["ModelShape", "model_shape", "check_units"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelShape:
    """``n_layers`` decoder layers; ``hidden_size`` channels in the residual stream (the ``resid`` units) and
    ``mlp_size`` MLP neurons per layer (the ``mlp`` units); a width is None when the config does not say."""

    n_layers: int
    hidden_size: int | None
    mlp_size: int | None

    def width(self, hookpoint: str) -> int | None:
        """Units per layer at ``hookpoint`` (``mlp`` or ``resid``; None for other hookpoints)."""
        return {"mlp": self.mlp_size, "resid": self.hidden_size}.get(hookpoint)


def _positive(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _from_fields(fields: dict) -> ModelShape | None:
    """The shape from config fields (Llama / Gemma / Qwen names, or GPT-2's ``n_layer``/``n_embd``/``n_inner``)."""
    text = fields.get("text_config")
    if isinstance(text, dict):  # a multimodal config: the language model's
        fields = {**fields, **text}
    n_layers = _positive(fields.get("num_hidden_layers", fields.get("n_layer")))
    if n_layers is None:
        return None
    hidden = _positive(fields.get("hidden_size", fields.get("n_embd")))
    mlp = _positive(fields.get("intermediate_size", fields.get("ffn_dim", fields.get("n_inner"))))
    if mlp is None and fields.get("model_type") == "gpt2" and hidden:
        mlp = 4 * hidden  # GPT-2's n_inner=None means 4 x n_embd
    return ModelShape(n_layers, hidden, mlp)


def _config_fields(source: str, *, local_only: bool) -> dict | None:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, local_files_only=local_only).to_dict()
    except Exception as err:  # not cached, no network, a foreign folder: loading the model will say what is wrong
        log.debug("no config for %s (%s)", source, err)
        return None


def model_shape(name: str) -> ModelShape | None:
    """The shape of the subject model ``name`` (an offline name, a local folder or a hub id) read from its
    config, or None when that cannot be done cheaply (then loading the model reports any problem)."""
    from .offline import OfflineModel

    entry = OfflineModel.registry.get(name)
    if entry is not None:
        built = entry.built()
        if built is not None and (built / "config.json").is_file():
            fields = _config_fields(str(built), local_only=True)
            if fields:
                return _from_fields(fields)
        return _from_fields(entry.config) if entry.config else None
    if Path(name).exists():
        fields = _config_fields(name, local_only=True) if (Path(name) / "config.json").is_file() else None
        return _from_fields(fields) if fields else None
    if "/" not in name:
        return None
    fields = _config_fields(name, local_only=True)  # the local HF cache first: no network
    if fields is None and not os.environ.get("HF_HUB_OFFLINE"):
        fields = _config_fields(name, local_only=False)  # config.json only, not the weights
    return _from_fields(fields) if fields else None


def check_units(config, shape: ModelShape) -> None:
    """Raise :class:`ModelError` if ``config`` (a RecordConfig) names a layer or, at the ``mlp`` / ``resid``
    hookpoints without an encoder, a unit that ``shape`` does not have."""
    chosen = config.units(shape.n_layers)  # a layer beyond the model: "layer L does not exist: ..."
    width = None if config.encoder else shape.width(config.hookpoint)
    if width is None:
        return
    for layer, indices in chosen.items():
        if indices and indices[-1] >= width:
            raise ModelError(f"unit {layer}:{indices[-1]} does not exist: layer {layer} has {width} units "
                             f"(0..{width - 1}) at hookpoint {config.hookpoint}")
