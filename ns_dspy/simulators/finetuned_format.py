"""The fine-tuned simulator's model input and bin read-out: the one definition shared by inference
(:mod:`.finetuned`) and ``simulator_training/``, so the training objective and inference share one code path.

The input for one (explanation, exemplar) pair is::

    prefix_ids + encode("Neuron explanation: {explanation}\\nText:\\n") + exemplar token ids

(:func:`build_input`; the exemplar's tokens are first put in the simulator's tokenizer by
:func:`~ns_dspy.simulators.align.align_to_tokenizer`) and the body runs once over it. At every exemplar token
the final hidden state goes through :class:`BinHead` to 11 logits, one per activation bin 0..10
(:func:`forward_bins`); the prediction is the expected bin under their softmax (:func:`expected_bins`).

Bump :data:`FORMAT_VERSION` whenever the input format or the adapter folder layout
(:mod:`.finetuned_adapter`) changes: it is checked on load and is part of the cache key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..errors import ConfigError
from .base import BINS

__all__ = ["FORMAT_VERSION", "BIN_WORDS", "format_explanation", "build_input", "pad_id", "pad_batch",
           "transformer_body", "keep_layers", "quantize_int8", "is_int8", "model_hidden_size", "forward_bins",
           "expected_bins", "BinHead"]

FORMAT_VERSION = 1
"""Version of the input format and folder layout; an adapter saved with another version is refused."""

BIN_WORDS = (" zero", " one", " two", " three", " four", " five", " six", " seven", " eight", " nine", " ten")
"""Bin ``b`` starts from the output-embedding row of ``BIN_WORDS[b]`` (its first sub-token if it splits)."""


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


def pad_id(tokenizer) -> int:
    """The id that pads a batch for ``tokenizer``: its pad token, else its end-of-sequence token, else 0 (padded
    positions are masked, so only its being a valid id matters)."""
    return next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)


def pad_batch(inputs: Sequence[Sequence[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to ``(input_ids, attention_mask)``, both ``(B, L)`` long tensors."""
    width = max(len(x) for x in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(inputs), width), dtype=torch.long)
    for row, x in enumerate(inputs):
        ids[row, :len(x)] = torch.tensor(list(x), dtype=torch.long)
        mask[row, :len(x)] = 1
    return ids.to(device), mask.to(device)


def transformer_body(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body (no output layer) of a causal LM, a peft-wrapped one included."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return getattr(model, "base_model", model)


def keep_layers(model: torch.nn.Module, n: int) -> None:
    """Keep only the first ``n`` decoder layers of a causal LM, in place: the final norm then reads layer ``n``'s
    output. A larger base cut to a few layers costs what a smaller model does (``simulator_training``'s
    ``--layers``; an adapter trained so records it and is loaded the same way). Refused in one line for a model
    without a decoder-layer list (Llama, Qwen, Gemma, Mistral have one) or an ``n`` outside 1..its layers."""
    body = transformer_body(model)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(f"cannot keep {n} layers of a {type(body).__name__}: it has no decoder-layer list "
                          "(use a Llama-, Qwen- or Gemma-style model, or all its layers)")
    if not 1 <= n <= len(layers):
        raise ConfigError(f"cannot keep {n} layers: the model has {len(layers)} decoder layers")
    body.layers = layers[:n]
    body.config.num_hidden_layers = n
    if isinstance(getattr(body.config, "layer_types", None), list):
        body.config.layer_types = body.config.layer_types[:n]


INT8_KEPT = ("down_proj", "fc2", "c_proj", "dense_4h_to_h", "w2")
"""Linear layers :func:`quantize_int8` leaves in float: the MLP's output projections, whose inputs carry the
few very large activations (LLM.int8's outlier features) that one int8 scale per row cannot hold."""


def quantize_int8(model: torch.nn.Module) -> None:
    """Run the decoder layers' linear layers in int8 on CPU, in place: weights quantized per output channel,
    activations per row at run time (torch's dynamic quantization, fbgemm/oneDNN kernels of any x86-64 CPU with
    AVX2), except the MLP output projections (:data:`INT8_KEPT`), the embeddings and the output layer. Only for a
    merged float32 model on CPU: the caller checks that."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    body = transformer_body(model)
    names = {name: per_channel_dynamic_qconfig for name, module in body.named_modules()
             if isinstance(module, torch.nn.Linear) and name.rsplit(".", 1)[-1] not in INT8_KEPT}
    if not names:
        raise ConfigError(f"a {type(body).__name__} has no linear layers to run in int8: drop quantize=int8")
    with warnings.catch_warnings():  # torch.ao's notice that eager quantization moves to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(body, names, dtype=torch.qint8, inplace=True)


def is_int8(model: torch.nn.Module) -> bool:
    """Whether :func:`quantize_int8` ran on ``model``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())


def model_hidden_size(model: torch.nn.Module) -> int:
    """The width of a causal LM's final hidden state (what the bin head reads)."""
    return int(model.get_output_embeddings().weight.shape[1])


def forward_bins(model: torch.nn.Module, bin_head: "BinHead", input_ids: torch.Tensor,
                 attention_mask: torch.Tensor) -> torch.Tensor:
    """Bin logits ``(B, L, 11)`` (float32) at every position: one pass of the body, then the bin head.

    The same function serves inference (under ``torch.inference_mode``) and training (gradients flow into
    the LoRA weights and the bin head), so both read bins exactly the same way.
    """
    out = transformer_body(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
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

