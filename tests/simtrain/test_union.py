"""The union evaluation: a two-concept unit's parts' explanations alone, as the raw per-token maximum and as the
calibrated maximum (fitted on one half of the exemplars, scored on the other), with the keyword simulator on a
unit whose answer is known, on the tiny synthetic dataset, and through the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ns_dspy.errors import ConfigError
from ns_dspy.scoring.calibration import calibrate, union
from ns_dspy.scoring.correlation import pooled
from ns_dspy.simulators import build_simulator

from simulator_training.cli import build_parser, main
from simulator_training.data import DATA_FORMAT, DATA_VERSION, build_synthetic, read_units
from simulator_training.evaluate import (UNION_METHODS, _exemplars, components, evaluate_union, halves,
                                         markdown_union, summarise_union, union_units)


def _unit(name, family, explanation, texts, kinds=None):
    """``texts``: one list of (token, target) pairs per exemplar."""
    kinds = kinds or ["top"] * len(texts)
    return {"unit": name, "family": family, "explanations": [explanation],
            "exemplars": [{"tokens": [t for t, _ in ex], "token_ids": list(range(len(ex))),
                           "targets": [float(a) for _, a in ex], "kind": k} for ex, k in zip(texts, kinds)]}


def _words(text, **targets):
    return [(f" {w}", float(targets.get(w, 0.0))) for w in text.split()]


# The keyword simulator predicts 10 on the listed words: "dog" is exact, "cat sky" over-broad ("sky" is quiet).
DOG = _unit("word:dog", "word", "dog", [_words("a dog ran far", dog=10)])
CAT = _unit("word:cat", "word", "cat sky", [_words("a cat sat here", cat=10)])
# "dog" at 10, "cat" at 60 % (the weak part); two top exemplars per part (part by part, as build-data writes
# them), then quiet random ones where "sky" is a false alarm of the over-broad explanation
PAIR = _unit("pair:word:dog+word:cat~", "two-concept", "Dogs, and more weakly cats.", [
    _words("a dog ran to a dog", dog=10), _words("my dog is big and one dog is small", dog=10),
    _words("a cat sat by a cat here", cat=6), _words("one cat and a cat and a cat", cat=6),
    _words("blue sky over grey sky", ), _words("we went home late that day so slow"),
    _words("the sky was calm at noon"), _words("at noon we ate our food")],
    kinds=["top"] * 4 + ["random"] * 4)
UNITS = [DOG, CAT, PAIR]


def test_components_and_halves():
    names = {"word:dog", "word:cat", "code:+", "word:a"}
    assert components(PAIR, names) == ("word:dog", "word:cat")
    assert components({"unit": "pair:code:++word:a", "family": "two-concept"}, names) == ("code:+", "word:a")
    assert components(PAIR, {"word:dog"}) is None  # a part missing
    assert components(DOG, names) is None
    first, second = halves(_exemplars(PAIR))
    assert first == [0, 2, 4, 6] and second == [1, 3, 5, 7]  # both parts and both kinds in each half
    assert not set(first) & set(second) and sorted(first + second) == list(range(8))


def test_calibrated_union_beats_the_best_single_where_the_raw_max_loses():
    [row] = evaluate_union(build_simulator("keyword"), UNITS, progress=False)
    assert row["unit"] == PAIR["unit"] and row["weak"] and row["parts"] == ["word:dog", "word:cat"]
    assert row["explanations"] == ["dog", "cat sky"]
    assert row["r"]["raw_max"] < row["best_single"] == max(row["r_single"])  # the "sky" false alarms at 10
    assert row["r"]["calibrated_max"] > row["best_single"]
    assert row["beats"] == {m: row["r"][m] > row["best_single"] for m in UNION_METHODS}
    assert not row["beats"]["raw_max"] and row["beats"]["calibrated_max"]
    # each half's calibration is fitted on that half only, and scored on the other
    sim, exemplars = build_simulator("keyword"), _exemplars(PAIR)
    preds = sim.simulate(row["explanations"], exemplars)
    for (fit, scored), maps in zip((halves(exemplars), halves(exemplars)[::-1]), row["calibration"]):
        fitted = calibrate(row["explanations"], [[p[j] for j in fit] for p in preds],
                           [exemplars[j].activations for j in fit])
        assert [m["slope"] for m in maps] == [round(m.slope, 4) for m in fitted.maps]
    scored_alone = [np.mean([pooled([p[j] for j in s], [exemplars[j].activations for j in s]).r
                             for s in halves(exemplars)]) for p in preds]
    assert row["r_single"] == [round(float(v), 4) for v in scored_alone]
    # the maps a test score reuses, fitted on one half and scored on the other, as the product's guarded maps
    final = []
    for fit, scored in (halves(exemplars), halves(exemplars)[::-1]):
        maps = calibrate(row["explanations"], [[p[j] for j in fit] for p in preds],
                         [exemplars[j].activations for j in fit], kind="guarded")
        final.append(pooled(union([[p[j] for j in scored] for p in preds], maps),
                            [exemplars[j].activations for j in scored]).r)
    assert row["r"]["final_max"] == round(float(np.mean(final)), 4)

    summary = summarise_union([row])
    assert summary["all"]["units"] == summary["weak"]["units"] == 1 and summary["equal"] == {"units": 0}
    assert summary["all"]["beats"]["calibrated_max"] == 1.0 and summary["all"]["beats"]["raw_max"] == 0.0
    table = markdown_union({"keyword": summary})
    assert "| **keyword (all)** | 1 |" in table and "| keyword (equal) | 0 |" in table
    assert all(f"{m}: beats best" in table for m in UNION_METHODS)


def test_union_on_the_tiny_synthetic_dataset(tiny_pool, tiny_tokenizer, tmp_path):
    out = build_synthetic(tmp_path / "data", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                          valid_share=0.3, n_top=3, n_random=2, valid_top=4, valid_random=2, pairs_train=0,
                          pairs_valid=3, progress=False)
    valid = read_units(out, "valid")
    pairs = [u for u in valid if u["family"] == "two-concept"]
    assert pairs
    picked = union_units(valid, seed=0)
    assert [u["unit"] for u, _, _ in picked] == [u["unit"] for u in pairs]  # every pair's parts are valid units
    by_name = {u["unit"]: u for u in valid}
    for unit, parts, texts in picked:
        assert [t in by_name[p]["explanations"] for p, t in zip(parts, texts)] == [True, True]
    assert union_units(valid, seed=0) == picked  # seeded
    rows = evaluate_union(build_simulator("keyword"), valid, progress=False)
    assert [r["unit"] for r in rows] == [u["unit"] for u in pairs]
    for r in rows:
        assert all(np.isfinite(v) for v in [*r["r_single"], *r["r"].values()])
        assert r["beats"] == {m: r["r"][m] > r["best_single"] for m in UNION_METHODS}
    assert len(evaluate_union(build_simulator("keyword"), valid, max_units=1, progress=False)) == 1


def test_cli_writes_union(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": DATA_FORMAT, "version": DATA_VERSION}))
    (data / "valid.jsonl").write_text("".join(json.dumps(u) + "\n" for u in UNITS))
    assert main(["-q", "union", "--simulator", "keyword", "--data", str(data), "--out", str(tmp_path / "union")]) == 0
    report = json.loads((tmp_path / "union.json").read_text())
    assert set(report["summary"]) == {"keyword"} and len(report["units"]["keyword"]) == 1
    assert report["summary"]["keyword"]["all"]["beats"]["calibrated_max"] == 1.0
    assert (tmp_path / "union.md").read_text().startswith("| simulator |")
    assert (tmp_path / "union.png").stat().st_size > 0
    (data / "valid.jsonl").write_text(json.dumps(DOG) + "\n")
    assert main(["-q", "union", "--simulator", "keyword", "--data", str(data)]) == 2  # no two-concept unit
    (data / "valid.jsonl").write_text(json.dumps(PAIR) + "\n")  # a pair whose parts are not in the data
    args = build_parser().parse_args(["union", "--simulator", "keyword", "--data", str(data)])
    with pytest.raises(ConfigError, match="both of its parts"):
        args.func(args)
