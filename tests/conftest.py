"""Shared fixtures: tiny real models with a real (locally trained) tokenizer, small corpora, and DSPy's global
state reset (``dspy_defaults``, ``dspy_memory_cache``: directories whose tests configure DSPy turn them on).

No network and no mocks of the code under test: the tiny models are ordinary transformers models saved with
``save_pretrained`` and loaded through ``load_subject`` like any user's model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sample_texts import SAMPLE_TEXTS

TEXTS = SAMPLE_TEXTS * 3


def _tokenizer(with_bos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<bos>", "<eos>"], show_progress=False)
    tok.train_from_iterator(TEXTS, trainer)
    if with_bos:
        tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")


def _save(path: Path, model, tokenizer) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A 3-layer Llama (gated MLP, 64 neurons per layer) whose tokenizer prepends <bos>."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tok = _tokenizer(with_bos=True)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the init so activations are well spread
        for p in model.parameters():
            p.mul_(4.0)
    return _save(tmp_path_factory.mktemp("tiny-llama"), model, tok)


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A 2-layer GPT-2 (MLP c_fc -> gelu -> c_proj, 128 neurons per layer), no <bos>."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    tok = _tokenizer(with_bos=False)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=256, bos_token_id=0,
                     eos_token_id=1)
    return _save(tmp_path_factory.mktemp("tiny-gpt2"), GPT2LMHeadModel(cfg), tok)


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    """A JSONL corpus of ~40 short documents (a few hundred windows of 8 tokens)."""
    path = tmp_path / "corpus.jsonl"
    with path.open("w") as f:
        for i in range(40):
            f.write(json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} Item {i} of the list."}) + "\n")
    return path


@pytest.fixture
def fake_llama_cpp(tmp_path, monkeypatch):
    """``use(mode)``: a stand-in ``llama_cpp`` (tests/fake_llama.py) first on the path for this test. Afterwards
    every module it imported is dropped and the real library's modules (if loaded) are put back, so no later
    test can run the stand-in in process."""
    import sys

    from tests.fake_llama import llama_modules, make_library

    real = llama_modules()

    def use(mode: str):
        folder = make_library(tmp_path / "fake-llama", mode)
        monkeypatch.syspath_prepend(str(folder))
        for name in llama_modules():
            del sys.modules[name]
        return folder

    yield use
    for name in llama_modules():
        del sys.modules[name]
    sys.modules.update(real)


# --- DSPy's global state ----------------------------------------------------------------------------------------
# Directories whose tests configure DSPy use these autouse from their own conftest.py, so the reset exists once.
@pytest.fixture
def dspy_defaults():
    """DSPy's global settings reset to DSPy's defaults after the test (as DSPy's own tests do)."""
    from dspy_state import reset_settings

    yield
    reset_settings()


@pytest.fixture
def dspy_memory_cache(dspy_defaults):
    """A fresh in-memory DSPy response cache for the test (no disk writes, no answers shared between tests), then
    the saved cache back and DSPy's settings reset."""
    from dspy_state import memory_cache

    with memory_cache():
        yield
