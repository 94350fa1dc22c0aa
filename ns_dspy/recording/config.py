"""What to record: the subject model, units, corpus budget, exemplar counts and the split."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..config import opt
from ..errors import ConfigError, ModelError
from ..models.offline import DEFAULT_MODEL
from ..types import UNIT_LIMIT

__all__ = ["RecordConfig", "parse_int_set"]

_RANGE_RE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


MAX_SET = 1 << 22
"""The most numbers a ``--layers`` / ``--neurons`` list may name (the widest MLPs have ~10^5 units)."""


def parse_int_set(text: str, what: str) -> list[int]:
    """``"3,9"`` / ``"0-4,7"`` -> sorted unique ints."""
    out: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            continue
        m = _RANGE_RE.match(part)
        if not m:
            raise ConfigError(f"bad {what} {part.strip()!r}: write numbers and ranges, e.g. 3,9 or 0-99")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ConfigError(f"bad {what} range {part.strip()!r}: the end is below the start")
        if hi >= UNIT_LIMIT:  # checked before the set is built: 0-99999999999 would fill the memory first
            raise ConfigError(f"bad {what} range {part.strip()!r}: numbers must be below {UNIT_LIMIT} (2^32)")
        if len(out) + hi - lo + 1 > MAX_SET:
            raise ConfigError(f"bad {what} {text.strip()[:40]!r}: more than {MAX_SET:,} numbers; no model has that "
                              "many layers or units")
        out.update(range(lo, hi + 1))
    if not out:
        raise ConfigError(f"no {what} given")
    return sorted(out)


@dataclass
class RecordConfig:
    model: str = opt(DEFAULT_MODEL, "subject model: an offline name (gemma-3-270m), a local folder or a "
                                    "Hugging Face id")
    layers: str = opt("", "layers to record, e.g. 3,9 or 0-17 or all; may be omitted when --neurons lists "
                          "LAYER:INDEX units")
    neurons: str = opt("all", "units per layer: all, indices/ranges like 0-99,512 (in every layer), or "
                              "LAYER:INDEX units like 5:123,9:77")
    hookpoint: str = opt("mlp", "where units live: mlp (MLP neurons: input of the down projection), resid "
                                "(residual stream after the layer) or a module path with {layer}[:input|:output]")
    encoder: str = opt("", "optional SAE encoder applied at the hookpoint: a .safetensors path with {layer}, "
                           "holding W_enc and b_enc (units become latents)")
    corpus: str = opt("default", "text source: default (offline corpus), a .txt/.jsonl/.json/.parquet file or "
                                 "folder, or hf:NAME[:CONFIG][@SPLIT]")
    text_field: str = opt("text", "field holding the text in jsonl/json/parquet/hf records")
    tokens: int = opt(200_000, "text tokens to record (the corpus is read until this many)")
    window: int = opt(64, "tokens per window")
    top_k: int = opt(100, "top-activating windows kept per unit, over all splits")
    random_k: int = opt(50, "random windows kept (the same for every unit of a layer), over all splits")
    negative_k: int = opt(0, "most negative windows kept per unit, over all splits (0 = none)")
    split: str = opt("0.4,0.3,0.3", "train,valid,test fractions of windows; every exemplar kind is split alike")
    seed: int = opt(0, "seed of the split and the random sample")
    batch_size: int = opt(32, "windows per forward pass")
    dtype: str = opt("auto", "model dtype for recording: auto (bfloat16 where the device runs it natively - a GPU, "
                             "an AVX512-BF16/AMX CPU - else float32), bfloat16, float16 or float32")
    device: str = opt("", "torch device (default: cuda if available, else cpu)")
    checkpoint_every: float = opt(120.0, "seconds between resumable checkpoints")
    fuse: bool = opt(True, "on CPU, compute each batch's per-token statistics (sum, squares, positives, window "
                           "max and min) in one kernel compiled by torch.compile, several times faster than plain "
                           "torch ops; needs a C++ compiler (without one: plain ops and a warning); --no-fuse: "
                           "plain ops (the sums then differ in float32 rounding)")

    def __post_init__(self) -> None:
        for name in ("tokens", "window", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        for name in ("top_k", "random_k", "negative_k"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.tokens < self.window:
            raise ConfigError(f"--tokens {self.tokens} is less than one window of {self.window}")
        if self.tokens // self.window >= 1 << 32:  # window indices are 32-bit in the trackers' keys
            raise ConfigError(f"--tokens {self.tokens} makes more than 2^32 windows of {self.window}: record less")
        fr = self.fractions
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6 or fr[0] == 0:
            raise ConfigError(f"--split {self.split!r}: give three non-negative fractions summing to 1, "
                              "train > 0, e.g. 0.4,0.3,0.3")
        if self.checkpoint_every <= 0:
            raise ConfigError("--checkpoint-every must be positive")
        self.units(n_layers=None)  # syntax errors surface now, before any model is loaded
        if self.device:
            from ..models.subject import check_device

            check_device(self.device, present=False)  # the name; presence where it loads

    @property
    def fractions(self) -> tuple[float, ...]:
        try:
            return tuple(float(x) for x in self.split.split(","))
        except ValueError:
            raise ConfigError(f"--split {self.split!r}: give three fractions, e.g. 0.4,0.3,0.3") from None

    def per_split(self, total: int) -> list[int]:
        """Distribute ``total`` slots over the splits by the fractions (largest remainders)."""
        raw = [total * f for f in self.fractions]
        counts = [int(r) for r in raw]
        for i in sorted(range(3), key=lambda i: raw[i] - counts[i], reverse=True)[: total - sum(counts)]:
            counts[i] += 1
        return counts

    def units(self, n_layers: int | None) -> dict[int, list[int] | None]:
        """Layer -> channel indices (None = every channel), validated against the model's layer count
        (``n_layers=None``: syntax only; ``--layers all`` then stands for no layer yet)."""
        if ":" in self.neurons:
            from ..types import parse_units

            chosen: dict[int, list[int] | None] = {}
            for unit in parse_units(self.neurons):
                chosen.setdefault(unit.layer, []).append(unit.index)  # type: ignore[union-attr]
            if self.layers:
                raise ConfigError("give either --layers with --neurons indices, or LAYER:INDEX units, not both")
            result = {layer: sorted(set(idx)) for layer, idx in chosen.items()}
        else:
            if not self.layers:
                raise ConfigError("say which layers to record: --layers 3,9 (or all)")
            layers = list(range(n_layers or 0)) if self.layers == "all" else parse_int_set(self.layers, "layers")
            idx = None if self.neurons == "all" else parse_int_set(self.neurons, "neurons")
            result = {layer: idx for layer in layers}
        bad = [layer for layer in result if n_layers is not None and layer >= n_layers]
        if bad:
            raise ModelError(f"layer {bad[0]} does not exist: the model has layers 0..{n_layers - 1}")
        return dict(sorted(result.items()))

    def to_dict(self) -> dict:
        return asdict(self)
