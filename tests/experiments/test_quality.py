"""experiments/quality.py on a toy store whose unit fires on ' dog' (5) and ' cat' (3), with the keyword
simulator: the no-LM methods, the neuron choice and a rerun that reuses the chosen neurons."""

from __future__ import annotations

import json

import pytest
from quality import METHOD_ORDER, choose, lookup_score, main, peak_tokens, plot_quality, round_robin

from ns_dspy.scoring import HeldOut
from ns_dspy.scoring.polarity import simulated_text
from ns_dspy.types import UnitId
from ns_dspy.lms.scripted import scripted_lm
from tests.runs.test_runner import WordEmbedder, _store, responder


def test_no_lm_methods_side_by_side(tmp_path, capsys):
    store = _store(tmp_path)
    out = tmp_path / "q"
    assert main(["--store", str(store.path), "--out", str(out), "--per-group", "1", "--simulator", "keyword"]) == 0
    data = json.loads((out / "quality.json").read_text())
    assert data["neurons"] == {"z-score": ["0:1"], "frequency": ["0:2"]}
    dog = data["results"]["0:1"]
    assert all(simulated_text(t).startswith("the word") for t in dog["stats"]["explanations"])
    assert dog["stats"]["lm_tokens"] == 0
    assert all(t.startswith("the word") for t in dog["stats-pos"]["explanations"])  # --no-negative: no marker
    assert len(dog["stats1"]["explanations"]) == 1 and dog["stats-pos"]["valid"] >= dog["stats1"]["valid"] - 1e-9
    assert dog["stats"]["valid"] >= dog["stats-pos"]["valid"] - 1e-9  # a negative list joins only when it helps
    assert dog["stats"]["test"] > 0.5 and dog["peak3"]["test"] > 0.5
    assert dog["lists-ceiling"]["test"] == pytest.approx(1.0, abs=1e-6)  # dog and cat are among the 28 highest
    assert "stats" not in data["results"]["0:2"]  # never fires: no explanation, counted as not done
    summary = (out / "summary.md").read_text()
    assert "| statistical explainer (no LM): a word list or tier lists, and a negative list when it helps |" in summary and "Command: `python experiments/quality.py" in summary
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the chart beside the table
    (out / "neurons.json").write_text(json.dumps({"z-score": ["0:2"], "frequency": []}))
    main(["--store", str(store.path), "--out", str(out), "--simulator", "keyword"])
    assert json.loads((out / "quality.json").read_text())["neurons"] == {"z-score": ["0:2"], "frequency": []}


def test_the_chart_draws_each_scored_method_in_table_order_with_its_mean(tmp_path):
    results = {"1:1": {"refine": {"test": 0.1}, "stats": {"test": 0.3}, "lookup": {"test": 0.5}},
               "1:2": {"refine": {"test": 0.3}, "stats": {"test": 0.1}, "hybrid": {"test": None}},
               "1:3": {"stats": {"test": 0.2}}}
    data = {"results": results, "group_of": {"1:1": "z-score", "1:2": "frequency", "1:3": "frequency"}}
    drawn = plot_quality(data, tmp_path / "q.png")
    assert list(drawn) == [m for m in METHOD_ORDER if m in ("lookup", "stats", "refine")]  # hybrid: never scored
    assert drawn["stats"][0] == pytest.approx(0.2) and drawn["stats"][1] == pytest.approx(0.1 / 3 ** 0.5)
    assert drawn["refine"][0] == pytest.approx(0.2) and drawn["lookup"] == (pytest.approx(0.5), None)
    assert (tmp_path / "q.png").stat().st_size > 1000


def test_plot_only_redraws_from_quality_json_and_needs_one(tmp_path):
    out = tmp_path / "q"
    out.mkdir()
    with pytest.raises(SystemExit, match="quality.json does not exist"):
        main(["--store", "s", "--out", str(out), "--plot-only"])
    assert not (out / "quality.png").exists()
    (out / "quality.json").write_text(json.dumps({"results": {"1:1": {"stats": {"test": 0.25}}}}))
    assert main(["--store", "s", "--out", str(out), "--plot-only"]) == 0 and (out / "quality.png").is_file()


def test_lm_methods_take_the_groups_in_turns():
    assert round_robin([["z1", "z2", "z3"], ["f1"], ["s1", "s2"]]) == ["z1", "f1", "s1", "z2", "s2", "z3"]
    assert round_robin([]) == [] and round_robin([[], ["a"]]) == ["a"]


def test_lookup_table_and_peak_tokens(tmp_path):
    store = _store(tmp_path)
    unit = UnitId(0, 1)
    top = store.exemplars(unit, "train", "top")
    train = top + store.exemplars(unit, "train", "random")
    test = HeldOut.from_store(store, unit, "test")
    assert lookup_score(train, test) == pytest.approx(1.0, abs=1e-6)  # by token
    # restricted to dog: cat falls to the mean with the rest, so r drops below 1 (dog 5, cat 3, all else 0)
    assert 0.5 < lookup_score(train, test, {"dog"}) < 0.99 and lookup_score(train, test, {"dog", "cat"}) == \
        pytest.approx(1.0, abs=1e-6)
    assert set(peak_tokens(top)) == {"dog", "cat"}  # the only tokens that ever peak
    chosen = choose(store, 1, exclude={UnitId(0, 1)})
    assert UnitId(0, 1) not in [u for us in chosen.values() for u in us]


def test_lm_methods_neuron_by_neuron_with_paired_differences(tmp_path, monkeypatch):
    """The LM methods (the runner tests' scripted LM and exact embedder in place of the offline ones) run neuron
    by neuron; --lm-minutes 0 starts none and the table says so; a rerun without it resumes and adds paired
    differences over the neurons both methods finished."""
    import ns_dspy.build

    monkeypatch.setattr(ns_dspy.build, "build_lm", lambda config, **kw: scripted_lm([responder] * 100)[0])
    monkeypatch.setattr(ns_dspy.build, "build_embedder", lambda config: WordEmbedder())
    store = _store(tmp_path)
    out = tmp_path / "q"
    argv = ["--store", str(store.path), "--out", str(out), "--per-group", "1", "--simulator", "keyword",
            "--lm-methods", "norefine,refine", "--iterations", "1", "--candidates", "1"]
    assert main(argv + ["--lm-minutes", "0"]) == 0
    data = json.loads((out / "quality.json").read_text())
    assert data["summary"]["refine"]["done"] == 0 and "refine-norefine" not in data["summary"]["paired"]
    assert "| NeuronScope, LM modes only (--no-stats-modes) | - |" in (out / "summary.md").read_text()
    assert "hybrid" not in data["summary"]  # nothing to add the word lists to yet
    assert main(argv) == 0
    data = json.loads((out / "quality.json").read_text())
    dog = data["results"]["0:1"]
    assert dog["refine"]["test"] is not None and dog["norefine"]["test"] is not None
    assert data["summary"]["paired"]["refine-norefine"]["neurons"] == 1
    assert data["summary"]["paired"]["refine-norefine"]["test"] == pytest.approx(
        dog["refine"]["test"] - dog["norefine"]["test"])
    assert "NeuronScope, LM modes only (--no-stats-modes) - NeuronScope w/o refinement" in \
        (out / "summary.md").read_text()
    # the default (word lists as modes when they help on valid), from the refine run's modes and the stats row
    hybrid = dog["hybrid"]
    assert hybrid["valid"] >= max(dog["refine"]["valid"], dog["stats"]["valid"]) - 1e-9
    assert hybrid["number"] == hybrid["lm_modes"] + hybrid["lists"] == len(hybrid["explanations"])
    assert set(hybrid["explanations"]) <= set(dog["refine"]["explanations"]) | set(dog["stats"]["explanations"])
    assert data["summary"]["paired"]["hybrid-stats"]["neurons"] == 1


def test_compiled_method_loads_its_program_and_the_others_run_uncompiled(tmp_path, monkeypatch):
    """``--lm-methods refine,compiled --program FILE``: the compiled run's prompts carry the program's instructions,
    the uncompiled run's do not, and both get their default row (the word lists added where they help)."""
    import ns_dspy.build
    from ns_dspy.optimize import save_compiled
    from ns_dspy.program import ExplainConfig, NeuronScope
    from ns_dspy.simulators import KeywordSimulator

    lm, engine = scripted_lm([responder] * 200)
    monkeypatch.setattr(ns_dspy.build, "build_lm", lambda config, **kw: lm)
    monkeypatch.setattr(ns_dspy.build, "build_embedder", lambda config: WordEmbedder())
    program = NeuronScope(KeywordSimulator(), WordEmbedder(), ExplainConfig())
    predict = dict(program.named_predictors())["hypothesis.hypothesize"]
    predict.signature = predict.signature.with_instructions("COMPILED INSTRUCTIONS: name the animal words.")
    save_compiled(program, tmp_path / "c.json", {"optimizer": "bootstrap", "lm": "local:toy"})
    store = _store(tmp_path)
    out = tmp_path / "q"
    argv = ["--store", str(store.path), "--out", str(out), "--per-group", "1", "--simulator", "keyword",
            "--lm-methods", "refine,compiled", "--iterations", "1", "--candidates", "1"]
    with pytest.raises(SystemExit, match="no compiled program for --lm"):  # nothing packaged for that LM
        main(argv + ["--lm", "local:toy"])
    assert main(argv + ["--program", str(tmp_path / "c.json")]) == 0
    hypotheses = [p for p in engine.prompts if "activation" in p.lower()]
    assert any("COMPILED INSTRUCTIONS" in p for p in engine.prompts)
    assert sum("COMPILED INSTRUCTIONS" in p for p in engine.prompts) < len(hypotheses)  # refine ran uncompiled
    data = json.loads((out / "quality.json").read_text())
    dog = data["results"]["0:1"]
    assert dog["compiled"]["test"] is not None and dog["hybrid-compiled"]["valid"] >= dog["compiled"]["valid"] - 1e-9
    assert data["summary"]["paired"]["compiled-refine"]["neurons"] == 1
    assert "| NeuronScope with the compiled program, LM modes only (--no-stats-modes) |" in (out / "summary.md").read_text()


def test_rescore_with_the_same_simulator_reproduces_the_recorded_scores(tmp_path, capsys):
    from rescore import main as rescore

    store = _store(tmp_path)
    out = tmp_path / "q"
    assert main(["--store", str(store.path), "--out", str(out), "--per-group", "1", "--simulator", "keyword"]) == 0
    capsys.readouterr()
    args = ["--quality", str(out / "quality.json"), "--store", str(store.path), "--simulator", "keyword"]
    assert rescore([*args, "--method", "stats", "--out", str(tmp_path / "re")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("stats over"))
    recorded = json.loads((out / "quality.json").read_text())["results"]["0:1"]["stats"]["test"]
    assert line.startswith("stats over 1 neurons:") and "paired +0.000" in line
    assert f"recorded {recorded:.3f}" in line
    saved = json.loads((tmp_path / "re" / "rescore.json").read_text())["results"]["keyword"]
    assert saved["units"]["0:1"]["stats"]["test"] == pytest.approx(recorded, abs=1e-4)
    assert "| keyword |" in (tmp_path / "re" / "rescore.md").read_text()
    # two methods, two readers: the paired difference between methods is reported per reader
    assert rescore([*args, "--methods", "stats,stats1"]) == 0
    assert "stats - stats1" in capsys.readouterr().out
    assert rescore([*args, "--method", "refine"]) == 1  # no LM method ran: nothing to rescore
