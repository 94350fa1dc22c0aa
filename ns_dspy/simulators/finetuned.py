"""A fine-tuned simulator (Choi et al. 2024): a base LM + a LoRA adapter + an 11-bin head, one pass per text.

The model input (``prefix_ids + encode("Neuron explanation: {explanation}\\nText:\\n") + exemplar token ids``)
and the bin read-out are defined in :mod:`.finetuned_format`, the adapter folder in :mod:`.finetuned_adapter`,
and the alignment of an exemplar's tokens to the simulator's tokenizer in :mod:`.align`; this module holds the
simulator that runs them. The body runs once over an input. At every exemplar token ``t`` the final hidden
state (which sees tokens ``<= t``, as the neuron does) goes through the bin head to 11 logits, one per
activation bin 0..10; the prediction is the expected bin under their softmax. So one forward pass predicts
every token of the text.

:meth:`FinetunedSimulator.simulate` computes exactly that, faster (the same values up to float rounding;
``tests/simulators/test_finetuned_fast.py`` holds it to the plain loop):

* the LoRA is merged into the base weights at load (:meth:`FinetunedSimulator.from_pretrained`), so a forward
  costs what the base model's does;
* each explanation's prefix runs once per call and its KV cache is reused for all its exemplars: batches mix
  explanations, their prefixes left-padded in the cache, and run only the exemplar tokens;
* pairs are batched by exemplar length, each exemplar is aligned once (and remembered across calls), and
  exemplars with the same simulator tokens run once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ..models.subject import default_device, kv_cache_keyword, load_subject, parse_dtype, resolve_dtype
from ..types import Exemplar
from .align import align_to_tokenizer
from .base import Simulator, positive
from .finetuned_adapter import (ADAPTER_FILE, HEAD_FILE, peft_quietly, read_adapter_manifest, resolve_adapter,
                                tokenizer_fingerprint)
from .finetuned_format import (FORMAT_VERSION, BinHead, build_input, expected_bins, forward_bins, is_int8,
                               keep_layers, model_hidden_size, pad_batch, pad_id, quantize_int8, transformer_body)

__all__ = ["FinetunedSimulator"]

log = logging.getLogger(__name__)

_ALIGN_CACHE = 4096
"""Exemplar alignments a simulator remembers across calls (oldest dropped first)."""


def _files_digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _memory_digest(model: torch.nn.Module, bin_head: BinHead) -> str:
    """sha256 of the LoRA tensors (all parameters if the adapter was merged) and the bin head, in memory."""
    named = [(n, p) for n, p in model.named_parameters() if "lora_" in n] or list(model.named_parameters())
    named += [(f"bin_head.{n}", p) for n, p in bin_head.named_parameters()]
    h = hashlib.sha256()
    for name, p in sorted(named, key=lambda x: x[0]):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------- the simulator

@dataclasses.dataclass
class FinetunedOptions:
    """``finetuned`` options (see :meth:`FinetunedSimulator.from_pretrained`)."""

    dtype: str = "auto"
    """dtype of the model: auto, bfloat16, float16 or float32."""
    device: str | None = None
    """device of the model (None: cuda if any)."""
    batch_size: int = 16
    """(explanation, exemplar) pairs per forward pass."""
    base_model: str | None = None
    """another base model with the same tokenizer (default: the manifest's)."""
    merge: bool = True
    """fold the LoRA into the base weights for inference."""
    quantize: str = "none"
    """none, or int8: the merged linear layers in int8 on CPU (faster, approximate: measure an adapter first)."""

    def __post_init__(self) -> None:
        positive("finetuned", "batch_size", self.batch_size)
        if self.quantize not in ("none", "int8"):
            raise ConfigError(f"finetuned simulator option quantize must be none or int8, not {self.quantize!r}")
        if self.quantize == "int8" and not self.merge:
            raise ConfigError("quantize=int8 runs the merged model: drop merge=false or quantize=int8")


class FinetunedSimulator(Simulator):
    """Simulates with a LoRA-adapted base LM and a bin head; ``finetuned:ADAPTER_DIR``.

    Build it with :meth:`from_pretrained` (or inject an already loaded peft/merged model, e.g. in training: a
    model handed in is never merged). ``batch_size`` (explanation, exemplar) pairs go through one forward pass:
    their exemplar tokens after their explanations' cached prefixes, or, with ``reuse_prefix = False`` or where
    the model's cache does not allow it (a prefix longer than a sliding window, a cache that is not a plain
    dynamic one), their whole inputs right-padded.
    """

    kind = "finetuned"
    Options = FinetunedOptions

    def __init__(self, model: torch.nn.Module, tokenizer, prefix_ids: Sequence[int], bin_head: BinHead,
                 manifest: dict, *, batch_size: int = 16, weights_digest: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        hidden = model_hidden_size(model)
        if bin_head.weight.shape[1] != hidden:
            raise ModelError(f"bin head of width {bin_head.weight.shape[1]} does not fit a base model of hidden "
                             f"size {hidden}: load the adapter with the base model it was trained on")
        self.model, self.tokenizer, self.prefix_ids = model, tokenizer, list(prefix_ids)
        self.manifest, self.batch_size = dict(manifest), batch_size
        self.device = next(model.parameters()).device
        self.bin_head = bin_head.to(self.device).eval()
        self.pad_id = pad_id(tokenizer)
        self.reuse_prefix = True
        """Run each explanation's prefix once and reuse its KV cache (False: whole inputs, as in training)."""
        digest = weights_digest or _memory_digest(model, self.bin_head)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        # merged weights round differently from base + LoRA (float32: ~1e-6 of the scale; bf16: more)
        merged = "" if hasattr(model, "peft_config") else "/merged"
        int8 = "/int8" if is_int8(model) else ""  # other values: int8 rounds weights and activations
        self._cache_key = (f"{self.kind}/v{FORMAT_VERSION}/{self.manifest.get('base_model', '?')}/"
                           f"{digest[:16]}/{dtype}{merged}{int8}")
        body = transformer_body(model)
        self._cache_arg = kv_cache_keyword(body)
        self._text_config = body.config
        self._aligned: dict = {}
        self._warned_plain = False

    @property
    def cache_key(self) -> str:
        return self._cache_key

    @classmethod
    def from_pretrained(cls, adapter_dir: str | Path, *, base_model: str | None = None, dtype: str = "auto",
                        device: str | None = None, batch_size: int = 16, merge: bool = True,
                        quantize: str = "none") -> "FinetunedSimulator":
        """Load an adapter folder onto its base model (``base_model`` overrides the manifest's name; it must
        have the same tokenizer).

        ``merge`` (the default) folds the LoRA into the base weights for inference (peft ``merge_and_unload``):
        a forward then costs exactly what the base model's does. The base is loaded in float32 for the merge
        and cast to ``dtype`` afterwards, so a bf16 model rounds ``W + BA`` once. ``merge=False`` keeps the
        peft model (adapter layers beside the frozen base), as in training.

        ``quantize="int8"`` then runs the merged model's decoder linear layers in int8 on CPU
        (:func:`~.finetuned_format.quantize_int8`; activations stay float32): ~1.8-2.3x faster than float32, and
        approximate, by how much depends on the base (measured in benchmarks/README.md: close on Qwen2.5-Coder-0.5B, too
        far on gemma-3-270m), so measure an adapter with it before relying on it. CPU and float32 only.
        """
        from peft import PeftModel

        folder = resolve_adapter(adapter_dir)
        manifest = read_adapter_manifest(folder)
        trained_on = manifest.get("base_model", "?")
        FinetunedOptions(batch_size=batch_size, merge=merge, quantize=quantize)  # refuse bad combinations first
        where = device or default_device()
        if quantize == "int8":
            if where != "cpu":
                raise ConfigError(f"quantize=int8 runs on CPU only, not {where}: drop it there")
            if dtype not in ("auto", "float32"):
                raise ConfigError(f"quantize=int8 keeps activations in float32, not {dtype}: use --dtype float32")
            dtype = "float32"
        target = resolve_dtype(dtype, where)
        subject = load_subject(base_model or trained_on, dtype="float32" if merge else target, device=device)
        if manifest.get("layers"):  # trained on the base's first layers only (simulator_training --layers)
            keep_layers(subject.model, manifest["layers"])
        if tokenizer_fingerprint(subject.tokenizer) != manifest.get("tokenizer"):
            if base_model:
                raise ModelError(f"base model {base_model!r} has another tokenizer than {trained_on!r}, which "
                                 f"adapter {folder} was trained on: load it with that base model")
            raise ModelError(f"the tokenizer of {trained_on!r} changed since adapter {folder} was trained on it: "
                             "restore that base model or retrain the adapter")
        head = BinHead.load(folder / HEAD_FILE)
        if head.weight.shape[1] != model_hidden_size(subject.model):
            raise ModelError(f"adapter {folder} was trained on a model of hidden size {head.weight.shape[1]}, "
                             f"not {base_model or trained_on!r}: load it with the base model it was trained on")
        try:
            with peft_quietly():
                model = PeftModel.from_pretrained(subject.model, str(folder))
        except (ValueError, KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot apply adapter {folder} to {subject.name!r}: {first}") from None
        if merge:
            model = model.merge_and_unload().to(parse_dtype(target))
        if quantize == "int8":
            quantize_int8(model)
        model.eval()
        if base_model:
            manifest["base_model"] = base_model
        digest = _files_digest([folder / ADAPTER_FILE, folder / HEAD_FILE])
        log.info("loaded fine-tuned simulator %s on %s (%s)", folder, subject.name, digest[:16])
        return cls(model, subject.tokenizer, subject.prefix_ids, head, manifest, batch_size=batch_size,
                   weights_digest=digest)

    @classmethod
    def from_spec(cls, arg: str, **options: Any) -> "FinetunedSimulator":
        """``finetuned:ADAPTER_DIR`` or ``finetuned:NAME`` of a shipped adapter; options ``dtype``, ``device``,
        ``batch_size``, ``base_model``, ``merge``, ``quantize``."""
        cls.check_spec(arg, **options)
        return cls.from_pretrained(arg, **dataclasses.asdict(cls.parse_options(options)))

    @classmethod
    def check_spec(cls, arg: str, **options: Any) -> None:
        """The options, and that ``arg`` names an adapter folder this ns-dspy reads (its manifest only)."""
        cls.parse_options(options)
        if not arg:
            raise ConfigError("give the adapter folder: finetuned:PATH")
        read_adapter_manifest(resolve_adapter(arg))

    def bin_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, L, 11)`` bin logits for a padded batch: :func:`forward_bins` with this simulator's weights."""
        return forward_bins(self.model, self.bin_head, input_ids, attention_mask)

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        explanations, exemplars = list(explanations), list(exemplars)
        aligned = [self._align(ex) for ex in exemplars]
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        heads = [build_input(encode, self.prefix_ids, e, [])[0] for e in explanations]
        # exemplars with the same simulator tokens (e.g. one text with and without its ids) run once
        texts: dict[tuple[int, ...], int] = {}
        text_of = [texts.setdefault(tuple(ids), len(texts)) if ex.tokens else -1
                   for ex, (ids, _) in zip(exemplars, aligned)]
        unique = [list(ids) for ids in texts]
        jobs = [(i, u) for i in range(len(explanations)) for u in range(len(unique))]
        values: dict[tuple[int, int], np.ndarray] = {}  # (i, u) -> prediction at every token of unique[u]
        last: dict[int, float] = {}  # i -> prediction at the last token of the explanation prefix
        with torch.inference_mode():
            if self.reuse_prefix and jobs:
                jobs = self._simulate_cached(heads, unique, jobs, values, last)
            self._simulate_full(heads, unique, jobs, values, last)
        preds: list[list[np.ndarray]] = [[np.zeros(0, np.float32)] * len(exemplars) for _ in explanations]
        for i in range(len(explanations)):
            for j, u in enumerate(text_of):
                if u < 0:
                    continue
                read = np.asarray(aligned[j][1], dtype=np.int64)
                at = values[i, u][read.clip(min=0)] if len(unique[u]) else np.zeros(len(read), np.float32)
                preds[i][j] = np.where(read < 0, np.float32(last[i]), at).astype(np.float32)
        return preds

    # -- the two paths ----------------------------------------------------------------------------------

    def _align(self, ex: Exemplar) -> tuple[list[int], list[int]]:
        """:func:`~.align.align_to_tokenizer` of an exemplar, remembered across calls (refinement re-simulates
        the same exemplars with every candidate)."""
        ids = None if ex.token_ids is None else tuple(int(i) for i in ex.token_ids)
        key = (tuple(ex.tokens), ids)
        got = self._aligned.get(key)
        if got is None:
            got = align_to_tokenizer(self.tokenizer, ex.tokens, ex.token_ids)
            if len(self._aligned) >= _ALIGN_CACHE:
                self._aligned.pop(next(iter(self._aligned)))
            self._aligned[key] = got
        return got

    def _simulate_full(self, heads: list[list[int]], texts: list[list[int]], jobs: list[tuple[int, int]],
                       values: dict, last: dict) -> None:
        """The plain path: every pair's whole input (explanation prefix + text) in right-padded batches."""
        jobs = sorted(jobs, key=lambda iu: -(len(heads[iu[0]]) + len(texts[iu[1]])))  # similar lengths together
        for start in range(0, len(jobs), self.batch_size):
            batch = jobs[start:start + self.batch_size]
            ids, mask = pad_batch([heads[i] + texts[u] for i, u in batch], self.pad_id, self.device)
            out = expected_bins(self.bin_logits(ids, mask)).cpu().numpy()
            for row, (i, u) in enumerate(batch):
                n = len(heads[i])
                values[i, u] = out[row, n:n + len(texts[u])].astype(np.float32)
                last.setdefault(i, float(out[row, n - 1]))

    def _simulate_cached(self, heads: list[list[int]], texts: list[list[int]], jobs: list[tuple[int, int]],
                         values: dict, last: dict) -> list[tuple[int, int]]:
        """The fast path; returns the jobs it cannot run (left to :meth:`_simulate_full`).

        The prefixes of the call's explanations run once, together (right-padded), and keep their KV caches.
        Pairs are then batched by text length, explanations mixed: every batch gets a fresh cache holding its
        rows' prefixes, left-padded to the longest prefix of the call (the padding is masked), and runs only the
        text's tokens, at positions ``len(prefix) + t``. Left padding keeps the distance between any two real
        tokens in the cache equal to their distance in the whole input, so sliding-window layers mask the same
        tokens as in :meth:`_simulate_full`.
        """
        prefixes = self._prefix_states({i: heads[i] for i in sorted({i for i, _ in jobs})})
        for i, (_, value) in prefixes.items():
            last[i] = value
        rest = [(i, u) for i, u in jobs if i not in prefixes]
        todo = [(i, u) for i, u in jobs if i in prefixes and texts[u]]
        if not todo:
            return rest
        order = sorted(prefixes)
        row_of = {i: r for r, i in enumerate(order)}
        n_prefix = max(len(heads[i]) for i in order)
        stacked = []  # per layer: (keys, values) of every explanation, (E, heads, n_prefix, dim), left-padded
        for layer in range(len(prefixes[order[0]][0])):
            k0, v0 = prefixes[order[0]][0][layer]
            keys = k0.new_zeros((len(order), k0.shape[1], n_prefix, k0.shape[3]))
            vals = v0.new_zeros((len(order), v0.shape[1], n_prefix, v0.shape[3]))
            for r, i in enumerate(order):
                k, v = prefixes[i][0][layer]
                keys[r, :, n_prefix - k.shape[2]:] = k[0]
                vals[r, :, n_prefix - v.shape[2]:] = v[0]
            stacked.append((keys, vals))
        todo.sort(key=lambda iu: (-len(texts[iu[1]]), iu[0], iu[1]))  # batch by length
        body = transformer_body(self.model)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            width = max(len(texts[u]) for _, u in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), n_prefix + width), dtype=torch.long)
            positions = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (i, u) in enumerate(batch):
                x, p = texts[u], len(heads[i])
                ids[row, :len(x)] = torch.tensor(x, dtype=torch.long)
                mask[row, n_prefix - p:n_prefix + len(x)] = 1
                positions[row] = torch.arange(p, p + width)
            rows = torch.tensor([row_of[i] for i, _ in batch], device=self.device)
            cache = self._new_cache()
            for layer, (keys, vals) in enumerate(stacked):
                cache.update(keys.index_select(0, rows), vals.index_select(0, rows), layer)
            hidden = body(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                          position_ids=positions.to(self.device), use_cache=True,
                          **{self._cache_arg: cache}).last_hidden_state
            out = expected_bins(self.bin_head(hidden)).cpu().numpy()
            for row, (i, u) in enumerate(batch):
                values[i, u] = out[row, :len(texts[u])].astype(np.float32)
        return rest

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self._text_config)

    def _prefix_states(self, heads: dict[int, list[int]]
                       ) -> dict[int, tuple[list[tuple[torch.Tensor, torch.Tensor]], float]]:
        """For each explanation ``i`` whose prefix the cache can hold whole: ``(per-layer (keys, values) of its
        prefix, each (1, heads, len(prefix), dim); the prediction at its last token)``.

        Explanations missing from the result run the plain path: all of them where the model's cache is not a
        plain dynamic one (one KV tensor per layer), and those whose prefix is longer than a sliding window.
        """
        from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

        if self._cache_arg is None:
            return {}
        layers = getattr(self._new_cache(), "layers", None)
        if not layers or any(type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers):
            self._note_plain("the model's KV cache is not a plain dynamic one")
            return {}
        limit = min((layer.sliding_window - 1 for layer in layers if isinstance(layer, DynamicSlidingWindowLayer)),
                    default=None)
        fits = [i for i, head in heads.items() if limit is None or len(head) <= limit]
        if len(fits) < len(heads):
            self._note_plain(f"an explanation prefix is longer than the sliding window ({limit + 1} tokens)")
        out = {}
        body = transformer_body(self.model)
        for start in range(0, len(fits), self.batch_size):
            chunk = fits[start:start + self.batch_size]
            ids, mask = pad_batch([heads[i] for i in chunk], self.pad_id, self.device)
            cache = self._new_cache()
            hidden = body(input_ids=ids, attention_mask=mask, use_cache=True,
                          **{self._cache_arg: cache}).last_hidden_state
            if any(getattr(layer, "keys", None) is None or layer.keys.ndim != 4 or layer.keys.shape[0] != len(chunk)
                   or layer.keys.shape[2] != ids.shape[1] for layer in cache.layers):
                self._note_plain("the model's KV cache does not hold the whole prefix")
                return {}
            lengths = [len(heads[i]) for i in chunk]
            ends = torch.tensor(lengths, device=hidden.device) - 1
            last = expected_bins(self.bin_head(hidden[torch.arange(len(chunk), device=hidden.device), ends]))
            for row, (i, n) in enumerate(zip(chunk, lengths)):
                out[i] = ([(layer.keys[row:row + 1, :, :n], layer.values[row:row + 1, :, :n])
                           for layer in cache.layers], float(last[row]))
        return out

    def _note_plain(self, why: str) -> None:
        if not self._warned_plain:
            log.info("fine-tuned simulator: %s, so some inputs run whole (no prefix KV reuse)", why)
            self._warned_plain = True
