"""Fine-tuned simulator adapters on the tiny test models: a LoRA whose B matrices are random (they start at zero,
so an untouched adapter would change nothing) and a bin head, as the simulator tests and the conformance suite
build them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ns_dspy.models.subject import load_subject
from ns_dspy.simulators.finetuned_adapter import peft_quietly, save_adapter
from ns_dspy.simulators.finetuned_format import BinHead

__all__ = ["perturbed_lora", "bin_head", "random_adapter"]


def perturbed_lora(base, targets: Sequence[str], seed: int = 0):
    """(subject, peft model): ``base`` in float32 with a rank-4 LoRA on ``targets``, its B matrices random."""
    from peft import LoraConfig, get_peft_model

    subject = load_subject(str(base), dtype="float32", device="cpu")
    with peft_quietly():
        model = get_peft_model(subject.model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return subject, model


def bin_head(model, tokenizer) -> BinHead:
    """A bin head from the model's output rows, with a bias so that bins differ."""
    head = BinHead.from_output_rows(model, tokenizer)
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-1, 1, 11))
    return head


def random_adapter(base, out, targets: Sequence[str], seed: int = 0, **save):
    """A saved simulator folder (``save_adapter``) with :func:`perturbed_lora` and :func:`bin_head`."""
    subject, model = perturbed_lora(base, targets, seed)
    return save_adapter(model, bin_head(model, subject.tokenizer), out, base_model=str(base),
                        tokenizer=subject.tokenizer, **save)
