"""The local prompted simulator: a causal LM reads the all-at-once prompt and its bin-token logits are read.

For every (explanation, exemplar) pair the prompt of :mod:`ns_dspy.simulators.prompt` is scored in one forward
pass: the next-token distribution right after each ``token<TAB>`` slot, restricted to the bin tokens "0".."10",
gives the expected activation of that token. Three things keep this close to a plain forward pass in cost:

* the prefix (header + explanation) is the same for every exemplar of one explanation: it runs once, with
  ``use_cache=True``, and its KV cache is repeated along the batch dimension for every batch of exemplars;
* exemplar bodies are batched, longest first, right-padded to the longest body of their batch (a causal model
  never lets a slot see the padding after it, and the attention mask excludes it as well);
* the full-vocabulary logits are never computed: the body's (already normed) hidden states at the slot
  positions are multiplied by the output-embedding rows of the bin tokens only (plus bias and final logit
  soft-capping where the model has them).

The prompt is text, so exemplars that carry only token strings (imported from another tokenizer) work as is.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ..models.subject import Subject, kv_cache_keyword, load_subject
from ..types import Exemplar
from .base import Simulator, positive
from .bins import bin_token_ids, expected_value
from .prompt import PROMPT_VERSION, encode_pieces, prompt_pieces

__all__ = ["PromptedSimulator"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"


@dataclasses.dataclass
class PromptedOptions:
    """``prompted`` options."""

    dtype: str = "auto"
    """dtype of the model: auto, bfloat16, float16 or float32."""
    device: str | None = None
    """device of the model (None: cuda if any)."""
    batch_size: int = 16
    """exemplar bodies per forward pass."""

    def __post_init__(self) -> None:
        positive("prompted", "batch_size", self.batch_size)


class PromptedSimulator(Simulator):
    """Simulates with a local causal LM prompted with the explanation (no fine-tuning).

    Args:
        subject: the loaded model and tokenizer that read the prompt (injected, never built here).
        batch_size: exemplar bodies per forward pass.
        name: the model's name in :attr:`cache_key` (default ``subject.name``).

    One call at a time per instance (the model is shared, not copied).
    """

    kind = "prompted"
    Options = PromptedOptions

    def __init__(self, subject: Subject, *, batch_size: int = 16, name: str | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.subject = subject
        self.batch_size = batch_size
        self.name = name or subject.name
        self.bins, self.bin_ids = bin_token_ids(subject.encode)
        model = subject.model
        head = model.get_output_embeddings()
        if head is None:
            raise ModelError(f"{self.name} has no output embedding: a prompted simulator needs a causal LM")
        self._rows = head.weight[self.bin_ids].detach().float()          # (n_bins, hidden)
        bias = getattr(head, "bias", None)
        self._bias = bias[self.bin_ids].detach().float() if bias is not None else None
        text_config = model.config.get_text_config()
        self._softcap = getattr(text_config, "final_logit_softcapping", None)
        self._max_positions = getattr(text_config, "max_position_embeddings", None)
        self._rotary = getattr(text_config, "rope_parameters", None) is not None
        tok = subject.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self._pad_id = int(pad) if pad is not None else 0
        self._warned_long = False
        self._cache_arg = kv_cache_keyword(subject.body)
        if self._cache_arg is None:
            raise ModelError(f"{self.name} takes no KV cache: a prompted simulator reads every text after one "
                             "cached prompt; use a causal LM with one")

    @property
    def cache_key(self) -> str:
        dtype = str(next(self.subject.model.parameters()).dtype).removeprefix("torch.")
        bins = ",".join(map(str, self.bins))
        return f"{self.kind}|{self.name}|{dtype}|{PROMPT_VERSION}|bins={bins}"

    @classmethod
    def from_spec(cls, arg: str, **options) -> "PromptedSimulator":
        """``prompted[:MODEL]``: load MODEL (default gemma-3-270m); options ``dtype``, ``device``, ``batch_size``."""
        opts = cls.parse_options(options)
        subject = load_subject(arg or DEFAULT_MODEL, dtype=opts.dtype, device=opts.device)
        return cls(subject, batch_size=opts.batch_size)

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        explanations, exemplars = list(explanations), list(exemplars)
        # The body (token lines) does not depend on the explanation: encode it once per exemplar.
        bodies = [encode_pieces(prompt_pieces("", ex.tokens), self.subject.encode)[1:] for ex in exemplars]
        order = sorted(range(len(bodies)), key=lambda j: -len(bodies[j][0]))
        chunks = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        preds: list[list[np.ndarray]] = []
        with torch.inference_mode():
            for explanation in explanations:
                prefix = self.subject.prefix_ids + encode_pieces(prompt_pieces(explanation, []),
                                                                 self.subject.encode)[0]
                self._check_length(len(prefix) + max((len(b) for b, _ in bodies), default=0))
                cache = self._prefix_cache(prefix)
                row: list[np.ndarray | None] = [None] * len(exemplars)
                for chunk in chunks:
                    for j, values in zip(chunk, self._read_chunk(cache, len(prefix), [bodies[j] for j in chunk])):
                        row[j] = values
                preds.append(row)  # type: ignore[arg-type]
        return preds

    def prompt_tokens(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> tuple[int, int]:
        """(prefix tokens summed over explanations, body tokens summed over pairs) that :meth:`simulate` runs."""
        prefix = sum(len(self.subject.prefix_ids) + len(encode_pieces(prompt_pieces(e, []), self.subject.encode)[0])
                     for e in explanations)
        body = sum(len(encode_pieces(prompt_pieces("", ex.tokens), self.subject.encode)[1]) for ex in exemplars)
        return prefix, body * len(explanations)

    def _check_length(self, n: int) -> None:
        if self._max_positions is None or n <= self._max_positions:
            return
        if not self._rotary:
            raise ModelError(f"a prompt of {n} tokens exceeds {self.name}'s {self._max_positions} positions: "
                             "simulate shorter exemplars")
        if not self._warned_long:
            log.warning("a prompt of %d tokens exceeds %s's max_position_embeddings (%d); predictions may degrade",
                        n, self.name, self._max_positions)
            self._warned_long = True

    def _prefix_cache(self, prefix: list[int]):
        from transformers import DynamicCache

        ids = torch.tensor([prefix], dtype=torch.long, device=self.subject.device)
        cache = DynamicCache(config=self.subject.body.config)  # filled in place, as the forward would make it
        self.subject.body(input_ids=ids, use_cache=True, **{self._cache_arg: cache})
        return cache

    def _read_chunk(self, prefix_cache, n_prefix: int, bodies: list[tuple[list[int], list[int]]]) -> list[np.ndarray]:
        """Expected value at every slot of each body, reading them after the cached prefix."""
        width = max(len(ids) for ids, _ in bodies)
        if width == 0:
            return [np.zeros(0, dtype=np.float32) for _ in bodies]
        device = self.subject.device
        ids = torch.full((len(bodies), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(bodies), n_prefix + width), dtype=torch.long)
        for b, (body, _) in enumerate(bodies):
            ids[b, :len(body)] = torch.tensor(body, dtype=torch.long)
            mask[b, :n_prefix + len(body)] = 1
        cache = copy.deepcopy(prefix_cache)  # the forward appends to the cache it is given
        cache.batch_repeat_interleave(len(bodies))
        hidden = self.subject.body(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=True,
                                   **{self._cache_arg: cache}).last_hidden_state
        rows = torch.tensor([b for b, (_, slots) in enumerate(bodies) for _ in slots], dtype=torch.long)
        cols = torch.tensor([s for _, slots in bodies for s in slots], dtype=torch.long)
        states = hidden[rows.to(device), cols.to(device)].float()               # (slots, hidden)
        logits = states @ self._rows.T
        if self._bias is not None:
            logits = logits + self._bias
        if self._softcap:
            logits = torch.tanh(logits / self._softcap) * self._softcap
        values = expected_value(logits, list(range(len(self.bins))), self.bins).astype(np.float32)
        return list(np.split(values, np.cumsum([len(slots) for _, slots in bodies])[:-1]))
