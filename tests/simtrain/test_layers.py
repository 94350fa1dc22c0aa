"""A simulator trained on a base's first layers only (``--layers N``): trained, saved, reloaded and simulated with
the same N layers, and refused where the layers cannot be kept or do not match."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ns_dspy.errors import ConfigError
from ns_dspy.models.subject import load_subject
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_adapter import MANIFEST, peft_quietly, read_adapter_manifest
from ns_dspy.simulators.finetuned_format import (BinHead, build_input, expected_bins, forward_bins, keep_layers,
                                                 transformer_body)

from simulator_training.data import read_units
from simulator_training.evaluate import _exemplars
from simulator_training.train import TrainConfig, train
from test_train import _config, data  # noqa: F401  (the module's data fixture)


@pytest.fixture(scope="module")
def cut(tiny_llama, data, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("cutrun") / "run"
    return train(_config(tiny_llama, steps=12, layers=2), data, out, device="cpu", progress=False)


def _by_hand(base: str, adapter, layers: int | None, ids: list[int]) -> np.ndarray:
    """Expected bins of one input through the base (cut to ``layers`` or whole), the LoRA unmerged, the head."""
    from peft import PeftModel

    subject = load_subject(base, dtype="float32", device="cpu")
    if layers:
        keep_layers(subject.model, layers)
    with peft_quietly(), warnings.catch_warnings():
        # the whole base with a cut adapter: its upper layers have no LoRA weights, as the test means
        warnings.filterwarnings("ignore", message="Found missing adapter keys", category=UserWarning)
        model = PeftModel.from_pretrained(subject.model, str(adapter)).eval()
    head = BinHead.load(adapter / "bin_head.safetensors")
    with torch.inference_mode():
        x = torch.tensor([ids])
        return expected_bins(forward_bins(model, head, x, torch.ones_like(x)))[0].numpy()


def test_cut_adapter_records_its_layers_and_loads_with_them(cut, tiny_llama, data):  # noqa: F811
    manifest = json.loads((cut / MANIFEST).read_text())
    assert manifest["layers"] == 2 and manifest["training"]["layers"] == 2
    sim = FinetunedSimulator.from_pretrained(cut, dtype="float32", device="cpu")
    assert len(transformer_body(sim.model).layers) == 2 and sim.model.config.num_hidden_layers == 2
    ex = _exemplars(read_units(data, "train")[0])[0]
    text = "the word \"the\""
    got = sim.simulate([text], [ex])[0][0]
    ids, positions = build_input(lambda t: sim.tokenizer(t, add_special_tokens=False)["input_ids"],
                                 sim.prefix_ids, text, sim._align(ex)[0])
    cut_by_hand = _by_hand(str(tiny_llama), cut, 2, ids)[positions]
    whole_by_hand = _by_hand(str(tiny_llama), cut, None, ids)[positions]
    # the simulator reads what training computed (2 layers), not the whole base with the same LoRA weights
    assert np.abs(got - cut_by_hand).max() < 1e-3
    assert np.abs(got - whole_by_hand).max() > 1e-2


def test_keeping_layers_is_refused_where_it_cannot_hold(tiny_llama, tiny_gpt2, data, cut, tmp_path):  # noqa: F811
    with pytest.raises(ConfigError, match="has 3 decoder layers"):
        keep_layers(load_subject(str(tiny_llama), dtype="float32", device="cpu").model, 4)
    with pytest.raises(ConfigError, match="no decoder-layer list"):
        keep_layers(load_subject(str(tiny_gpt2), dtype="float32", device="cpu").model, 1)
    with pytest.raises(ConfigError, match="--layers must be 0"):
        TrainConfig(layers=-1)
    # an old run's checkpoint (no --layers) resumes: 0 is not part of what must match
    assert "layers" not in TrainConfig().fingerprint() and TrainConfig(layers=2).fingerprint()["layers"] == 2
    with pytest.raises(ConfigError, match=r"layers 2 \(ours 0\)"):
        train(_config(tiny_llama, steps=2, init=str(cut)), data, tmp_path / "init", device="cpu", progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in cut.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    manifest = json.loads((bad / MANIFEST).read_text())
    (bad / MANIFEST).write_text(json.dumps({**manifest, "layers": "two"}))
    with pytest.raises(ConfigError, match="layers must be a positive whole number"):
        read_adapter_manifest(bad)
