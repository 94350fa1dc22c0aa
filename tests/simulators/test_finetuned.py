"""The fine-tuned simulator on a tiny Llama with a real (perturbed) LoRA adapter: save, load, predict, train."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from ns_dspy.errors import ConfigError, ModelError
from ns_dspy.simulators.base import Simulator, build_simulator
from ns_dspy.simulators.align import align_to_tokenizer
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_adapter import MANIFEST, save_adapter
from ns_dspy.simulators.finetuned_format import (FORMAT_VERSION, BinHead, build_input, expected_bins,
                                                format_explanation, forward_bins, pad_batch)
from ns_dspy.types import Exemplar
from tiny_adapters import bin_head, perturbed_lora

TEXTS = ["The cat sat on the mat. The dog chased the cat around the garden until noon.",
         "def add(a, b):\n    return a + b\n",
         "On Monday the market opened early; on Friday it closed late."]
EXPLANATIONS = ["animals such as cats and dogs", "days of the week", "Python keywords"]


def _peft_model(path, seed: int = 0):
    return perturbed_lora(path, ["q_proj", "v_proj", "gate_proj", "up_proj", "down_proj"], seed)


def _exemplar(subject, text: str, *, with_ids: bool = True) -> Exemplar:
    ids = subject.encode(text)
    tokens = subject.token_strings(ids)
    return Exemplar(tokens=tokens, activations=np.zeros(len(tokens)), token_ids=ids if with_ids else None)


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """(subject, in-memory peft model, bin head, saved adapter folder)."""
    subject, model = _peft_model(tiny_llama)
    head = bin_head(model, subject.tokenizer)
    out = save_adapter(model, head, tmp_path_factory.mktemp("adapters") / "sim", base_model=str(tiny_llama),
                       tokenizer=subject.tokenizer, extra={"steps": 0})
    return subject, model, head, out


@pytest.fixture(scope="module")
def loaded(trained):
    return FinetunedSimulator.from_pretrained(trained[3], dtype="float32", device="cpu", batch_size=4)


def test_input_format_puts_exemplar_tokens_last():
    ids, positions = build_input(lambda s: [ord(c) for c in s], [0], "cats\n and  dogs", [7, 8, 9])
    head = [0] + [ord(c) for c in "Neuron explanation: cats and dogs\nText:\n"]
    assert format_explanation("cats\n and  dogs") == "Neuron explanation: cats and dogs\nText:\n"
    assert ids == head + [7, 8, 9]
    assert positions == [len(head), len(head) + 1, len(head) + 2]


def test_bin_head_starts_from_output_rows(trained):
    subject, model, _, _ = trained
    head = BinHead.from_output_rows(model, subject.tokenizer)
    rows = model.get_output_embeddings().weight
    first = subject.tokenizer(" ten", add_special_tokens=False)["input_ids"][0]
    assert head.weight.shape == (11, rows.shape[1]) and torch.equal(head.bias, torch.zeros(11))
    assert torch.equal(head.weight[10], rows[first].float())


def test_saved_folder_is_safetensors_and_json(trained):
    out = trained[3]
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "bin_head.safetensors", MANIFEST} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format_version"] == FORMAT_VERSION and manifest["bins"] == 11 and manifest["steps"] == 0
    assert manifest["tokenizer"]["vocab_size"] == len(trained[0].tokenizer)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_loaded_adapter_reproduces_in_memory_predictions(trained, loaded):
    subject, model, head, _ = trained
    exemplars = [_exemplar(subject, t) for t in TEXTS]
    in_memory = FinetunedSimulator(model, subject.tokenizer, subject.prefix_ids, head, {"base_model": "x"})
    a, b = in_memory.simulate(EXPLANATIONS, exemplars), loaded.simulate(EXPLANATIONS, exemplars)
    for row_a, row_b in zip(a, b):
        for pa, pb, ex in zip(row_a, row_b, exemplars):
            assert pa.dtype == np.float32 and pa.shape == (len(ex.tokens),)
            np.testing.assert_allclose(pa, pb, atol=1e-4)  # fp32; reduction order differs between runs
            assert pa.min() >= 0 and pa.max() <= 10
    assert not np.allclose(a[0][0], a[1][0], atol=1e-3)  # the explanation matters
    assert loaded.cache_key.startswith(f"finetuned/v{FORMAT_VERSION}/")


def test_predictions_do_not_depend_on_batch_size(trained, loaded):
    subject = trained[0]
    exemplars = [_exemplar(subject, t) for t in TEXTS] + [Exemplar(tokens=[], activations=[])]
    loaded.batch_size = 4
    big = loaded.simulate(EXPLANATIONS, exemplars)
    loaded.batch_size = 1
    one = loaded.simulate(EXPLANATIONS, exemplars)
    loaded.batch_size = 4
    for row_a, row_b in zip(big, one):
        for pa, pb in zip(row_a, row_b):
            np.testing.assert_allclose(pa, pb, atol=1e-4)  # other batch shapes run other float32 kernels (0..10 scale)
    assert big[0][-1].shape == (0,)


def test_one_code_path_is_trainable(tiny_llama):
    subject, model = _peft_model(tiny_llama, seed=1)
    head = BinHead.from_output_rows(model, subject.tokenizer)
    encode = subject.encode
    ids = encode(TEXTS[0])
    target_word = set(encode(" cat") + encode(" dog"))
    inputs, positions, targets = [], [], []
    for explanation in EXPLANATIONS[:2]:
        x, pos = build_input(encode, subject.prefix_ids, explanation, ids)
        inputs.append(x)
        positions.append(pos)
        hot = explanation.startswith("animals")
        targets.append([10 if hot and i in target_word else 0 for i in ids])
    input_ids, mask = pad_batch(inputs, pad_id=1)
    rows = torch.tensor([r for r, pos in enumerate(positions) for _ in pos])
    cols = torch.tensor([c for pos in positions for c in pos])
    y = torch.tensor([t for ts in targets for t in ts])
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    losses = []
    for _ in range(8):
        logits = forward_bins(model, head, input_ids, mask)[rows, cols]
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert expected_bins(logits).shape == y.shape


def test_refuses_missing_or_foreign_folders(tmp_path, trained):
    with pytest.raises(ConfigError, match="does not exist"):
        FinetunedSimulator.from_pretrained(tmp_path / "nowhere", device="cpu")
    with pytest.raises(ConfigError, match="not a fine-tuned simulator folder"):
        FinetunedSimulator.from_pretrained(tmp_path, device="cpu")
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not a ns-dspy-finetuned-simulator manifest"):
        FinetunedSimulator.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(ConfigError, match=r"finetuned:PATH"):
        build_simulator("finetuned")
    assert Simulator.registry["finetuned"] is FinetunedSimulator


def _copy_with_manifest(src, dst, **changes):
    import shutil

    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST).read_text())
    manifest.update(changes)
    (dst / MANIFEST).write_text(json.dumps(manifest))
    return dst


def test_refuses_other_format_version(tmp_path, trained):
    folder = _copy_with_manifest(trained[3], tmp_path / "v2", format_version=FORMAT_VERSION + 1)
    with pytest.raises(ConfigError, match="format version") as err:
        FinetunedSimulator.from_pretrained(folder, device="cpu")
    assert "\n" not in str(err.value)


def test_refuses_mismatched_base_model(tmp_path, trained, tiny_gpt2):
    with pytest.raises(ModelError, match="load it with that base model") as err:
        FinetunedSimulator.from_pretrained(trained[3], base_model=str(tiny_gpt2), dtype="float32", device="cpu")
    assert "\n" not in str(err.value)
    moved = _copy_with_manifest(trained[3], tmp_path / "moved", base_model=str(tiny_gpt2))
    with pytest.raises(ModelError, match="tokenizer of .* changed"):
        FinetunedSimulator.from_pretrained(moved, dtype="float32", device="cpu")


def test_save_refuses_to_overwrite(trained):
    subject, model, head, out = trained
    with pytest.raises(ConfigError, match="already exists"):
        save_adapter(model, head, out, base_model="x", tokenizer=subject.tokenizer)


def test_text_alignment_of_another_segmentation(trained, loaded):
    subject = trained[0]
    text = TEXTS[0]
    native = _exemplar(subject, text)
    words = re.findall(r"\s*\S+", text)  # " garden" is " gar" "de" "n" for the simulator
    chars = list(text)
    by_words = Exemplar(tokens=words, activations=np.zeros(len(words)))
    by_chars = Exemplar(tokens=chars, activations=np.zeros(len(chars)))
    foreign_ids = Exemplar(tokens=words, activations=np.zeros(len(words)), token_ids=list(range(len(words))))
    native_text = Exemplar(tokens=native.tokens, activations=native.activations)  # strings only
    (p_native, p_words, p_chars, p_foreign, p_text), = loaded.simulate(
        [EXPLANATIONS[0]], [native, by_words, by_chars, foreign_ids, native_text])
    assert p_words.shape == (len(words),) and p_chars.shape == (len(chars),)
    np.testing.assert_allclose(p_foreign, p_words, atol=1e-6)  # ids that do not decode to the strings are ignored
    np.testing.assert_allclose(p_text, p_native, atol=1e-5)
    # each word is read at its last simulator token, each character at the token that contains it
    ends = np.cumsum([len(t) for t in native.tokens])
    word_ends = np.cumsum([len(w) for w in words])
    np.testing.assert_allclose(p_words, p_native[np.searchsorted(ends, word_ends)], atol=1e-5)
    char_ends = np.arange(1, len(text) + 1)
    np.testing.assert_allclose(p_chars, p_native[np.searchsorted(ends, char_ends)], atol=1e-5)


def test_alignment_rules_on_edges(trained):
    tok = trained[0].tokenizer
    ids, read = align_to_tokenizer(tok, ["", "The", "", " cat"])
    assert tok.convert_ids_to_tokens(ids) == ["The", "Ġcat"]
    assert read == [-1, 0, 0, 1]  # empty tokens read just before themselves
    ids, read = align_to_tokenizer(tok, ["Th", "e c", "at"])  # "Th" inside "The"; "e c" at "The", which ends in it
    assert read == [0, 0, 1]
