"""The experiment driver end to end on a tiny real model: config -> recording -> the most frequently activating
neurons -> explain in three modes with a scripted explainer -> analysis; then resume, dry run and mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from experiment_world import BagOfWordsEmbedder
from paper import main
from paper_config import load_config

from ns_dspy.exemplars import ExemplarStore
from ns_dspy.runs.read import read_run


def write_config(path, tiny_llama, corpus, **over):
    values = {"tokens": 1600, "per_layer": 2, "modes": '["refine", "norefine", "baseline"]', "extra": ""}
    values.update(over)
    path.write_text(f"""
name = "tiny"
description = "the driver on a tiny Llama"
[record]
model = "{tiny_llama}"
layers = "0,1"
corpus = "{corpus}"
tokens = {values['tokens']}
window = 8
top_k = 12
random_k = 6
dtype = "float32"
[neurons]
per_layer = {values['per_layer']}
[explain]
lm = "endpoint:http://127.0.0.1:9/v1@scripted"   # never contacted: the test injects a scripted LM
simulator = "keyword"
embedder = "{BagOfWordsEmbedder.kind}"
modes = {values['modes']}
[explain.settings]
max_exemplars = 4
iterations = 2
candidates = 2
baseline_k = 2
[analysis]
table3_rows = 3
{values['extra']}
""")
    return path


def test_run_records_chooses_explains_analyzes_and_resumes(tiny_llama, text_corpus, tmp_path, explainer, capsys):
    lm, engine = explainer
    config = write_config(tmp_path / "tiny.toml", tiny_llama, text_corpus)
    work, results = tmp_path / "work", tmp_path / "results"
    argv = ["run", str(config), "--work", str(work), "--results", str(results), "-q"]
    assert main(argv, lm=lm) == 0
    store = ExemplarStore.open(work / "store")
    # the fixed set: per layer the 2 units with the highest activation frequency
    chosen = json.loads((work / "neurons.json").read_text())["units"]
    expected = []
    for layer in (0, 1):
        freq, idx = store.layer_stats(layer)["frequency"], store.layer_units(layer)
        top = sorted(range(len(idx)), key=lambda i: (-freq[i], idx[i]))[:2]
        expected += [f"{layer}:{idx[i]}" for i in sorted(top, key=lambda i: idx[i])]
    assert chosen == expected
    for mode in ("refine", "norefine", "baseline"):
        run = read_run(work / f"{mode}.sqlite")
        assert run.mode == mode and [str(r.unit) for r in run.records] == chosen
        assert run.config["simulator"] == "keyword" and run.config["store"] == str(store.path.resolve())
        assert (work / "reports" / f"{mode}.html").stat().st_size > 1000
    refine = read_run(work / "refine.sqlite")
    assert any(r.status == "done" for r in refine.records)
    assert all(c.get("trajectory") for r in refine.done for c in r.trace["clusters"]
               if c.get("source", "lm") == "lm")  # the statistical word lists added as modes are not refined
    for name in ("table1.csv", "table1.md", "figure2a.png", "figure2b.png", "table3.md", "summary.md"):
        assert (results / name).stat().st_size > 0, name
    summary = (results / "summary.md").read_text()
    assert f"python experiments/paper.py run {config} --work {work} --results {results} -q" in summary
    assert 'name = "tiny"' in summary  # the configuration that made it
    # resume: no recording, no LM call, the same results
    calls, stamp = len(engine.prompts), (work / "store" / "manifest.json").stat().st_mtime_ns
    table1 = (results / "table1.csv").read_text()
    assert main(argv, lm=lm) == 0
    assert len(engine.prompts) == calls and (work / "store" / "manifest.json").stat().st_mtime_ns == stamp
    assert (results / "table1.csv").read_text() == table1
    # analyze alone reads the run files only
    (results / "table1.csv").unlink()
    assert main(["analyze", str(config), "--work", str(work), "--results", str(results)]) == 0
    assert (results / "table1.csv").read_text() == table1
    capsys.readouterr()
    # the dry run reports what is done and the equivalent ns-dspy commands
    assert main(["run", str(config), "--work", str(work), "--results", str(results), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "exists, reused" in out and f"{len(chosen)} done" in out and "--no-refine" in out
    assert ",".join(chosen) in out
    # the same work folder with other recording settings is refused, before anything is recorded
    other = write_config(tmp_path / "other.toml", tiny_llama, text_corpus, tokens=2400)
    assert main(["run", str(other), "--work", str(work), "--results", str(results), "-q"], lm=lm) == 2
    assert "recorded with other settings (tokens)" in capsys.readouterr().err


def test_dry_run_loads_and_writes_nothing(tiny_llama, text_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "tiny.toml", tiny_llama, text_corpus)
    work = tmp_path / "work"
    assert main(["run", str(config), "--work", str(work), "--results", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "missing, would record" in out and "ns-dspy record" in out and "--neurons CHOSEN" in out
    assert not work.exists() and not (tmp_path / "r").exists()


def test_shipped_configs_are_valid_and_match_the_paper():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "experiments" / "configs"
    configs = {c.name: c for c in map(load_config, sorted(folder.glob("*.toml")))}
    assert set(configs) >= {"gemma-3-270m", "llama-3.1-8b", "gemma-2-2b", "qwen3-4b"}
    paper = {"llama-3.1-8b": ("meta-llama/Llama-3.1-8B", [5, 10, 20, 31]),
             "gemma-2-2b": ("google/gemma-2-2b", [5, 9, 18, 25]), "qwen3-4b": ("Qwen/Qwen3-4B", [5, 9, 18, 25])}
    for name, (model, layers) in paper.items():
        c = configs[name]
        assert (c.record.model, c.layers, c.neurons.per_layer, c.neurons.rank_by) == (model, layers, 200, "frequency")
        assert (c.explain.iterations, c.explain.candidates, c.explain.cluster.min_cluster_size) == (5, 8, 2)
        assert c.lm == "openai:gpt-4o" and c.embedder == "openai:text-embedding-3-small"
    small = configs["gemma-3-270m"]
    assert small.record.model == "gemma-3-270m" and len(small.layers) == 5 and max(small.layers) <= 17
    assert np.ptp(small.layers) >= 12  # spread over the 18 layers
    assert small.modes == ["refine", "norefine", "baseline"]


@pytest.mark.parametrize("extra, message", [
    ("[bogus]\nx = 1", "unknown key bogus"),
    ("", None),
])
def test_config_mistakes_are_one_line_errors(extra, message, tiny_llama, text_corpus, tmp_path, capsys):
    config = write_config(tmp_path / "c.toml", tiny_llama, text_corpus, extra=extra)
    if message is None:  # the other mistakes, one file each
        cases = {"per_layer = 2": ("per_layer = 0", "per_layer must be at least 1"),
                 "modes = [": ('modes = ["refine", "fancy"] #', "explain.modes must list"),
                 "iterations = 2": ("iterations = 0", "--iterations must be at least 1"),
                 "window = 8": ("window = 8\nwindoww = 3", "unknown key record.windoww"),
                 "max_exemplars = 4": ("refine = false", "set by explain.modes")}
        text = config.read_text()
        for anchor, (replacement, expected) in cases.items():
            line = next(line for line in text.splitlines() if line.startswith(anchor))
            config.write_text(text.replace(line, replacement))
            assert main(["run", str(config), "--dry-run"]) == 2, anchor
            err = capsys.readouterr().err.strip()
            assert expected in err and len(err.splitlines()) == 1, (anchor, err)
        return
    assert main(["run", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("paper: error:") and len(err.splitlines()) == 1
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "no experiment config at" in capsys.readouterr().err
    assert main(["analyze", str(write_config(tmp_path / "d.toml", tiny_llama, text_corpus)), "--work",
                 str(tmp_path / "nowork")]) == 2
    assert "run `python experiments/paper.py run" in capsys.readouterr().err
