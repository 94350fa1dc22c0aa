"""The prompted simulator against a naive reference: one full-model forward per (explanation, exemplar) pair.

The reference runs the whole prompt (``<bos>`` if any, prefix and body ids concatenated as
:func:`encode_pieces` cuts them) through the causal LM with its full-vocabulary logits and takes the softmax
over the bin tokens at each slot, so agreement checks the prefix KV reuse, the padding of batched bodies and
the bin-row shortcut at once.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import ns_dspy.simulators.prompted  # noqa: F401  (registers kind "prompted")
from ns_dspy.models import load_subject
from ns_dspy.simulators.base import build_simulator
from ns_dspy.simulators.bins import expected_value
from ns_dspy.simulators.prompt import PROMPT_VERSION, encode_pieces, prompt_pieces
from ns_dspy.simulators.prompted import PromptedSimulator
from ns_dspy.types import Exemplar

EXPLANATIONS = ["words for animals, such as cat and dog", "punctuation at the end of a sentence", ""]
TEXTS = ["The cat sat on the mat.", "def add(a, b):\n    return a + b\n", "On Monday the market opened early;",
         "Rivers flow into the sea.", "She said, \"Peace\" and left.", "x", "import os\tfor name in os"]


def _exemplars(subject, *, with_ids: bool = True) -> list[Exemplar]:
    out = []
    for text in TEXTS:
        ids = subject.encode(text)
        tokens = subject.token_strings(ids)
        out.append(Exemplar(tokens=tokens, activations=np.zeros(len(tokens)), token_ids=ids if with_ids else None))
    return out


def _naive(subject, sim: PromptedSimulator, explanation: str, exemplar: Exemplar) -> np.ndarray:
    prefix, body, slots = encode_pieces(prompt_pieces(explanation, exemplar.tokens), subject.encode)
    ids = subject.prefix_ids + prefix + body
    start = len(subject.prefix_ids) + len(prefix)
    with torch.inference_mode():
        logits = subject.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
    return expected_value(logits[[start + s for s in slots]], sim.bin_ids, sim.bins)


@pytest.fixture(scope="module")
def long_gpt2(tiny_gpt2, tmp_path_factory):
    """tiny_gpt2's tokenizer and shape with room for the prompt: its 256 learned positions are fewer than the
    ~450-token header needs with a 400-token vocabulary."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    cfg = GPT2Config.from_pretrained(tiny_gpt2)
    cfg.n_positions = 1024
    path = tmp_path_factory.mktemp("long-gpt2")
    GPT2LMHeadModel(cfg).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_gpt2).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_gemma3(tiny_llama, tmp_path_factory):
    """A 3-layer Gemma-3 with a 24-token sliding window (the prompt crosses it) and final logit soft-capping."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(2)
    tok = AutoTokenizer.from_pretrained(tiny_llama)
    cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=8, sliding_window=24,
                           layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                           final_logit_softcapping=5.0, max_position_embeddings=2048,
                           bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)
    path = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("model", ["tiny_llama", "long_gpt2", "tiny_gemma3"])
def test_matches_naive_full_forward(model, request):
    subject = load_subject(str(request.getfixturevalue(model)), dtype="float32", device="cpu")
    sim = PromptedSimulator(subject, batch_size=3)
    exemplars = _exemplars(subject)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        preds = sim.simulate(EXPLANATIONS, exemplars)
    # the cache goes in under the keyword this transformers takes (`cache`, not the deprecated `past_key_values`)
    assert [str(w.message) for w in caught if "past_key_values" in str(w.message)] == []
    assert len(preds) == len(EXPLANATIONS) and all(len(row) == len(exemplars) for row in preds)
    for explanation, row in zip(EXPLANATIONS, preds):
        for exemplar, got in zip(exemplars, row):
            assert got.dtype == np.float32 and got.shape == (len(exemplar.tokens),)
            assert got.min() >= 0.0 and got.max() <= 10.0
            np.testing.assert_allclose(got, _naive(subject, sim, explanation, exemplar), atol=1e-4)


def test_batch_size_independent_and_deterministic(tiny_llama):
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    exemplars = _exemplars(subject)
    one = PromptedSimulator(subject, batch_size=1).simulate(EXPLANATIONS[:2], exemplars)
    five = PromptedSimulator(subject, batch_size=5).simulate(EXPLANATIONS[:2], exemplars)
    again = PromptedSimulator(subject, batch_size=5).simulate(EXPLANATIONS[:2], exemplars)
    for a, b, c in zip(sum(one, []), sum(five, []), sum(again, [])):
        np.testing.assert_allclose(a, b, atol=1e-4)  # other batch shapes run other float32 kernels (0..10 scale)
        np.testing.assert_array_equal(b, c)


def test_explanation_changes_predictions(tiny_llama):
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    a, b = PromptedSimulator(subject).simulate(EXPLANATIONS[:2], _exemplars(subject))
    assert max(np.abs(x - y).max() for x, y in zip(a, b)) > 1e-3


def test_string_only_exemplars(tiny_llama):
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    sim = PromptedSimulator(subject)
    with_ids = sim.simulate(EXPLANATIONS[:1], _exemplars(subject))
    strings = sim.simulate(EXPLANATIONS[:1], _exemplars(subject, with_ids=False))
    # tokens of a foreign tokenizer: whole words, not this tokenizer's pieces
    foreign = [Exemplar(tokens=["Zebras", " graze", "\n", "\t", " quietly", "."], activations=np.zeros(6))]
    (got,), = sim.simulate(EXPLANATIONS[:1], foreign)
    for a, b in zip(with_ids[0], strings[0]):
        np.testing.assert_array_equal(a, b)
    assert got.shape == (6,)
    np.testing.assert_allclose(got, _naive(subject, sim, EXPLANATIONS[0], foreign[0]), atol=1e-4)


def test_edge_cases(tiny_llama):
    subject = load_subject(str(tiny_llama), dtype="float32", device="cpu")
    sim = PromptedSimulator(subject, batch_size=2)
    assert sim.simulate([], _exemplars(subject)) == []
    assert sim.simulate(EXPLANATIONS, []) == [[], [], []]
    one = Exemplar(tokens=["cat"], activations=[1.0])
    empty = Exemplar(tokens=[], activations=[])
    long = Exemplar(tokens=[" cat", " sat"] * 100, activations=np.zeros(200))
    (a, b, c), = sim.simulate(EXPLANATIONS[:1], [one, empty, long])
    assert a.shape == (1,) and b.shape == (0,) and c.shape == (200,)
    np.testing.assert_allclose(a, _naive(subject, sim, EXPLANATIONS[0], one), atol=1e-4)
    np.testing.assert_allclose(c, _naive(subject, sim, EXPLANATIONS[0], long), atol=1e-4)


def test_build_from_spec_and_cache_key(tiny_llama):
    sim = build_simulator("prompted:" + str(tiny_llama), dtype="float32", device="cpu", batch_size=4)
    assert isinstance(sim, PromptedSimulator) and sim.batch_size == 4
    key = sim.cache_key
    for part in ("prompted", str(tiny_llama), "float32", PROMPT_VERSION, "bins=0,1,2,3,4,5,6,7,8,9"):
        assert part in key
    assert PromptedSimulator(sim.subject, name="other").cache_key != key


def test_prompt_longer_than_learned_positions_is_a_model_error(tiny_gpt2):
    from ns_dspy.errors import ModelError

    subject = load_subject(str(tiny_gpt2), dtype="float32", device="cpu")  # 256 positions < the header
    with pytest.raises(ModelError, match="exceeds"):
        PromptedSimulator(subject).simulate(EXPLANATIONS[:1], _exemplars(subject)[:1])
