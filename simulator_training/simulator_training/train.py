"""LoRA fine-tuning of the simulator: 11-bin cross-entropy at the text tokens, given the explanation prefix.

The model input and the bin read-out are ``ns_dspy.simulators.finetuned_format``'s (:func:`build_input`,
:func:`forward_bins`; tokens aligned by :func:`ns_dspy.simulators.align.align_to_tokenizer`), so what is
trained is exactly what ``finetuned:DIR`` runs. The loss is taken only at the positions that stand for the
exemplar's tokens (the explanation prefix and the padding are masked). Targets are graded (0..10, any real value): a target of 6.3 is the two-hot
distribution 0.7 on bin 6 and 0.3 on bin 7, and positions whose target is above zero weigh
``positive_weight`` times more, since most tokens of most exemplars are zero.

A batch is drawn with a generator seeded by ``(seed, step)``: families are sampled uniformly (so the small
families are not drowned by the many single-word units), then a unit, an exemplar and one of its
explanations. A run is therefore resumable exactly: every ``checkpoint_every`` steps the adapter, the bin
head, the optimizer and the step are written atomically to ``OUT/checkpoint``; rerunning the same command
continues from there. The finished adapter goes to ``OUT/adapter``
(:func:`ns_dspy.simulators.finetuned_adapter.save_adapter`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ns_dspy.atomic import atomic_dir, atomic_write_json
from ns_dspy.config import opt
from ns_dspy.errors import ConfigError
from ns_dspy.simulators.align import align_to_tokenizer
from ns_dspy.simulators.finetuned_adapter import peft_quietly, save_adapter, tokenizer_fingerprint
from ns_dspy.simulators.finetuned_format import (BinHead, build_input, forward_bins, keep_layers, pad_batch,
                                                 pad_id)

from .data import read_manifest, read_units
from .paraphrase import reworded

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "train", "Batcher", "bin_loss"]

LORA_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class TrainConfig:
    base_model: str = opt("gemma-3-270m", "base model: an offline name, a save_pretrained folder or a hub id")
    rank: int = opt(8, "LoRA rank")
    alpha: float = opt(16.0, "LoRA alpha (scaling alpha / rank)")
    dropout: float = opt(0.0, "LoRA dropout")
    targets: str = opt(LORA_TARGETS, "comma-separated module names that get LoRA adapters")
    dtype: str = opt("auto", "dtype of the frozen base weights: auto (bfloat16 where the device computes it fast, "
                             "else float32), bfloat16 or float32; adapters train in float32")
    gradient_checkpointing: bool = opt(False, "recompute activations in the backward pass (less memory, slower)")
    load_in_4bit: bool = opt(False, "load the base in 4-bit NF4 (QLoRA; needs CUDA and bitsandbytes)")
    steps: int = opt(1000, "optimizer steps")
    batch_size: int = opt(8, "(explanation, exemplar) pairs per step")
    lr: float = opt(3e-4, "peak learning rate of the LoRA weights")
    head_lr: float = opt(1e-3, "peak learning rate of the bin head")
    warmup: int = opt(30, "linear warm-up steps, then cosine decay to 10%")
    positive_weight: float = opt(3.0, "loss weight of positions whose target is above zero")
    max_tokens: int = opt(192, "longest input (explanation + exemplar) in tokens; longer exemplars are cut")
    checkpoint_every: int = opt(50, "steps between checkpoints")
    seed: int = opt(0, "seed of the batches and the initialisation")
    layers: int = opt(0, "keep only the base model's first N decoder layers (0: all): a larger base at the cost "
                         "of a smaller one; the adapter records N and is loaded the same way")
    init: str = opt("", "start from an adapter (a folder written by train/export, or a shipped name such as "
                        "gemma-3-270m) instead of fresh LoRA weights and bin head: its base, rank, targets and layers "
                        "must match; the optimizer starts fresh")

    def __post_init__(self) -> None:
        for name in ("rank", "steps", "batch_size", "checkpoint_every", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if self.layers < 0:
            raise ConfigError("--layers must be 0 (all) or a number of layers to keep")
        if self.dtype not in ("auto", "bfloat16", "float32", "float16"):
            raise ConfigError(f"--dtype must be auto, bfloat16, float16 or float32, not {self.dtype!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError("--dropout must be in [0, 1)")

    def fingerprint(self) -> dict:
        """What must not change when a run resumes (the number of steps may)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ("steps", "checkpoint_every") and not (k in ("init", "layers") and not v)}


def bin_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
             positive_weight: float = 3.0) -> torch.Tensor:
    """Weighted two-hot cross-entropy: ``logits (B, L, 11)``, ``targets (B, L)`` in 0..10, ``mask (B, L)``."""
    bins = logits.shape[-1]
    t = targets.clamp(0, bins - 1)
    low = t.floor().long().clamp(max=bins - 2)
    frac = (t - low.float()).unsqueeze(-1)
    soft = torch.zeros_like(logits, dtype=torch.float32)
    soft.scatter_(-1, low.unsqueeze(-1), 1 - frac)
    soft.scatter_add_(-1, (low + 1).unsqueeze(-1), frac)
    ce = -(soft * torch.log_softmax(logits.float(), dim=-1)).sum(-1)
    weight = mask.float() * torch.where(targets > 0, positive_weight, 1.0)
    return (ce * weight).sum() / weight.sum().clamp(min=1e-9)


class Batcher:
    """Draws training batches from dataset units (family-balanced), aligned to the simulator's tokenizer."""

    def __init__(self, units: list[dict], tokenizer, prefix_ids: list[int], *, max_tokens: int, seed: int):
        if not units:
            raise ConfigError("the dataset has no training units")
        self.units, self.tokenizer, self.prefix_ids = units, tokenizer, list(prefix_ids)
        self.max_tokens, self.seed = max_tokens, seed
        self.families: dict[str, list[int]] = {}
        for i, unit in enumerate(units):
            self.families.setdefault(unit["family"], []).append(i)
        self.family_names = sorted(self.families)
        self._aligned: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
        self._heads: dict[str, list[int]] = {}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def example(self, u: int, e: int, explanation: str) -> tuple[list[int], list[int], list[float]]:
        """``(input_ids, positions, targets)`` of one pair: the loss positions and their targets."""
        if (u, e) not in self._aligned:
            ex = self.units[u]["exemplars"][e]
            self._aligned[(u, e)] = align_to_tokenizer(self.tokenizer, ex["tokens"], ex["token_ids"])
        ids, read = self._aligned[(u, e)]
        if explanation not in self._heads:
            self._heads[explanation] = build_input(self._encode, self.prefix_ids, explanation, [])[0]
        head = self._heads[explanation]
        keep = max(1, self.max_tokens - len(head))
        targets = self.units[u]["exemplars"][e]["targets"]
        positions, values = [], []
        for j, r in enumerate(read):
            if r < keep:
                positions.append(len(head) + r)  # r == -1 reads the last prefix token
                values.append(float(targets[j]))
        return head + list(ids[:keep]), positions, values

    def batch(self, step: int, size: int) -> list[tuple[list[int], list[int], list[float]]]:
        rng = np.random.default_rng([self.seed, step])
        out = []
        for _ in range(size):
            family = self.families[self.family_names[rng.integers(len(self.family_names))]]
            u = int(family[rng.integers(len(family))])
            unit = self.units[u]
            e = int(rng.integers(len(unit["exemplars"])))
            # build-data --long adds long explanations, the paraphrase command LM rewordings
            texts = unit["explanations"] + unit.get("long_explanations", []) + reworded(unit)
            explanation = texts[int(rng.integers(len(texts)))]
            out.append(self.example(u, e, explanation))
        return out


def collate(examples, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    ids, attn = pad_batch([x for x, _, _ in examples], pad_id, device)
    targets = torch.zeros(ids.shape, dtype=torch.float32)
    mask = torch.zeros(ids.shape, dtype=torch.bool)
    for row, (_, positions, values) in enumerate(examples):
        targets[row, positions] = torch.tensor(values, dtype=torch.float32)
        mask[row, positions] = True
    return ids, attn, targets.to(device), mask.to(device)


def load_base(config: TrainConfig, device: str | None = None):
    """The base model (frozen) as a :class:`~ns_dspy.models.subject.Subject`, 4-bit if asked."""
    from ns_dspy.models.subject import load_subject

    if not config.load_in_4bit:
        subject = load_subject(config.base_model, dtype=config.dtype, device=device)
        if config.layers:
            keep_layers(subject.model, config.layers)
        return subject
    if not torch.cuda.is_available():
        raise ConfigError("--load-in-4bit needs a CUDA GPU (bitsandbytes); drop it on this machine")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ConfigError("--load-in-4bit needs bitsandbytes: pip install bitsandbytes") from None
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ns_dspy.models.offline import resolve_offline
    from ns_dspy.models.subject import Subject, prefix_ids

    source = str(resolve_offline(config.base_model) or config.base_model)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=getattr(torch, config.dtype))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quant, device_map={"": 0})
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load {config.base_model!r} in 4-bit: {str(err).splitlines()[0]}") from None
    if config.layers:
        keep_layers(model, config.layers)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    return Subject(name=config.base_model, model=model, tokenizer=tokenizer, prefix_ids=prefix_ids(tokenizer))


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _resolved(config: TrainConfig, device: str | None) -> TrainConfig:
    """``config`` with ``dtype`` ``auto`` resolved for ``device`` (the resolved name is what a checkpoint records,
    so a run resumes only in the dtype it began in). bfloat16 asked for where it is emulated trains ~100x slower
    (an AVX2-only CPU): warned, not refused."""
    from ns_dspy.models.subject import default_device, fast_bf16, resolve_dtype

    device = device or default_device()
    dtype = resolve_dtype(config.dtype, device)
    if dtype == "bfloat16" and config.dtype != "auto" and not fast_bf16(device):
        log.warning("bfloat16 is emulated on this %s (no AVX512-BF16/AMX): training will be ~100x slower than "
                    "with --dtype auto or float32", device)
    if dtype != config.dtype:
        log.info("--dtype %s: %s on %s", config.dtype, dtype, device)
    return replace(config, dtype=dtype)


def train(config: TrainConfig, data: str | Path, out: str | Path, *, device: str | None = None,
          progress: bool = True, max_minutes: float | None = None) -> Path:
    """Train (or resume) into ``out``; returns the adapter folder ``out/adapter``.

    ``max_minutes`` stops cleanly after that much training time (a checkpoint is written; rerun to continue).
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    from ns_dspy.models.subject import check_device

    check_device(device)  # before the data is read (the 4-bit path does not go through load_subject)
    out = Path(out)
    data_manifest = read_manifest(data)
    units = read_units(data, "train")
    config = _resolved(config, device)
    torch.manual_seed(config.seed)
    subject = load_base(config, device)
    model, tokenizer = subject.model, subject.tokenizer
    dev = next(model.parameters()).device
    trained_on = data_manifest.get("tokenizer")
    if trained_on and trained_on != tokenizer_fingerprint(tokenizer):
        log.info("dataset tokenized with %s; aligning its tokens to %s's tokenizer",
                 data_manifest.get("tokenizer_name"), config.base_model)
    for p in model.parameters():
        p.requires_grad_(False)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, bias="none",
                      target_modules=[t.strip() for t in config.targets.split(",") if t.strip()])
    try:
        with peft_quietly():
            model = get_peft_model(model, lora)
    except ValueError as err:
        raise ConfigError(f"cannot put LoRA on {config.targets!r} of {config.base_model}: "
                          f"{str(err).splitlines()[0]}") from None
    if config.gradient_checkpointing and not config.load_in_4bit:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    head = BinHead.from_output_rows(model, tokenizer).to(dev)
    head.weight.data = head.weight.data.float()
    head.bias.data = head.bias.data.float()
    lora_params = [p for n, p in model.named_parameters() if p.requires_grad]
    optim = torch.optim.AdamW([{"params": lora_params, "lr": config.lr},
                               {"params": list(head.parameters()), "lr": config.head_lr}], weight_decay=0.0)
    batcher = Batcher(units, tokenizer, subject.prefix_ids, max_tokens=config.max_tokens, seed=config.seed)
    pad = pad_id(tokenizer)

    ckpt = out / "checkpoint"
    state = {"step": 0, "seconds": 0.0, "config": config.fingerprint(), "data": _data_key(data_manifest)}
    if config.init:
        state["init"] = _init_from(config, model, head)
    if (ckpt / "state.json").is_file():
        saved = json.loads((ckpt / "state.json").read_text())
        if any(saved.get(k) != state.get(k) for k in ("config", "data", "init")):
            raise ConfigError(f"{out} holds a checkpoint of another configuration or dataset: "
                              "use a new --out or the same settings")
        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
        loaded = BinHead.load(ckpt / "bin_head.safetensors")
        head.load_state_dict(loaded.state_dict())
        optim.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=dev, weights_only=True))
        state.update(step=saved["step"], seconds=saved["seconds"])
        log.info("resuming %s at step %d", out, state["step"])
    out.mkdir(parents=True, exist_ok=True)
    if state["step"] >= config.steps and (out / "adapter").is_dir():
        return out / "adapter"

    autocast = config.dtype in ("bfloat16", "float16") and not config.load_in_4bit
    amp_dtype = getattr(torch, config.dtype)
    model.train()
    log_path = out / "train_log.jsonl"
    bar = tqdm(total=config.steps, initial=state["step"], desc="training simulator", disable=not progress,
               unit="step")
    started, last_ckpt, ema = time.perf_counter(), state["step"], None
    base_seconds = state["seconds"]
    while state["step"] < config.steps:
        step = state["step"]
        for group, base_lr in zip(optim.param_groups, (config.lr, config.head_lr)):
            group["lr"] = base_lr * _lr_factor(step, config)
        ids, attn, targets, mask = collate(batcher.batch(step, config.batch_size), pad, dev)
        with torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=autocast):
            logits = forward_bins(model, head, ids, attn)
        loss = bin_loss(logits, targets, mask, config.positive_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lora_params + list(head.parameters()), 1.0)
        optim.step()
        state["step"] = step + 1
        state["seconds"] = base_seconds + time.perf_counter() - started
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        bar.update(1)
        bar.set_postfix(loss=f"{ema:.3f}")
        with log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state["step"], "loss": round(value, 5), "lr": optim.param_groups[0]["lr"],
                                "seconds": round(state["seconds"], 1)}) + "\n")
        out_of_time = max_minutes is not None and time.perf_counter() - started > max_minutes * 60
        if state["step"] - last_ckpt >= config.checkpoint_every or state["step"] == config.steps or out_of_time:
            _checkpoint(ckpt, model, head, optim, state)
            last_ckpt = state["step"]
        if out_of_time and state["step"] < config.steps:
            bar.close()
            log.warning("stopped after %.1f min at step %d of %d: rerun the same command to continue",
                        max_minutes, state["step"], config.steps)
            return ckpt
    bar.close()
    model.eval()
    extra = {"training": {**asdict(config), "steps_done": state["step"], "seconds": round(state["seconds"], 1),
                          "data": _data_key(data_manifest), "final_loss_ema": round(ema or 0.0, 4),
                          **({"init_from": state["init"]} if config.init else {})}}
    if config.layers:
        extra["layers"] = config.layers
    return save_adapter(model, head, out / "adapter", base_model=config.base_model, tokenizer=tokenizer,
                        extra=extra, overwrite=True)


def _init_from(config: TrainConfig, model, head: BinHead) -> dict:
    """Load the adapter ``config.init`` into ``model`` (LoRA weights, as float32) and ``head``; what it was
    (folder, the sha256 of its weights, how it was trained) goes into the state, so a resumed run and the
    exported manifest say what training started from. A mismatch is one line, before any step."""
    import hashlib

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from ns_dspy.simulators.finetuned_adapter import (ADAPTER_FILE, HEAD_FILE, read_adapter_manifest,
                                                      resolve_adapter)

    folder = resolve_adapter(config.init)
    manifest = read_adapter_manifest(folder)
    lora = json.loads((folder / "adapter_config.json").read_text())
    theirs = {"base_model": manifest.get("base_model"), "rank": lora.get("r"), "alpha": lora.get("lora_alpha"),
              "targets": sorted(lora.get("target_modules") or []), "layers": int(manifest.get("layers") or 0)}
    ours = {"base_model": config.base_model, "rank": config.rank, "alpha": config.alpha,
            "targets": sorted(t.strip() for t in config.targets.split(",") if t.strip()), "layers": config.layers}
    diff = [f"{k} {theirs[k]!r} (ours {ours[k]!r})" for k in ours if theirs[k] != ours[k]]
    if diff:
        raise ConfigError(f"--init {config.init}: the adapter has {', '.join(diff)}: train with its settings")
    weights = {k: v.float() for k, v in load_file(str(folder / ADAPTER_FILE)).items()}
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise ConfigError(f"--init {config.init}: its weights lack {len(missing)} LoRA tensors of this model "
                          f"(e.g. {missing[0]}): train with its settings")
    loaded = BinHead.load(folder / HEAD_FILE)
    if loaded.weight.shape != head.weight.shape:
        raise ConfigError(f"--init {config.init}: its bin head is {tuple(loaded.weight.shape)}, this model's "
                          f"{tuple(head.weight.shape)}")
    head.load_state_dict({k: v.float() for k, v in loaded.state_dict().items()})
    digest = hashlib.sha256((folder / ADAPTER_FILE).read_bytes()).hexdigest()
    log.info("starting from adapter %s (sha256 %s)", folder, digest[:12])
    return {"folder": str(folder), "sha256": digest, "trained": manifest.get("training", {}).get("data")}


def _data_key(manifest: dict) -> dict:
    return {k: manifest.get(k) for k in ("source", "tokenizer_name", "seed", "units", "exemplars")}


def _checkpoint(folder: Path, model, head: BinHead, optim, state: dict) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    with atomic_dir(folder, overwrite=True) as tmp:
        weights = {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(weights, str(tmp / "adapter_model.safetensors"))
        head.save(tmp / "bin_head.safetensors")
        torch.save(optim.state_dict(), tmp / "optimizer.pt")
        atomic_write_json(tmp / "state.json", state)
