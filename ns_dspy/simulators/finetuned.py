"""A fine-tuned simulator (Choi et al. 2024): a base LM + a LoRA adapter + an 11-bin head, one pass per text.

The input for one (explanation, exemplar) pair is::

    prefix_ids + encode("Neuron explanation: {explanation}\\nText:\\n") + exemplar token ids

and the body runs once over it. At every exemplar token ``t`` the final hidden state (which sees tokens
``<= t``, as the neuron does) goes through :class:`BinHead` to 11 logits, one per activation bin 0..10; the
prediction is the expected bin under their softmax. So one forward pass predicts every token of the text.

This module is the one definition of that format: ``simulator_training/`` imports :func:`format_explanation`,
:func:`build_input`, :func:`pad_batch`, :func:`forward_bins` and :func:`save_adapter` from here, so the
training objective and inference share one code path. Bump :data:`FORMAT_VERSION` whenever the input format
or the folder layout changes: it is checked on load and is part of the cache key.

An adapter folder written by :func:`save_adapter` holds (safetensors and JSON only, never pickles):

* ``adapter_model.safetensors``, ``adapter_config.json``: the peft LoRA adapter;
* ``bin_head.safetensors``: the bin head's ``weight`` (11, hidden) and ``bias`` (11,);
* ``ns_dspy_simulator.json``: the manifest (format, version, base model name, tokenizer fingerprint, bins).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_dir, atomic_write_json
from ..errors import ConfigError, ModelError
from ..types import Exemplar
from .base import BINS, Simulator

__all__ = ["FORMAT_VERSION", "FORMAT_NAME", "MANIFEST", "BIN_WORDS", "SHIPPED_DIR", "shipped_adapters", "resolve_adapter", "format_explanation", "build_input",
           "align_tokens", "pad_batch", "forward_bins", "expected_bins", "tokenizer_fingerprint", "BinHead",
           "save_adapter", "FinetunedSimulator"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""Version of the input format and folder layout; an adapter saved with another version is refused."""

FORMAT_NAME = "ns-dspy-finetuned-simulator"
MANIFEST = "ns_dspy_simulator.json"
ADAPTER_FILE = "adapter_model.safetensors"
HEAD_FILE = "bin_head.safetensors"

BIN_WORDS = (" zero", " one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten")
"""Bin ``b`` starts from the output-embedding row of ``BIN_WORDS[b]`` (its first sub-token if it splits)."""

SHIPPED_DIR = Path(__file__).resolve().parent / "trained"
"""Adapters that ship with ns_dspy, one folder per name (``finetuned:gemma-3-270m``); see ``simulator_training/``."""

_FINGERPRINT_IDS = 5000
_FINGERPRINT_PROBE = "Neuron 7 fires on cats."


# ----------------------------------------------------------------------------------------- input format

def format_explanation(explanation: str) -> str:
    """The text before the exemplar: ``"Neuron explanation: {explanation}\\nText:\\n"``.

    Runs of whitespace in the explanation (newlines included) become single spaces, so an explanation is
    always one line and the text always starts on the line after ``Text:``.
    """
    return f"Neuron explanation: {' '.join(explanation.split())}\nText:\n"


def build_input(tokenizer_encode: Callable[[str], list[int]], prefix_ids: Sequence[int], explanation: str,
                token_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """``(input_ids, positions)``: the model input for one pair and the index of each exemplar token in it.

    ``tokenizer_encode`` encodes without special tokens (e.g. ``Subject.encode``); ``prefix_ids`` are the
    special tokens the tokenizer puts before text (``Subject.prefix_ids``, e.g. ``<bos>``). The exemplar's
    tokens come last, so ``positions`` is ``range(len(input_ids) - len(token_ids), len(input_ids))``.
    """
    head = list(prefix_ids) + list(tokenizer_encode(format_explanation(explanation)))
    return head + list(token_ids), list(range(len(head), len(head) + len(token_ids)))


def align_tokens(tokenizer, tokens: Sequence[str],
                 token_ids: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """``(ids, read)``: this tokenizer's ids for a text given as ``tokens``, and where to read each token.

    ``read[j]`` is the index in ``ids`` whose prediction stands for ``tokens[j]``, or ``-1`` for "the position
    just before the text" (an empty token at the start). ``token_ids`` are used as they are when every id is
    in this vocabulary and decodes, one by one, to its token string (the exemplar was recorded with this
    tokenizer). Otherwise the joined text is encoded and token ``j`` (characters ``[s, e)``) is read at the last
    simulator token ending inside ``(s, e]``; if none does, at the simulator token straddling ``e`` (it has
    seen all of token ``j`` and a little of what follows); an empty token is read at the last simulator
    token ending at or before ``s``.
    """
    tokens = list(tokens)
    if token_ids is not None and len(token_ids) == len(tokens):
        n = len(tokenizer)
        if all(0 <= int(i) < n for i in token_ids) and all(
                tokenizer.decode([int(i)]) == t for i, t in zip(token_ids, tokens)):
            return [int(i) for i in token_ids], list(range(len(tokens)))
    if not getattr(tokenizer, "is_fast", False):
        return _align_by_pieces(tokenizer, tokens)
    enc = tokenizer("".join(tokens), add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    starts = [s for s, _ in offsets]
    ends = [e for _, e in offsets]
    read, pos = [], 0
    for tok in tokens:
        s, e = pos, pos + len(tok)
        pos = e
        last = bisect.bisect_right(ends, e) - 1  # last simulator token ending at or before e
        if s < e and last >= 0 and ends[last] > s:
            read.append(last)
        elif s < e and last + 1 < len(ids) and starts[last + 1] < e:
            read.append(last + 1)
        else:
            read.append(last)
    return ids, read


def _align_by_pieces(tokenizer, tokens: list[str]) -> tuple[list[int], list[int]]:
    """Slow tokenizers have no offsets: encode each token on its own and read at its last piece."""
    ids: list[int] = []
    read = []
    for tok in tokens:
        ids.extend(tokenizer(tok, add_special_tokens=False)["input_ids"] if tok else [])
        read.append(len(ids) - 1)
    return ids, read


def pad_batch(inputs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to ``(input_ids, attention_mask)``, both ``(B, L)`` long tensors."""
    width = max(len(x) for x in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, x in enumerate(inputs):
        ids[row, :len(x)] = torch.tensor(list(x), dtype=torch.long)
        mask[row, :len(x)] = 1
    return ids.to(device), mask.to(device)


def _body(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body (no output layer) of a causal LM, a peft-wrapped one included."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "base_model", model)


def _hidden_size(model: torch.nn.Module) -> int:
    return int(model.get_output_embeddings().weight.shape[1])


def forward_bins(model: torch.nn.Module, bin_head: "BinHead", input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    """Bin logits ``(B, L, 11)`` (float32) at every position: one pass of the body, then the bin head.

    The same function serves inference (under ``torch.inference_mode``) and training (gradients flow into
    the LoRA weights and the bin head), so both read bins exactly the same way.
    """
    out = _body(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return bin_head(out.last_hidden_state)


def expected_bins(logits: torch.Tensor) -> torch.Tensor:
    """Bin logits ``(..., 11)`` -> expected bin ``(...)`` in [0, 10] under their softmax."""
    probs = torch.softmax(logits.float(), dim=-1)
    return probs @ torch.arange(logits.shape[-1], dtype=torch.float32, device=logits.device)


# ----------------------------------------------------------------------------------------- bin head

class BinHead(torch.nn.Module):
    """11 bin logits from a hidden state: ``hidden @ weight.T + bias``, computed in float32."""

    def __init__(self, hidden_size: int, bins: int = BINS):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(bins, hidden_size))
        self.bias = torch.nn.Parameter(torch.zeros(bins))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden.to(self.weight.dtype) @ self.weight.T + self.bias

    @classmethod
    def from_output_rows(cls, model: torch.nn.Module, tokenizer) -> "BinHead":
        """Start from the output-embedding rows of :data:`BIN_WORDS` (first sub-token of each), bias 0.

        The untrained head then reads the base model's own preference among " zero" .. " ten"; two words that
        share a first sub-token start with equal rows and are told apart by training.
        """
        rows = model.get_output_embeddings().weight
        ids = [tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in BIN_WORDS]
        head = cls(rows.shape[1], len(BIN_WORDS))
        with torch.no_grad():
            head.weight.copy_(rows[ids].detach().float().cpu())
        return head.to(rows.device)

    @classmethod
    def load(cls, path: str | Path) -> "BinHead":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        weight, bias = tensors.get("weight"), tensors.get("bias")
        if weight is None or bias is None or weight.ndim != 2 or bias.shape != (weight.shape[0],):
            raise ConfigError(f"{path} is not a bin head (needs weight (bins, hidden) and bias (bins,)): "
                              "write it with save_adapter")
        head = cls(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            head.weight.copy_(weight.float())
            head.bias.copy_(bias.float())
        return head

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        save_file({"weight": self.weight.detach().float().cpu().contiguous(),
                   "bias": self.bias.detach().float().cpu().contiguous()}, str(path))


# ----------------------------------------------------------------------------------------- saving

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


def _read_manifest(folder: Path) -> dict:
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
    return manifest


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

class FinetunedSimulator(Simulator):
    """Simulates with a LoRA-adapted base LM and a bin head; ``finetuned:ADAPTER_DIR``.

    Build it with :meth:`from_pretrained` (or inject an already loaded peft/merged model, e.g. in training).
    ``batch_size`` (explanation, exemplar) pairs go through one right-padded forward pass.
    """

    kind = "finetuned"

    def __init__(self, model: torch.nn.Module, tokenizer, prefix_ids: Sequence[int], bin_head: BinHead,
                 manifest: dict, *, batch_size: int = 16, weights_digest: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        hidden = _hidden_size(model)
        if bin_head.weight.shape[1] != hidden:
            raise ModelError(f"bin head of width {bin_head.weight.shape[1]} does not fit a base model of hidden "
                             f"size {hidden}: load the adapter with the base model it was trained on")
        self.model, self.tokenizer, self.prefix_ids = model, tokenizer, list(prefix_ids)
        self.manifest, self.batch_size = dict(manifest), batch_size
        self.device = next(model.parameters()).device
        self.bin_head = bin_head.to(self.device).eval()
        self.pad_id = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
        digest = weights_digest or _memory_digest(model, self.bin_head)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self._cache_key = (f"{self.kind}/v{FORMAT_VERSION}/{self.manifest.get('base_model', '?')}/"
                           f"{digest[:16]}/{dtype}")

    @property
    def cache_key(self) -> str:
        return self._cache_key

    @classmethod
    def from_pretrained(cls, adapter_dir: str | Path, *, base_model: str | None = None, dtype: str = "auto",
                        device: str | None = None, batch_size: int = 16) -> "FinetunedSimulator":
        """Load an adapter folder onto its base model (``base_model`` overrides the manifest's name; it must
        have the same tokenizer)."""
        from peft import PeftModel

        from ..models.subject import load_subject

        folder = resolve_adapter(adapter_dir)
        manifest = _read_manifest(folder)
        trained_on = manifest.get("base_model", "?")
        subject = load_subject(base_model or trained_on, dtype=dtype, device=device)
        if tokenizer_fingerprint(subject.tokenizer) != manifest.get("tokenizer"):
            if base_model:
                raise ModelError(f"base model {base_model!r} has another tokenizer than {trained_on!r}, which "
                                 f"adapter {folder} was trained on: load it with that base model")
            raise ModelError(f"the tokenizer of {trained_on!r} changed since adapter {folder} was trained on it: "
                             "restore that base model or retrain the adapter")
        head = BinHead.load(folder / HEAD_FILE)
        if head.weight.shape[1] != _hidden_size(subject.model):
            raise ModelError(f"adapter {folder} was trained on a model of hidden size {head.weight.shape[1]}, "
                             f"not {base_model or trained_on!r}: load it with the base model it was trained on")
        try:
            model = PeftModel.from_pretrained(subject.model, str(folder))
        except (ValueError, KeyError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelError(f"cannot apply adapter {folder} to {subject.name!r}: {first}") from None
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
        ``batch_size``, ``base_model``."""
        if not arg:
            raise ConfigError("give the adapter folder: finetuned:PATH")
        known = {k: v for k, v in options.items()
                 if k in ("dtype", "device", "batch_size", "base_model") and v is not None}
        return cls.from_pretrained(arg, **known)

    def bin_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, L, 11)`` bin logits for a padded batch: :func:`forward_bins` with this simulator's weights."""
        return forward_bins(self.model, self.bin_head, input_ids, attention_mask)

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        encode = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        aligned = [align_tokens(self.tokenizer, ex.tokens, ex.token_ids) for ex in exemplars]
        heads = [build_input(encode, self.prefix_ids, e, [])[0] for e in explanations]
        preds: list[list[np.ndarray]] = [[np.zeros(0, np.float32)] * len(exemplars) for _ in explanations]
        jobs = [(i, j) for i in range(len(explanations)) for j in range(len(exemplars)) if exemplars[j].tokens]
        jobs.sort(key=lambda ij: -(len(heads[ij[0]]) + len(aligned[ij[1]][0])))  # similar lengths together
        with torch.inference_mode():
            for start in range(0, len(jobs), self.batch_size):
                batch = jobs[start:start + self.batch_size]
                inputs = [heads[i] + aligned[j][0] for i, j in batch]
                ids, mask = pad_batch(inputs, self.pad_id, self.device)
                values = expected_bins(self.bin_logits(ids, mask)).cpu().numpy()
                for row, (i, j) in enumerate(batch):
                    read = len(heads[i]) + np.asarray(aligned[j][1], dtype=np.int64)
                    preds[i][j] = values[row, read].astype(np.float32)
        return preds
