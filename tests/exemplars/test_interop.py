"""Exemplar import/export: ns-dspy-records JSONL round trips, OpenAI NeuronRecords, and user errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ns_dspy.errors import ConfigError, StoreError
from ns_dspy.exemplars.interop import export_jsonl, import_jsonl, import_neuron_records
from ns_dspy.exemplars.store import ExemplarStore, LayerData, write_store
from ns_dspy.types import KINDS, SPLITS, UnitId

T = 8


def make_store(path, seed=0):
    """2 layers x 3 units, windows of 8 tokens (some shorter), every split and kind, one empty slot."""
    rng = np.random.default_rng(seed)
    strings = [f"t{i}" for i in range(24)] + [" cat", "é", "\n"]
    n_windows = 45
    windows = rng.integers(0, len(strings), (n_windows, T))
    windows[::4, 5:] = -1
    window_split = np.arange(n_windows) % 3
    layers = {}
    for layer in (2, 5):
        units = np.array([3, 10, 41])
        slots = {}
        for s, split in enumerate(SPLITS):
            pool = np.flatnonzero(window_split == s)
            for kind, k in (("top", 3), ("random", 2), ("negative", 2)):
                win = np.stack([rng.choice(pool, k, replace=False) for _ in units])
                acts = rng.normal(size=(len(units), k, T)).astype(np.float32) * 3
                acts[windows[win] < 0] = 0.0
                real = windows[win] >= 0
                score = {"top": -np.where(real, acts, -np.inf).max(-1), "random": np.zeros(win.shape),
                         "negative": np.where(real, acts, np.inf).min(-1)}[kind]
                order = np.argsort(score, axis=1, kind="stable")
                win, acts = np.take_along_axis(win, order, 1), np.take_along_axis(acts, order[..., None], 1)
                if (split, kind) == ("train", "top"):
                    win[1, -1] = -1  # an unused slot
                slots[(split, kind)] = (win, acts)
        stats = {k: np.zeros(len(units)) for k in ("mean", "std", "max", "min", "frequency")}
        layers[layer] = LayerData(units=units, slots=slots, stats=stats)
    return write_store(path, manifest={"model": {"name": "tiny"}, "hookpoint": "mlp.act"}, strings=strings,
                       windows=windows, window_split=window_split, layers=layers)


def exemplar_table(store):
    return {(unit, split, kind): [(e.tokens, e.activations) for e in store.exemplars(unit, split, kind)]
            for unit in store.units() for split in SPLITS for kind in KINDS}


def test_export_import_round_trip(tmp_path):
    a = ExemplarStore.open(make_store(tmp_path / "a"))
    n = export_jsonl(a, tmp_path / "records.jsonl")
    assert n == 6
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines[0]["format"] == "ns-dspy-records" and lines[0]["version"] == 1 and lines[0]["unit"] == "2:3"
    assert lines[0]["model"] == "tiny" and lines[0]["hookpoint"] == "mlp.act"
    assert {"split", "kind", "tokens", "activations"} <= set(lines[0]["exemplars"][0])

    b = ExemplarStore.open(import_jsonl(tmp_path / "records.jsonl", tmp_path / "b"))
    assert b.units() == a.units()
    assert b.manifest["source"] == "imported" and b.manifest["imported_from"] == ["records.jsonl"]
    assert b.manifest["model"] == {"name": "tiny"} and b.manifest["hookpoint"] == "mlp.act"
    assert b.token_ids is None
    ta, tb = exemplar_table(a), exemplar_table(b)
    assert ta.keys() == tb.keys()
    for key, exs in ta.items():
        assert len(tb[key]) == len(exs), key
        for (tok_a, act_a), (tok_b, act_b) in zip(exs, tb[key]):
            assert tok_a == tok_b
            np.testing.assert_allclose(act_b, act_a, rtol=1e-3, atol=1e-6)
    assert len(ta[(UnitId(2, 10), "train", "top")]) == 2  # the empty slot stays empty
    for unit in b.units():  # each window row belongs to its exemplar's split
        for split in SPLITS:
            for kind in KINDS:
                assert all(b.window_split[e.window] == SPLITS.index(split) for e in b.exemplars(unit, split, kind))
        st = b.stats(unit)
        every = np.concatenate([e.activations for s in SPLITS for k in KINDS for e in b.exemplars(unit, s, k)])
        assert st["max"] == pytest.approx(every.max(), rel=1e-3) and st["min"] == pytest.approx(every.min(), rel=1e-3)

    assert export_jsonl(a, tmp_path / "two.jsonl", units=[UnitId(5, 41), "2:10"]) == 2
    c = ExemplarStore.open(import_jsonl(tmp_path / "two.jsonl", tmp_path / "c", model="other"))
    assert c.units() == [UnitId(2, 10), UnitId(5, 41)] and c.manifest["model"] == {"name": "other"}


def test_loose_jsonl_gets_splits_and_default_kind(tmp_path):
    rows = [{"layer": 1, "neuron": 4, "exemplars": [{"tokens": [f"a{i}", "b"], "activations": [float(i), 0.5]}
                                                     for i in range(20)]},
            {"unit": "0:2", "exemplars": [{"tokens": ["x"], "activations": [1.0], "kind": "random"}] * 6}]
    p = tmp_path / "loose.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    store = ExemplarStore.open(import_jsonl(p, tmp_path / "s"))
    assert store.units() == [UnitId(0, 2), UnitId(1, 4)]
    counts = [len(store.exemplars(UnitId(1, 4), s, "top")) for s in SPLITS]
    assert counts == [8, 6, 6]
    assert sum(len(store.exemplars(UnitId(0, 2), s, "random")) for s in SPLITS) == 6
    assert store.manifest["model"] == {"name": "unknown"}
    for s in SPLITS:  # best first
        maxes = [e.max_activation for e in store.exemplars(UnitId(1, 4), s, "top")]
        assert maxes == sorted(maxes, reverse=True)


def neuron_record(layer, index, n_top, n_random, offset=0.0):
    rec = lambda toks, acts: {"dataclass_name": "ActivationRecord", "tokens": toks, "activations": acts}  # noqa: E731
    top = [rec([f"n{index}top{i}", " w"] + ["x"] * (i % 4), [0.1, offset + 30.0 - i] + [0.0] * (i % 4))
           for i in range(n_top)]
    rand = [rec([f"n{index}rand{i}"] * (1 + i % 3), [0.01 * i] * (1 + i % 3)) for i in range(n_random)]
    return {"dataclass_name": "NeuronRecord", "neuron_id": {"dataclass_name": "NeuronId", "layer_index": layer,
                                                            "neuron_index": index},
            "random_sample": rand, "random_sample_by_quantile": None, "quantile_boundaries": None,
            "mean": float("nan"), "variance": 1.0, "skewness": None, "kurtosis": None,
            "most_positive_activation_records": top}


def splits_of(store, unit, kind):
    return {s: [e.tokens[0] for e in store.exemplars(unit, s, kind)] for s in SPLITS}


def test_neuron_records_import(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    (d / "7.json").write_text(json.dumps(neuron_record(0, 7, 30, 9)), encoding="utf-8")
    (d / "1.json").write_text(json.dumps(neuron_record(3, 1, 12, 0, offset=5.0) | {
        "random_sample_by_quantile": [[{"tokens": ["q"], "activations": [0.2]}] * 2, [{"tokens": ["r"],
                                                                                       "activations": [0.3]}]]}),
        encoding="utf-8")
    store = ExemplarStore.open(import_neuron_records(d, tmp_path / "s", model="gpt2-xl", hookpoint="mlp.post"))
    assert store.units() == [UnitId(0, 7), UnitId(3, 1)]
    assert store.manifest["imported_from"] == ["1.json", "7.json"]
    assert store.manifest["model"] == {"name": "gpt2-xl"} and store.manifest["hookpoint"] == "mlp.post"

    top = splits_of(store, UnitId(0, 7), "top")
    names = [t for s in SPLITS for t in top[s]]
    assert sorted(names) == sorted(f"n7top{i}" for i in range(30)) and len(set(names)) == 30  # disjoint, complete
    assert [len(top[s]) for s in SPLITS] == [12, 9, 9]
    for s in SPLITS:  # every block of 10 ranks contributes to every split: each covers the activation range
        assert {int(t.removeprefix("n7top")) // 10 for t in top[s]} == {0, 1, 2}
    assert any("n7top0" in top[s] for s in SPLITS)
    assert sum(len(v) for v in splits_of(store, UnitId(0, 7), "random").values()) == 9

    small = splits_of(store, UnitId(3, 1), "top")
    assert all(small[s] for s in SPLITS) and sum(map(len, small.values())) == 12
    assert sorted(t for v in splits_of(store, UnitId(3, 1), "random").values() for t in v) == ["q", "q", "r"]
    ex = store.exemplars(UnitId(0, 7), SPLITS[next(i for i, s in enumerate(SPLITS) if "n7top3" in top[s])], "top")
    rec = next(e for e in ex if e.tokens[0] == "n7top3")
    assert rec.tokens == ["n7top3", " w", "x", "x", "x"] and rec.activations[1] == pytest.approx(27.0)
    assert store.stats(UnitId(0, 7))["max"] == pytest.approx(30.0)

    # deterministic for a seed, as files, a file list or a JSONL of records
    jl = tmp_path / "all.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in (neuron_record(0, 7, 30, 9), neuron_record(3, 1, 12, 0))),
                  encoding="utf-8")
    again = ExemplarStore.open(import_neuron_records([jl], tmp_path / "again"))
    assert again.units() == [UnitId(0, 7), UnitId(3, 1)] and again.manifest["model"] == {"name": "unknown"}
    assert splits_of(again, UnitId(0, 7), "top") == top
    assert splits_of(again, UnitId(0, 7), "random") == splits_of(store, UnitId(0, 7), "random")
    other = ExemplarStore.open(import_neuron_records(d / "7.json", tmp_path / "other", seed=1))
    assert splits_of(other, UnitId(0, 7), "top") != top


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return p


GOOD = json.dumps({"unit": "1:2", "exemplars": [{"tokens": ["a", "b"], "activations": [1.0, 2.0]}]})


@pytest.mark.parametrize("line, message", [
    ('{"unit": "1:2", "exemplars": [', r"bad\.jsonl:2: not valid JSON"),
    ('{"unit": "1:3", "exemplars": [{"tokens": ["a", "b", "c"], "activations": [1, 2]}]}',
     r"bad\.jsonl:2 exemplar 0: 3 tokens but 2 activations: give one activation per token"),
    ('{"unit": "1:3", "exemplars": [{"tokens": ["a"], "activations": [NaN]}]}', r"bad\.jsonl:2 .*must be finite"),
    ('{"unit": "1:3", "exemplars": [{"tokens": ["a"], "activations": [1], "split": "training"}]}',
     r"bad\.jsonl:2 .*unknown split 'training': use one of train, valid, test"),
    ('{"unit": "1:3", "exemplars": [{"tokens": ["a"], "activations": [1], "kind": "best"}]}',
     r"bad\.jsonl:2 .*unknown kind 'best'"),
    ('{"exemplars": [{"tokens": ["a"], "activations": [1]}]}', r"bad\.jsonl:2: no unit"),
    ('{"unit": "1:3", "exemplars": []}', r"bad\.jsonl:2: unit 1:3 needs \"exemplars\""),
    ('{"format": "something-else", "unit": "1:3", "exemplars": []}', r"bad\.jsonl:2: format 'something-else'"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, line, message):
    with pytest.raises(StoreError, match=message):
        import_jsonl(write(tmp_path, "bad.jsonl", [GOOD, line]), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_empty_file_missing_file_and_bad_fractions(tmp_path):
    with pytest.raises(StoreError, match=r"empty\.jsonl is empty"):
        import_jsonl(write(tmp_path, "empty.jsonl", ["", "  "]), tmp_path / "out")
    with pytest.raises(StoreError, match="no such file"):
        import_jsonl(tmp_path / "missing.jsonl", tmp_path / "out")
    with pytest.raises(ConfigError, match="summing to 1"):
        import_jsonl(write(tmp_path, "ok.jsonl", [GOOD]), tmp_path / "out", split=(0.5, 0.5, 0.5))
    (tmp_path / "empty.json").write_text("", encoding="utf-8")
    with pytest.raises(StoreError, match="empty"):
        import_neuron_records(tmp_path / "empty.json", tmp_path / "out")


def test_overwrite_refused_unless_asked(tmp_path):
    p = write(tmp_path, "ok.jsonl", [GOOD])
    out = import_jsonl(p, tmp_path / "out")
    with pytest.raises(StoreError, match="already exists.*--overwrite"):
        import_jsonl(p, out)
    with pytest.raises(StoreError, match="already exists"):
        import_neuron_records(p, out)
    assert ExemplarStore.open(import_jsonl(p, out, overwrite=True)).units() == [UnitId(1, 2)]


def test_neuron_record_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"random_sample": []}), encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad\.json: not a NeuronRecord.*neuron_id"):
        import_neuron_records(bad, tmp_path / "out")
    rec = neuron_record(0, 1, 3, 0)
    rec["most_positive_activation_records"][2]["activations"].append(1.0)
    bad.write_text(json.dumps(rec), encoding="utf-8")
    with pytest.raises(StoreError, match=r"most_positive_activation_records\[2\]: 4 tokens but 5 activations"):
        import_neuron_records(bad, tmp_path / "out")
    bad.write_text('{"neuron_id": {"layer_index": 0,\n "neuron_index": }', encoding="utf-8")
    with pytest.raises(StoreError, match=r"bad\.json:2: not valid JSON"):
        import_neuron_records(bad, tmp_path / "out")
    with pytest.raises(StoreError, match="holds no .json"):
        (tmp_path / "emptydir").mkdir()
        import_neuron_records(tmp_path / "emptydir", tmp_path / "out")
