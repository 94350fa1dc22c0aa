"""The fine-tuned simulator's ``quantize=int8`` option: which layers run in int8, how close it stays to float32,
its cache key, and the combinations it refuses before loading anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from ns_dspy.build import build_simulator
from ns_dspy.config import SimulatorConfig
from ns_dspy.errors import ConfigError
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_format import is_int8, transformer_body
from test_finetuned_fast import EXPLANATIONS, _adapter, _exemplars


@pytest.fixture(scope="module")
def folder(tiny_llama, tmp_path_factory):
    return _adapter(tiny_llama, tmp_path_factory.mktemp("int8") / "sim", seed=7)


def _flat(preds) -> np.ndarray:
    return np.concatenate([p for row in preds for p in row if len(p)])


def test_int8_quantizes_the_decoder_linears_but_the_mlp_output(folder):
    sim = FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu", quantize="int8")
    body = transformer_body(sim.model)
    kinds = {name.rsplit(".", 1)[-1]: type(m) for name, m in body.named_modules()
             if isinstance(m, (torch.nn.Linear, DynamicLinear))}
    assert {k for k, t in kinds.items() if t is DynamicLinear} == {"q_proj", "k_proj", "v_proj", "o_proj",
                                                                   "gate_proj", "up_proj"}
    assert kinds["down_proj"] is torch.nn.Linear  # its inputs' outliers stay in float
    assert type(sim.model.get_output_embeddings()) is torch.nn.Linear and is_int8(sim.model)
    assert sim.cache_key.endswith("/float32/merged/int8")


def test_int8_stays_close_to_float32_but_is_not_it(folder):
    exact = FinetunedSimulator.from_pretrained(folder, dtype="float32", device="cpu", batch_size=3)
    int8 = FinetunedSimulator.from_pretrained(folder, dtype="auto", device="cpu", batch_size=3, quantize="int8")
    assert not is_int8(exact.model) and exact.cache_key != int8.cache_key  # never read from each other's cache
    exemplars = _exemplars(exact.tokenizer)
    a, b = _flat(exact.simulate(EXPLANATIONS, exemplars)), _flat(int8.simulate(EXPLANATIONS, exemplars))
    assert a.shape == b.shape and np.abs(a - b).max() > 1e-4  # int8 really ran
    # a random model of width 32 rounds far more than a real base (here r 0.82; Qwen2.5-Coder-0.5B: 0.996),
    # but int8 that lost the weights' scale or order would not correlate at all
    assert np.corrcoef(a, b)[0, 1] > 0.7 and np.abs(a - b).mean() < 0.5 * a.std()
    # the explanation still matters under int8
    by_expl = int8.simulate(EXPLANATIONS[:2], exemplars[:1])
    assert not np.allclose(by_expl[0][0], by_expl[1][0], atol=1e-2)


def test_int8_through_the_configuration(folder):
    sim = build_simulator(SimulatorConfig(f"finetuned:{folder}", dtype="float32", device="cpu",
                                          options={"quantize": "int8"}, cache=False))
    assert is_int8(sim.model)


@pytest.mark.parametrize("options, message", [
    ({"quantize": "int4"}, "quantize must be none or int8"),
    ({"quantize": "int8", "merge": False}, "runs the merged model"),
    ({"quantize": "int8", "device": "cuda"}, "runs on CPU only"),
    ({"quantize": "int8", "dtype": "bfloat16"}, "--dtype float32"),
])
def test_int8_refusals_before_loading(folder, options, message, monkeypatch):
    import ns_dspy.models.subject as subject

    monkeypatch.setattr(subject, "load_subject", lambda *a, **k: pytest.fail("loaded a model before refusing"))
    with pytest.raises(ConfigError, match=message):
        FinetunedSimulator.from_spec(str(folder), **options)
