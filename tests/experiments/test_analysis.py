"""The analysis step (Table 1, Figure 2a/2b, Table 3, summary) on real run files made by the program with a
scripted explainer, the keyword simulator and a bag-of-words embedder; every number is recomputed here from
the run files through the run store's own reader."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from experiment_world import BagOfWordsEmbedder
from paper_analysis import analyze, main, mean_se, pca2, spread
from PIL import Image

from ns_dspy.agents import ClusterConfig
from ns_dspy.exemplars import ExemplarStore, LayerData, write_store
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.report.data import padded
from ns_dspy.runs import RunStore
from ns_dspy.runs.runner import explain_units
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId

WORDS = ["The", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today", " big", " red"]
TRIGGERS = {UnitId(0, 1): {" dog": 5.0, " cat": 3.0}, UnitId(0, 2): {" red": 4.0, " big": 2.0},
            UnitId(3, 1): {" mat": 4.0, " sat": 4.0, " on": 1.0}, UnitId(3, 2): {}}  # 3:2 never fires


def toy_store(path):
    rng = np.random.default_rng(1)
    n = 60
    windows = np.array([rng.permutation(len(WORDS))[:6] for _ in range(n)])
    split = np.array([0, 1, 2] * (n // 3))
    layers = {}
    for layer in (0, 3):
        units = [u for u in TRIGGERS if u.layer == layer]
        acts = np.zeros((len(units), n, 6), dtype=np.float32)
        for k, u in enumerate(units):
            for w in range(n):
                for t, s in enumerate(windows[w]):
                    acts[k, w, t] = TRIGGERS[u].get(WORDS[s], 0.0 if TRIGGERS[u] else -0.2)
        slots = {}
        for s, name in enumerate(["train", "valid", "test"]):
            rows = np.flatnonzero(split == s)
            top = np.stack([rows[np.argsort(-acts[k, rows].max(1), kind="stable")][:8] for k in range(len(units))])
            rest = np.stack([np.setdiff1d(rows, top[k])[:5] for k in range(len(units))])
            slots[(name, "top")] = (top, np.stack([acts[k, top[k]] for k in range(len(units))]))
            slots[(name, "random")] = (rest, np.stack([acts[k, rest[k]] for k in range(len(units))]))
        layers[layer] = LayerData(units=np.array([u.index for u in units]), slots=slots,
                                  stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2)),
                                         "std": acts.std((1, 2)), "min": acts.min((1, 2)),
                                         "frequency": (acts > 0).mean((1, 2))})
    return ExemplarStore.open(write_store(path, manifest={"model": {"name": "toy-model"}}, strings=WORDS,
                                          windows=windows, window_split=split, layers=layers))


def explain(store, path, explainer, **flags):
    lm, _ = explainer
    cfg = ExplainConfig(candidates=2, iterations=3, max_exemplars=5, baseline_k=3, cluster=ClusterConfig(), **flags)
    run = RunStore(path, {"explain": cfg.to_dict(), "lm": "scripted", "temperature": 0.7, "simulator": "keyword",
                          "embedder": BagOfWordsEmbedder.kind, "store": str(store.path)})
    explain_units(NeuronScope(KeywordSimulator(), BagOfWordsEmbedder(), cfg), store, list(TRIGGERS), run, lm,
                  progress=False)
    records = run.records()
    run.close()
    return records


@pytest.fixture
def runs(tmp_path, explainer):
    store = toy_store(tmp_path / "store")
    paths = {m: tmp_path / f"{m}.sqlite" for m in ("refine", "norefine", "baseline")}
    records = {"refine": explain(store, paths["refine"], explainer),
               "norefine": explain(store, paths["norefine"], explainer, refine=False),
               "baseline": explain(store, paths["baseline"], explainer, baseline=True)}
    return paths, records


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table1_and_gains_are_the_run_files_means(runs, tmp_path):
    paths, records = runs
    out = tmp_path / "results"
    analyze(paths, out, command="python experiments/paper.py run toy.toml")
    rows = _read_csv(out / "table1.csv")
    # each layer, then every layer's neurons together ("all": the two layers here)
    assert [(r["layer"], r["mode"]) for r in rows] == [(layer, m) for layer in ("0", "3", "all")
                                                      for m in ("norefine", "refine", "baseline", "stats")]
    here = lambda x, r: r["layer"] == "all" or x.unit.layer == int(r["layer"])  # noqa: E731
    for r in [r for r in rows if r["mode"] == "stats"]:  # the no-LM row, from the refine run's traces
        stats = [x.trace["statistical"]["test"] for x in records["refine"] if here(x, r) and x.status == "done"]
        assert int(r["neurons"]) == len(stats) and float(r["score_test"]) == pytest.approx(np.mean(stats))
        assert float(r["lm_tokens_per_neuron"]) == 0 and float(r["number"]) == 1
    assert int([r for r in rows if r["layer"] == "all" and r["mode"] == "refine"][0]["neurons"]) == sum(
        int(r["neurons"]) for r in rows if r["layer"] != "all" and r["mode"] == "refine")
    rows = [r for r in rows if r["mode"] != "stats"]
    for r in rows:
        done = [x for x in records[r["mode"]] if here(x, r) and x.status == "done"]
        failed = [x for x in records[r["mode"]] if here(x, r) and x.status != "done"]
        assert int(r["neurons"]) == len(done) and int(r["failed"]) == len(failed)
        assert float(r["score_test"]) == pytest.approx(np.mean([x.score_test for x in done]))
        assert float(r["score_valid"]) == pytest.approx(np.mean([x.score_valid for x in done]))
        assert float(r["number"]) == pytest.approx(np.mean([x.number for x in done]))
        if len(done) > 1:
            se = np.std([x.score_test for x in done], ddof=1) / np.sqrt(len(done))
            assert float(r["score_test_se"]) == pytest.approx(se)
        assert r["model"] == "toy-model"  # read from the store the runs name
    assert [r for r in rows if r["layer"] == "3" and r["mode"] == "refine"][0]["failed"] == "1"  # 3:2 never fires
    t1 = json.loads((out / "table1.json").read_text())
    ref = {x.unit: x for x in records["refine"]}
    assert [g["layer"] for g in t1["gains"]] == [0, 3, "all"]
    for gain in t1["gains"]:
        pairs = [(ref[x.unit], x) for x in records["norefine"] if gain["layer"] in ("all", x.unit.layer)
                 and x.status == "done" and ref[x.unit].status == "done"]
        assert gain["paired_neurons"] == len(pairs) > 0
        assert gain["gain_test"] == pytest.approx(np.mean([a.score_test - b.score_test for a, b in pairs]))
        # the same deterministic explainer in both runs: identical decompositions and clusters (the statistical
        # word lists that join the modes depend on the refined explanations, so Number may differ)
        assert gain["same_modes"] == len(pairs)
        lm_modes = lambda r: sum(m.source == "lm" for m in r.typed_trace.modes)  # noqa: E731
        assert all(lm_modes(a) == lm_modes(b) for a, b in pairs)
    md = (out / "table1.md").read_text()
    assert "NeuronScope (w/o Refinement)" in md and "| Layer | paired neurons |" in md


def test_figure2a_is_the_mean_carried_forward_trajectory(runs, tmp_path):
    paths, records = runs
    out = tmp_path / "results"
    analyze(paths, out)
    rows = _read_csv(out / "figure2a.csv")
    for layer in (0, 3):
        done = [x for x in records["refine"] if x.unit.layer == layer and x.status == "done"]
        per_neuron = [np.mean([padded(c["trajectory"], 4) for c in x.trace["clusters"]
                               if c.get("source", "lm") == "lm"], axis=0) for x in done]  # not the word-list modes
        expected = np.mean(per_neuron, axis=0)
        got = [float(r["mean_valid"]) for r in rows if r["layer"] == str(layer)]
        assert got == pytest.approx(expected.tolist()) and len(got) == 3 + 1  # iterations 0..3
        assert all(b >= a - 1e-12 for a, b in zip(got, got[1:]))  # the best so far never falls
        assert {r["neurons"] for r in rows if r["layer"] == str(layer)} == {str(len(done))}
    image = Image.open(out / "figure2a.png")
    assert image.format == "PNG" and image.size[0] > 400 and np.asarray(image.convert("L")).std() > 10


def test_figure2b_projects_the_conditions_with_their_cluster_labels(runs, tmp_path):
    paths, records = runs
    out = tmp_path / "results"
    analyze(paths, out)
    f2b = json.loads((out / "figure2b.json").read_text())
    done = [x for x in records["refine"] if x.status == "done"]
    chosen = min(done, key=lambda x: (-x.number, -len(x.trace["conditions"]), x.unit))
    assert f2b["unit"] == str(chosen.unit)
    assert [p["condition"] for p in f2b["points"]] == chosen.trace["conditions"]
    assert [p["cluster"] for p in f2b["points"]] == chosen.trace["labels"]
    # one representative per LM mode (the statistical word lists joined as modes have no conditions)
    assert sum(p["representative"] for p in f2b["points"]) == sum(m.source == "lm" for m in chosen.typed_trace.modes)
    vectors = BagOfWordsEmbedder().embed(chosen.trace["conditions"])
    coords, ratios = pca2(vectors)
    assert np.allclose([[p["x"], p["y"]] for p in f2b["points"]], coords)
    assert ratios[0] >= ratios[1] and f2b["explained_variance"] == pytest.approx(ratios)
    # PCA preserves what it keeps: the 2-D distances never exceed the full ones
    full = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    flat = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    assert (flat <= full + 1e-5).all()
    assert Image.open(out / "figure2b.png").format == "PNG"
    # a neuron named on purpose, and one that is not there
    analyze(paths, out, figure2b_neuron="0:2")
    assert json.loads((out / "figure2b.json").read_text())["unit"] == "0:2"
    with pytest.raises(Exception, match="3:2 is not a finished neuron"):
        analyze(paths, out, figure2b_neuron="3:2")


def test_table3_sets_baseline_and_neuronscope_side_by_side(runs, tmp_path):
    paths, records = runs
    out = tmp_path / "results"
    analyze(paths, out, table3_rows=2, command="python experiments/paper.py run x.toml")
    t3 = json.loads((out / "table3.json").read_text())
    base = {x.unit: x for x in records["baseline"] if x.status == "done"}
    ours = {x.unit: x for x in records["refine"] if x.status == "done"}
    assert [r["unit"] for r in t3] == [str(u) for u in sorted(set(base) & set(ours))]
    for r in t3:
        unit = UnitId.parse(r["unit"])
        assert r["baseline"] == base[unit].trace["finals"][0]["explanation"]
        assert r["baseline_test"] == pytest.approx(base[unit].score_test)
        assert r["neuronscope"] == [f["explanation"] for f in ours[unit].trace["finals"]]
        assert r["neuronscope_test"] == pytest.approx(ours[unit].score_test)
    md = (out / "table3.md").read_text()
    assert md.count("\n| ") == 2  # two rows below the header
    shown = [line.split(" | ")[0].strip("| ") for line in md.splitlines()[2:4]]
    assert {s.split(" / ")[0] for s in shown} == {"0", "3"}  # spread over both layers
    summary = (out / "summary.md").read_text()
    assert "python experiments/paper.py run x.toml" in summary
    assert "keyword" in summary  # the simulator caveat
    b = np.mean([r["baseline_test"] for r in t3])
    assert f"mean test score baseline {b:.3f}" in summary


def test_summary_holds_the_table1_numbers(runs, tmp_path):
    paths, records = runs
    out = tmp_path / "results"
    analyze(paths, out, command="CMD", config_text="name = 'toy'")
    summary = (out / "summary.md").read_text()
    done = [x for x in records["refine"] if x.unit.layer == 0 and x.status == "done"]
    mean, se = mean_se([x.score_test for x in done])
    assert f"| toy-model | 0 | NeuronScope | {mean:.3f} ± {se:.3f} |" in summary
    assert "![Figure 2a](figure2a.png)" in summary and "![Figure 2b](figure2b.png)" in summary
    assert "name = 'toy'" in summary and "3:2" in summary  # the configuration and the failure are listed


def test_analysis_cli_and_mistakes(runs, tmp_path, capsys):
    paths, _ = runs
    out = tmp_path / "cli"
    assert main(["--refine", str(paths["refine"]), "--out", str(out)]) == 0
    assert (out / "table1.csv").exists() and (out / "figure2a.png").exists()
    assert "(needs both runs)" in (out / "table3.md").read_text()
    assert main(["--refine", str(paths["norefine"]), "--out", str(out)]) == 2  # an ablation given as refine
    assert "is a norefine run, given as refine" in capsys.readouterr().err
    assert main(["--baseline", str(tmp_path / "nope.sqlite"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "no run file at" in err and len(err.splitlines()) == 1
    assert main(["--out", str(out)]) == 2


def test_spread_takes_every_layer_first():
    rows = [{"unit": f"{layer}:{i}", "layer": layer} for layer in (1, 5, 9) for i in range(4)]
    assert [r["unit"] for r in spread(rows, 4)] == ["1:0", "1:1", "5:0", "9:0"]
    assert len(spread(rows, 100)) == 12


def test_a_cached_explainer_gives_the_ablation_the_same_modes(tmp_path):
    """Why Table 1 can compare the modes at all: the refine run goes first, and with DSPy's LM cache (on by
    default for ns-dspy's LMs) the ablation gets the same hypotheses and decompositions without one LM call."""
    import dspy
    from experiment_world import MarkReader

    from ns_dspy.lms.scripted import ScriptedEngine

    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    try:
        engine = ScriptedEngine([], default=MarkReader())
        lm = dspy.LM("local/scripted", engine=engine, cache=True)
        store = toy_store(tmp_path / "store")
        refine = explain(store, tmp_path / "refine.sqlite", (lm, engine))
        calls = len(engine.prompts)
        ablation = explain(store, tmp_path / "norefine.sqlite", (lm, engine), refine=False)
    finally:
        dspy.cache = saved
    assert calls > 0 and len(engine.prompts) == calls
    for a, b in zip(refine, ablation):
        assert a.trace.get("conditions") == b.trace.get("conditions")
        assert [c["members"] for c in a.trace.get("clusters", []) if c.get("source", "lm") == "lm"] == \
            [c["members"] for c in b.trace.get("clusters", []) if c.get("source", "lm") == "lm"]


def test_run_summary_pairs_each_neuron_with_its_run_without_refinement(runs, tmp_path, capsys):
    """run_summary's --ablation: the per-neuron rows and the paired gain are the two run files' own scores."""
    from run_summary import main as summary

    paths, records = runs
    out = tmp_path / "summary"
    assert summary([str(paths["refine"]), "--out", str(out), "--ablation", str(paths["norefine"])]) == 0
    text = (out / "summary.md").read_text()
    refine = {r.unit: r for r in records["refine"] if r.status == "done"}
    norefine = {r.unit: r for r in records["norefine"] if r.status == "done"}
    both = sorted(set(refine) & set(norefine))
    assert both and f"({len(both)} paired)" in text
    for unit in both:
        a, r = norefine[unit], refine[unit]
        row = next(line for line in text.splitlines() if line.startswith(f"| {unit} | {a.score_valid:.3f} |"))
        assert f"| {r.score_valid:.3f} | {r.score_test:.3f} |" in row
    gain = sum(refine[u].score_test - norefine[u].score_test for u in both) / len(both)
    assert f"test {gain:.3f}" in text and "NeuronScope minus the same neurons without refinement" in text
    leads = [r.trace["polysemantic"]["lead_interval"] for r in refine.values()]  # the runner stores them
    assert (f"above 0 on {sum(lo > 0 for lo, _ in leads)}, below 0 on {sum(hi < 0 for _, hi in leads)}, "
            f"undecided on {sum(lo <= 0 <= hi for lo, hi in leads)} of {len(leads)} neurons") in text
    # a named ablation, beside the default name: each gets its own section
    assert summary([str(paths["refine"]), "--out", str(out), "--ablation", str(paths["norefine"]),
                    "--ablation", f"without list edits={paths['norefine']}"]) == 0
    text = (out / "summary.md").read_text()
    assert "the same neurons without refinement" in text and "the same neurons without list edits" in text
    assert f"| {both[0]} | {norefine[both[0]].score_valid:.3f} |" in text.split("without list edits")[1]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        summary([str(paths["refine"]), "--out", str(out), "--ablation", str(tmp_path / "missing.sqlite")])
    assert "missing.sqlite" in capsys.readouterr().err


def test_lm_share_scores_each_final_set_without_the_modes_the_lm_wrote(tmp_path, explainer):
    """experiments/lm_share.py: the set without its LM modes is scored on test as the runner scores a set, and the
    table splits NeuronScope - statistical into the two parts."""
    from lm_share import main as share
    from lm_share import neurons

    from ns_dspy.config import RunConfig, SimulatorConfig
    from ns_dspy.scoring import HeldOut, polysemantic

    store = toy_store(tmp_path / "store")
    lm, _ = explainer
    cfg = ExplainConfig(candidates=2, iterations=2, max_exemplars=5, cluster=ClusterConfig())
    path = tmp_path / "run.sqlite"
    from ns_dspy.build import PROVENANCE_VERSION

    config = RunConfig(explain=cfg, simulator=SimulatorConfig("keyword")).to_dict(provenance=True)
    run = RunStore(path, {"version": PROVENANCE_VERSION, "run": config, "components": {}})  # as ns-dspy explain writes
    explain_units(NeuronScope(KeywordSimulator(), BagOfWordsEmbedder(), cfg), store, list(TRIGGERS), run, lm,
                  progress=False)
    run.close()
    _, rows = neurons(path)
    assert any(r["lm"] and len(r["lm"]) < len(r["finals"]) for r in rows)  # sets that mix LM modes and lists
    assert share([str(path), "--store", str(store.path), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "lm_share.md").read_text()
    for r in rows:
        kept = [e for e in r["finals"] if e not in r["lm"]]
        if r["lm"] and kept:
            unit = UnitId.parse(r["unit"])
            want = polysemantic(KeywordSimulator(), kept, HeldOut.from_store(store, unit, "test"),
                                calibration=HeldOut.from_store(store, unit, "valid"), final_kind=cfg.test_maps).value
            assert f"| {r['unit']} | {r['stats_test']:.3f} | {want:.3f} | {r['test']:.3f} |" in text
    with pytest.raises(SystemExit):
        share([str(tmp_path / "missing.sqlite"), "--store", str(store.path), "--out", str(tmp_path / "out")])


def test_mode_stop_pairs_the_stopped_run_with_the_full_one(tmp_path, explainer):
    """experiments/mode_stop.py: each neuron's LM calls, stopped modes and scores are the two run files' own, and
    the totals add them up."""
    from mode_stop import main as compare
    from mode_stop import neuron_rows

    from ns_dspy.runs.read import read_run

    store = toy_store(tmp_path / "store")
    stop, full = tmp_path / "stop.sqlite", tmp_path / "full.sqlite"
    explain(store, stop, explainer)
    explain(store, full, explainer, mode_stop=False)
    rows = {path: {str(r.unit): r for r in read_run(path).done} for path in (stop, full)}
    assert compare([str(stop), str(full), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    calls = {}
    for path in (stop, full):
        per = neuron_rows(path)
        assert set(per) == set(rows[path])
        for unit, r in rows[path].items():
            usage = r.trace["lm_usage"]
            assert per[unit]["calls"] == usage["calls"] + usage["cached_calls"]
            assert (per[unit]["valid"], per[unit]["test"]) == (r.score_valid, r.score_test)
            assert per[unit]["stopped"] == sum(c.get("stopped") == "no_contribution" for c in r.trace["clusters"])
        calls[path] = sum(p["calls"] for p in per.values())
    assert not any(p["stopped"] for p in neuron_rows(full).values())  # --no-mode-stop stops no mode
    assert any(p["stopped"] for p in neuron_rows(stop).values()) and calls[stop] < calls[full]
    assert f"LM calls: {calls[stop]} with the stop, {calls[full]} without" in text
    for unit, r in rows[stop].items():
        f = rows[full][unit]
        assert f"| {r.score_valid:.3f} / {f.score_valid:.3f} | {r.score_test:.3f} / {f.score_test:.3f} |" in text
    with pytest.raises(SystemExit, match="no run file"):
        compare([str(stop), str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "out")])
