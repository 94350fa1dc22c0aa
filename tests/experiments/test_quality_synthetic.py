"""experiments/synthetic_store.py and the ``truth`` row of experiments/quality.py, on a synthetic dataset built
from the tiny simulator-training text (tests/simtrain/tiny_text.py) with the keyword simulator."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from quality import choose_synthetic, main, shares
from synthetic_store import SIDECAR, build, random_splits, read_sidecar

from ns_dspy.errors import ConfigError
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.scoring import HeldOut, select
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import UnitId
from tests.simtrain.tiny_text import CODE, brown_files


@pytest.fixture(scope="module")
def dataset(tiny_llama, tmp_path_factory):
    """A tiny synthetic dataset and a simulator folder that records it as its training data."""
    from transformers import AutoTokenizer

    from simulator_training.data import build_synthetic, read_manifest
    from simulator_training.text import build_pool, code_documents, prose_documents

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama))
    docs = prose_documents(brown_files()) + code_documents([(f"m{k}.py", c * 3) for k, c in enumerate(CODE * 3)],
                                                           min_words=5)
    pool = build_pool(docs, tokenizer, window=24, min_tokens=8, eval_share=0.3, progress=False)
    root = tmp_path_factory.mktemp("synthetic")
    data = build_synthetic(root / "data", tokenizer, tokenizer_name="tiny", pool=pool, valid_share=0.5,
                           n_top=3, n_random=2, valid_top=6, valid_random=5, pairs_train=3, pairs_valid=3,
                           progress=False)
    manifest = read_manifest(data)
    sim = root / "simulator"
    sim.mkdir()
    (sim / "ns_dspy_simulator.json").write_text(json.dumps({
        "tokenizer": manifest["tokenizer"],
        "training": {"data": {k: manifest[k] for k in ("source", "seed", "tokenizer_name", "units", "exemplars")}}}))
    return data, sim


def test_store_of_held_out_units(dataset, tmp_path):
    from simulator_training.data import read_units, unit_split

    data, sim = dataset
    valid = read_units(data, "valid")
    with pytest.raises(ConfigError, match="not the data"):  # the shipped adapter never saw this dataset
        build(data, tmp_path / "refused", per_family=2, pairs=1)
    path = build(data, tmp_path / "store", per_family=2, pairs=1, simulator_dir=sim)
    sidecar = read_sidecar(path / SIDECAR)
    assert sidecar["checks"]["held_out_of"]["same"]
    overlap = sidecar["checks"]["text_overlap"]  # the tiny text repeats its sentences: some windows recur
    train_windows = {tuple(ex["token_ids"]) for u in read_units(data, "train") for ex in u["exemplars"]}
    mine = [tuple(ex["token_ids"]) for v in sidecar["units"].values() for ex in valid[v["line"]]["exemplars"]]
    assert overlap["windows"] == len(mine) and overlap["windows_in_train"] == sum(w in train_windows for w in mine)
    store = ExemplarStore.open(path)
    assert [str(u) for u in store.units()] == sorted(sidecar["units"], key=lambda k: int(k.split(":")[1]))
    families = [u["family"] for u in sidecar["units"].values()]
    assert families.count("two-concept") == 1 and max(families.count(f) for f in set(families)) <= 2
    for key, info in sidecar["units"].items():
        unit, record = UnitId.parse(key), valid[info["line"]]
        assert record["unit"] == info["name"] and record["explanations"] == info["explanations"]
        if info["family"] != "two-concept":
            assert unit_split(info["name"], 0.5, 0) == "valid"
        by_tokens = {}  # the tiny text repeats itself: the same window can be drawn twice
        for ex in record["exemplars"]:
            by_tokens.setdefault((ex["kind"], tuple(ex["tokens"])), []).append(ex)
        seen = 0
        for split in ("train", "valid", "test"):
            for kind in ("top", "random"):
                exemplars = store.exemplars(unit, split, kind)
                if kind == "random":  # valid and test 0.3 each, rounded half up
                    n = sum(ex["kind"] == "random" for ex in record["exemplars"])
                    assert len(exemplars) == random_splits(n, random.Random(0)).count(split)
                for ex in exemplars:
                    origs = by_tokens[(kind, tuple(ex.tokens))]
                    assert all(ex.token_ids == orig["token_ids"] for orig in origs)
                    assert any(np.allclose(ex.activations, orig["targets"]) for orig in origs)
                    seen += 1
        assert seen == len(record["exemplars"])
        assert store.exemplars(unit, "test", "top") and store.exemplars(unit, "valid", "top")
    assert [random_splits(5, random.Random(0)).count(s) for s in ("train", "valid", "test")] == [1, 2, 2]
    assert [random_splits(4, random.Random(0)).count(s) for s in ("train", "valid", "test")] == [2, 1, 1]
    assert [random_splits(2, random.Random(0)).count(s) for s in ("train", "valid", "test")] == [0, 1, 1]


def test_truth_row_and_share_of_the_ceiling(dataset, tmp_path):
    data, sim = dataset
    path = build(data, tmp_path / "store", per_family=2, pairs=1, simulator_dir=sim)
    truth = read_sidecar(path / SIDECAR)
    out = tmp_path / "q"
    assert main(["--store", str(path), "--out", str(out), "--simulator", "keyword"]) == 0
    result = json.loads((out / "quality.json").read_text())
    store, simulator = ExemplarStore.open(path), KeywordSimulator()
    families = {f: [k for k, v in truth["units"].items() if v["family"] == f] for f in truth["selection"]["families"]}
    assert result["neurons"] == {f: us for f, us in families.items() if us}  # every unit, grouped by family
    rows = result["results"]
    for key, info in truth["units"].items():
        row = rows[key]["truth"]
        valid = HeldOut.from_store(store, UnitId.parse(key), "valid")
        best = select(simulator, list(dict.fromkeys(info["explanations"])), valid)
        assert row["explanation"] == best[0].explanation and row["valid"] == pytest.approx(best[0].value)  # on valid
        assert row["candidates"] == len(set(info["explanations"]))
    summary = result["summary"]
    single = [k for k, v in truth["units"].items() if v["family"] != "two-concept"]
    for method in ("stats", "peak3", "lookup", "shuffled", "truth"):
        pairs = [(rows[k][method]["test"], rows[k]["truth"]["test"]) for k in single
                 if method in rows[k] and rows[k]["truth"]["test"] > 0]
        share = summary[method]["share_of_truth"]["single"]
        assert share["units"] == len(pairs)
        if pairs:
            assert share["mean_ratio"] == pytest.approx(np.mean([m / t for m, t in pairs]))
            assert share["ratio_of_means"] == pytest.approx(sum(m for m, _ in pairs) / sum(t for _, t in pairs))
    assert summary["truth"]["share_of_truth"]["all"]["ratio_of_means"] == pytest.approx(1.0)
    text = (out / "summary.md").read_text()
    assert main(["--store", str(path), "--out", str(out), "--simulator", "keyword"]) == 0  # reuses neurons.json
    again = json.loads((out / "quality.json").read_text())
    header = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| method | code"))
    assert header.rstrip(" |").endswith("two-concept (1)")  # family order kept (neurons.json's keys are sorted)
    for key, row in rows.items():
        assert {m: (v.get("test"), v.get("from")) for m, v in row.items()} == \
            {m: (v.get("test"), v.get("from")) for m, v in again["results"][key].items()}
    assert "| true description (ceiling) |" in text and "single: test | two-concept: test" in text
    assert "ratio of the means" in text


def test_shares_skip_missing_and_non_positive_ceilings():
    units = [UnitId(0, i) for i in range(4)]
    results = {"0:0": {"m": {"test": 0.4}, "truth": {"test": 0.8}},
               "0:1": {"m": {"test": 0.3}, "truth": {"test": 0.2}},
               "0:2": {"m": {"test": 0.5}, "truth": {"test": -0.1}},  # no ceiling: left out
               "0:3": {"truth": {"test": 0.9}}}                       # method not done: left out
    share = shares(results, units, "m")
    assert share["units"] == 2
    assert share["mean_ratio"] == pytest.approx((0.5 + 1.5) / 2)
    assert share["ratio_of_means"] == pytest.approx(0.7 / 1.0)
    assert shares(results, units, "absent") == {"mean_ratio": None, "mean_ratio_se": None, "ratio_of_means": None,
                                                "units": 0}


def test_synthetic_choice_caps_and_excludes(dataset, tmp_path):
    data, sim = dataset
    path = build(data, tmp_path / "store", per_family=2, pairs=1, simulator_dir=sim)
    truth = read_sidecar(path / SIDECAR)
    store = ExemplarStore.open(path)
    first = store.units()[0]
    groups = choose_synthetic(store, truth, 1, {first})
    chosen = [u for us in groups.values() for u in us]
    assert first not in chosen and all(len(us) == 1 for us in groups.values())
    assert list(groups)[-1] == "two-concept"


def test_lm_methods_run_on_a_synthetic_store(dataset, tmp_path, monkeypatch, dspy_memory_cache):
    """The LM path (here the toy chat server of tests/sweep) runs unchanged on a synthetic store, beside truth."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))  # as tests/cluster import it: one
    from sweep_world import ToyServer  # module object, so the sweep-words embedder registers once

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    data, sim = dataset
    path = build(data, tmp_path / "store", per_family=1, pairs=1, simulator_dir=sim)
    out = tmp_path / "q"
    with ToyServer() as server:
        assert main(["--store", str(path), "--out", str(out), "--simulator", "keyword", "--lm", server.lm,
                     "--lm-methods", "baseline"]) == 0
    result = json.loads((out / "quality.json").read_text())
    units = [u for us in result["neurons"].values() for u in us]
    assert units and all("baseline" in result["results"][u] and "truth" in result["results"][u] for u in units)
    assert "share_of_truth" in result["summary"]["baseline"]
    assert "| single-pass LM baseline |" in (out / "summary.md").read_text()
