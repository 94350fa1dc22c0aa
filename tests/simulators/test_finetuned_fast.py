"""The fine-tuned simulator's fast path (merged LoRA, prefix KV reuse, length batching) against the naive loop.

The naive loop is the unmerged peft model running every (explanation, exemplar) pair's whole input; the fast
path must predict the same values (float32 on CPU: only the order of float sums differs). Run on the tiny Llama
and on a tiny Gemma-3 whose hybrid cache mixes sliding-window and full-attention layers, with a window shorter
than prefix + exemplar so the sliding masks matter.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

from ns_dspy.models.subject import load_subject
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_adapter import peft_quietly
from ns_dspy.simulators.finetuned_format import BinHead, format_explanation
from ns_dspy.types import Exemplar
from tiny_adapters import random_adapter

TEXTS = ["The cat sat on the mat. The dog chased the cat around the garden until noon.",
         "def add(a, b):\n    return a + b\n",
         "On Monday the market opened early; on Friday it closed late.",
         "Rivers flow into the sea, and the sea returns rain to the mountains.",
         "She said, \"Peace be with you,\" and left the room quietly at dawn."]
EXPLANATIONS = ["animals such as cats and dogs", "days of the week", "Python keywords", "x"]
LONG = "words about rivers, seas, rain and mountains, and the weather over them in every season of the year"
TOLERANCE = 1e-3  # of the 0..10 scale


def _adapter(base, out, seed: int):
    return random_adapter(base, out, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                          seed)


@pytest.fixture(scope="module")
def tiny_gemma3(tiny_llama, tmp_path_factory):
    """A 3-layer Gemma-3 (sliding, full, sliding; window 48 tokens) with the tiny Llama's tokenizer."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    torch.manual_seed(2)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, sliding_window=48,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                           max_position_embeddings=512, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    path = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _exemplars(tokenizer) -> list[Exemplar]:
    out = []
    for k, text in enumerate(TEXTS + [TEXTS[0] + " " + TEXTS[3]]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        tokens = [tokenizer.decode([i]) for i in ids]
        if k == 1:  # imported: another segmentation, strings only
            tokens = re.findall(r"\s*\S+", text)
            ids = None
        if k == 2:  # an empty token at the start is read just before the text
            tokens, ids = [""] + tokens, None
        out.append(Exemplar(tokens=tokens, activations=np.zeros(len(tokens)), token_ids=ids))
    out.append(Exemplar(tokens=[], activations=[]))
    out.append(Exemplar(tokens=["", ""], activations=np.zeros(2)))  # no simulator tokens at all
    return out


def _fast_and_naive(folder, batch_size: int = 3):
    fast = FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu", batch_size=batch_size)
    naive = FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu", batch_size=batch_size,
                                               merge=False)
    naive.reuse_prefix = False
    return fast, naive


def _max_diff(a, b, exemplars) -> float:
    worst = 0.0
    for row_a, row_b in zip(a, b):
        for pa, pb, ex in zip(row_a, row_b, exemplars):
            assert pa.dtype == np.float32 and pa.shape == pb.shape == (len(ex.tokens),)
            if len(pa):
                worst = max(worst, float(np.abs(pa - pb).max()))
    return worst


@pytest.mark.parametrize("base", ["tiny_llama", "tiny_gemma3"])
def test_fast_path_matches_the_naive_loop(base, request, tmp_path, monkeypatch):
    folder = _adapter(request.getfixturevalue(base), tmp_path / "sim", seed=3)
    fast, naive = _fast_and_naive(folder)
    assert not hasattr(fast.model, "peft_config") and hasattr(naive.model, "peft_config")  # merged vs not
    assert fast.cache_key.endswith("/merged") and not naive.cache_key.endswith("/merged")
    exemplars = _exemplars(fast.tokenizer)
    expected = naive.simulate(EXPLANATIONS, exemplars)
    plain_jobs = []
    original = FinetunedSimulator._simulate_full
    monkeypatch.setattr(FinetunedSimulator, "_simulate_full",
                        lambda self, heads, texts, jobs, *out: (plain_jobs.extend(jobs),
                                                                original(self, heads, texts, jobs, *out)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = fast.simulate(EXPLANATIONS, exemplars)
    assert plain_jobs == []  # every pair went through the prefix cache
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []
    assert _max_diff(got, expected, exemplars) <= TOLERANCE
    assert not np.allclose(got[0][0], got[1][0], atol=1e-2)  # the explanation still matters
    np.testing.assert_allclose(got[0][2][0], got[0][-1][0], atol=TOLERANCE)  # both read just before the text
    # the same call again reuses the alignments and gives the same values
    again = fast.simulate(EXPLANATIONS, exemplars)
    assert _max_diff(again, got, exemplars) == 0.0


def test_hybrid_cache_crosses_the_sliding_window(tiny_gemma3, tmp_path):
    """Prefix + exemplar is longer than the 48-token window; a prefix longer than the window falls back to
    whole inputs for that explanation only, and both agree with the naive loop."""
    folder = _adapter(tiny_gemma3, tmp_path / "sim", seed=4)
    fast, naive = _fast_and_naive(folder, batch_size=4)
    tok = fast.tokenizer
    assert len(tok(format_explanation(EXPLANATIONS[0]))["input_ids"]) < 48 < len(
        tok(format_explanation(LONG))["input_ids"])
    exemplars = _exemplars(tok)
    assert max(len(e.tokens) for e in exemplars) + 30 > 48
    explanations = [EXPLANATIONS[0], LONG, EXPLANATIONS[3]]
    got, expected = fast.simulate(explanations, exemplars), naive.simulate(explanations, exemplars)
    assert _max_diff(got, expected, exemplars) <= TOLERANCE


def test_in_memory_peft_model_is_not_merged(tiny_llama, tmp_path):
    """A model handed in (as training does) keeps its LoRA layers: the simulator never merges what it is given."""
    from peft import PeftModel

    folder = _adapter(tiny_llama, tmp_path / "sim", seed=5)
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    with peft_quietly():
        model = PeftModel.from_pretrained(subject.model, str(folder))
    head = BinHead.load(folder / "bin_head.safetensors")
    sim = FinetunedSimulator(model, subject.tokenizer, subject.prefix_ids, head, {"base_model": "x"}, batch_size=2)
    exemplars = _exemplars(subject.tokenizer)
    got = sim.simulate(EXPLANATIONS[:2], exemplars)
    assert hasattr(sim.model, "peft_config") and any("lora_" in n for n, _ in sim.model.named_parameters())
    sim.reuse_prefix = False
    assert _max_diff(got, sim.simulate(EXPLANATIONS[:2], exemplars), exemplars) <= TOLERANCE


def test_loading_an_adapter_warns_nothing(tiny_llama, tmp_path):
    """Loading an adapter raises no warning of its own: peft reads transformers' deprecated
    ``is_gradient_checkpointing`` on every load (a FutureWarning on transformers 5.x), which would reach every
    ``ns-dspy explain``/``score`` terminal; the simulator silences that one only."""
    folder = _adapter(tiny_llama, tmp_path / "sim", seed=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu")
        FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu", merge=False)
    assert [str(w.message) for w in caught if "checkpointing" in str(w.message)] == []
