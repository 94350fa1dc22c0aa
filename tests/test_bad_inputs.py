"""Issue 18: no traceback on any bad input.

Each test builds a bad input for real (a store made by ``ns-dspy import`` and then damaged the way a disk, an
editor or another tool damages it; a run file written by the run store), runs the command line in-process
through ``main`` and checks the project rule: exit 2, one line ``ns-dspy: error: ...`` naming what is wrong,
no traceback, and nothing stored modified. Options that must be positive are refused by argparse (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from ns_dspy.cli import main
from ns_dspy.runs import NeuronRecord, RunStore
from ns_dspy.scoring import pearson, pooled
from ns_dspy.types import UnitId

WORDS = ["the", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today"]


def _records(unit: str) -> dict:
    """One JSONL line: 12 top and 6 random exemplars of 6 tokens; the unit fires on ' dog' (5) and ' cat' (2)."""
    rng = np.random.default_rng(sum(map(ord, unit)))
    exemplars = []
    for k in range(18):
        tokens = [WORDS[i] for i in rng.integers(0, len(WORDS), 6)]
        acts = [{" dog": 5.0, " cat": 2.0}.get(t, 0.0) + 0.01 * j for j, t in enumerate(tokens)]
        exemplars.append({"kind": "top" if k < 12 else "random", "tokens": tokens, "activations": acts})
    return {"unit": unit, "model": "toy", "hookpoint": "mlp", "exemplars": exemplars}


@pytest.fixture
def store(tmp_path, capsys) -> Path:
    """A real store of units 0:1, 0:4 and 2:7, built by ``ns-dspy import``."""
    src = tmp_path / "records.jsonl"
    src.write_text("".join(json.dumps(_records(u)) + "\n" for u in ("0:1", "0:4", "2:7")), encoding="utf-8")
    assert main(["import", str(src), str(tmp_path / "store")]) == 0
    capsys.readouterr()
    return tmp_path / "store"


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or ``path`` itself) with the SHA-256 of its bytes."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def one_line_error(capsys, *needles: str) -> str:
    """The command's stderr: exactly one ``ns-dspy: error:`` line holding every needle, and no traceback."""
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err + captured.out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ns-dspy: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def run_refused(capsys, argv: list[str], *needles: str, keep: list[Path] = ()) -> str:
    """Run ``argv``; it must exit 2 with one error line naming ``needles`` and leave every ``keep`` unchanged."""
    before = [snapshot(p) for p in keep]
    assert main([str(a) for a in argv]) == 2
    line = one_line_error(capsys, *needles)
    assert [snapshot(p) for p in keep] == before
    return line


# -- unit numbers that do not fit ------------------------------------------------------------------------
BIG = 2**32


@pytest.mark.parametrize("line, needle", [
    ({"unit": f"0:{BIG}"}, "index is out of range"),
    ({"unit": f"{BIG}:3"}, "layer is out of range"),
    ({"unit": "1:" + "9" * 30}, "index is out of range"),
    ({"unit": [0, 2**64]}, "index 18446744073709551616 is out of range"),
    ({"layer": 1, "neuron": 2**70}, "out of range"),
])
def test_import_refuses_a_unit_number_above_2_32(line, needle, tmp_path, capsys):
    src = tmp_path / "big.jsonl"
    good = {"unit": "0:1", "exemplars": [{"tokens": ["a", "b"], "activations": [1.0, 2.0]}]}
    src.write_text(json.dumps(good) + "\n" + json.dumps({**good, "unit": None, **line}) + "\n")
    out = tmp_path / "out"
    run_refused(capsys, ["import", src, out], f"{src}:2", needle, "2^32", keep=[src])
    assert not out.exists() and not list(tmp_path.glob("out*"))


def test_import_of_neuron_records_refuses_a_neuron_index_above_2_32(tmp_path, capsys):
    src = tmp_path / "neuron.json"
    src.write_text(json.dumps({"neuron_id": {"layer_index": 0, "neuron_index": 2**40},
                               "most_positive_activation_records": [{"tokens": ["a"], "activations": [1.0]}]}))
    out = tmp_path / "out"
    run_refused(capsys, ["import", src, out, "--format", "neuron-records"], str(src), "index", "out of range",
                keep=[src])
    assert not out.exists()


@pytest.mark.parametrize("unit", [f"0:{BIG}", f"{2**70}:1", "0:" + "9" * 5000], ids=["index", "layer", "5000-digits"])
def test_show_refuses_a_unit_number_above_2_32(unit, store, capsys):
    line = run_refused(capsys, ["show", store, unit], "bad unit", "out of range", keep=[store])
    assert len(line) < 300  # a 5000-digit number is not echoed whole


# -- a damaged store -------------------------------------------------------------------------------------
def test_truncated_stats_npz_in_show_and_units(store, capsys):
    stats = store / "layer_0" / "stats.npz"
    stats.write_bytes(stats.read_bytes()[: stats.stat().st_size // 2])
    run_refused(capsys, ["show", store, "0:1"], str(store), "layer_0/stats.npz", keep=[store])
    run_refused(capsys, ["units", store], str(store), "layer_0/stats.npz", keep=[store])
    run_refused(capsys, ["units", store, "--layer", "0"], "layer_0/stats.npz", keep=[store])
    assert main(["units", str(store), "--layer", "2"]) == 0  # the undamaged layer still reads


def test_stats_npz_with_too_few_values(store, capsys):
    np.savez(store / "layer_0" / "stats.npz", max=np.ones(1), mean=np.ones(1), std=np.ones(1), min=np.ones(1),
             frequency=np.ones(1))
    run_refused(capsys, ["show", store, "0:4"], "layer_0/stats.npz", "2 units", keep=[store])
    run_refused(capsys, ["units", store], "layer_0/stats.npz", keep=[store])


def _edit_manifest(store: Path, **changes) -> None:
    path = store / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("changes, needle", [
    ({"n_windows": None}, '"n_windows" is missing'),
    ({"window": "64"}, '"window" must be a non-negative integer'),
    ({"model": "gemma-3-270m"}, '"model" must be an object'),
    ({"model": ["gemma"]}, '"model" must be an object'),
    ({"layers": [0, 2]}, '"layers" must be an object'),
    ({"layers": None}, '"layers" must be an object'),
    ({"layers": {"0": 2, "2": {"n_units": 1}}}, '"layers"."0" must be an object with "n_units"'),
    ({"layers": {"0": {"n_units": "2"}, "2": {"n_units": 1}}}, '"layers"."0" must be an object with "n_units"'),
    ({"layers": {"zero": {"n_units": 2}}}, '"layers" has the key "zero"'),
    ({"layers": {"00": {"n_units": 2}}}, '"layers" has the key "00"'),
])
@pytest.mark.parametrize("command", [["show", "0:1"], ["units"], ["export", "OUT"]])
def test_malformed_manifest_is_one_line_naming_the_file(changes, needle, command, store, tmp_path, capsys):
    _edit_manifest(store, **changes)
    out = tmp_path / "export.jsonl"
    argv = [command[0], store] + [out if a == "OUT" else a for a in command[1:]]
    run_refused(capsys, argv, str(store / "manifest.json"), needle, keep=[store])
    assert not out.exists()


def _point_slot_at(store: Path, rel: str, window: int) -> None:
    path = store / rel
    rows = np.load(path)
    rows[0, 0] = window
    np.save(path, rows)


@pytest.mark.parametrize("window", [10**6, 2**40])
def test_window_index_out_of_range(window, store, tmp_path, capsys):
    _point_slot_at(store, "layer_0/train_top_windows.npy", window)
    run_refused(capsys, ["show", store, "0:1"], str(store), "layer_0/train_top_windows.npy", f"window {window}",
                "windows.npy holds", keep=[store])
    out = tmp_path / "e.jsonl"
    run_refused(capsys, ["export", store, out], f"window {window}", keep=[store])
    assert not out.exists() and not list(tmp_path.glob(".e.jsonl*"))


def test_window_table_pointing_past_the_token_strings(store, capsys):
    strings = json.loads((store / "strings.json").read_text())
    (store / "strings.json").write_text(json.dumps(strings[:2]))
    run_refused(capsys, ["show", store, "0:1"], "strings.json", keep=[store])


def test_slot_arrays_of_the_wrong_shape(store, capsys):
    acts = np.load(store / "layer_0" / "train_top_acts.npy")
    np.save(store / "layer_0" / "train_top_acts.npy", acts[:, :1])
    run_refused(capsys, ["show", store, "0:1"], "layer_0/train_top_acts.npy", keep=[store])


# -- a malformed trace in a run file ---------------------------------------------------------------------
def _run_file(path: Path, trace: dict) -> Path:
    """A run file written by the run store: 0:1 done with a good trace, 0:4 done with ``trace``."""
    run = RunStore(path, {"explain": {"refine": True}, "lm": "scripted", "simulator": "keyword"})
    good = {"unit": "0:1", "finals": [{"explanation": "the word dog", "valid": 0.9, "test": 0.8}],
            "clusters": [{"members": ["dogs"], "representative": "dogs", "explanation": "the word dog", "valid": 0.9,
                          "history": [["the word dog", 0.9], ["dogs", 0.5]], "trajectory": [0.5, 0.9]}],
            "conditions": ["dogs"], "labels": [0], "polysemantic": {"valid": 0.9, "test": 0.8},
            "exemplars_shown": [{"window": 0, "tokens": ["a", " dog"], "activations": [0.0, 5.0]}],
            "lm_usage": {"calls": 3}}
    for unit, t in ((UnitId(0, 1), good), (UnitId(0, 4), {**good, "unit": "0:4", **trace})):
        run.put(NeuronRecord(unit, "done", None, 1, 0.9, 0.8, None, 100, 0.0, 1.5, t))
    run.close()
    return path


@pytest.mark.parametrize("trace, needle", [
    ({"clusters": 5}, '"clusters" must be a list of objects'),
    ({"clusters": [{"trajectory": 0.5}]}, '"clusters"[0]."trajectory" must be a list'),
    ({"clusters": [{"history": [["a"]]}]}, '"clusters"[0]."history"[0] must be a [text, score] pair'),
    ({"finals": [{"valid": "high"}]}, '"finals"[0]."valid" must be a number'),
    ({"finals": {"valid": 1}}, '"finals" must be a list of objects'),
    ({"labels": 3}, '"labels" must be a list'),
    ({"exemplars_shown": [{"tokens": ["a"]}]}, '"exemplars_shown"[0] needs "activations"'),
    ({"exemplars_shown": [{"tokens": ["a"], "activations": ["x"]}]}, '"exemplars_shown"[0]."activations"[0]'),
    ({"polysemantic": [0.9]}, '"polysemantic" must be an object'),
    ({"baseline_candidates": [["a", None]]}, '"baseline_candidates"[0]'),
])
def test_report_refuses_a_malformed_trace_naming_run_file_and_neuron(trace, needle, tmp_path, capsys):
    run = _run_file(tmp_path / "store.explain.sqlite", trace)
    out = tmp_path / "report.html"
    run_refused(capsys, ["report", run, "--out", out], str(run), "neuron 0:4", needle, "--neurons", keep=[run])
    assert not out.exists()
    assert main(["report", str(run), "--out", str(out), "--neurons", "0:1"]) == 0  # the good neuron still reports
    assert out.exists()


def test_report_refuses_a_trace_that_is_not_an_object(tmp_path, capsys):
    run = _run_file(tmp_path / "r.sqlite", {})
    import sqlite3

    with sqlite3.connect(run) as db:
        db.execute("UPDATE neurons SET trace = '[1, 2]' WHERE idx = 4")
    db.close()
    run_refused(capsys, ["report", run, "--out", tmp_path / "r.html"], str(run), "unit 0:4", "not a JSON object",
                keep=[run])


# -- options that must be positive -----------------------------------------------------------------------
@pytest.mark.parametrize("argv, option", [
    (["explain", "--store", "S", "--neurons", "0:1", "--concurrency", "0"], "--concurrency"),
    (["explain", "--store", "S", "--neurons", "0:1", "--concurrency", "-3"], "--concurrency"),
    (["explain", "--store", "S", "--neurons", "0:1", "--concurrency", "two"], "--concurrency"),
    (["show", "S", "0:1", "-n", "-1"], "-n"),
    (["show", "S", "0:1", "-n", "0"], "-n"),
    (["units", "S", "-n", "-5"], "-n"),
])
def test_counts_must_be_positive(argv, option, store, capsys):
    argv = [str(store) if a == "S" else a for a in argv]
    before = snapshot(store)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no usage block
    line = lines[0]
    assert f"error: argument {option}" in line and ("positive" in line or "whole number" in line), line
    assert snapshot(store) == before
    assert not list(store.parent.glob("*.sqlite"))  # explain made no run file


def test_positive_counts_still_work(store, capsys):
    assert main(["show", str(store), "0:1", "-n", "1", "--color", "never"]) == 0
    assert capsys.readouterr().out.count("\n#") == 1
    assert main(["units", str(store), "-n", "1"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 2  # describe, header, one unit per layer


# -- an empty explanation --------------------------------------------------------------------------------
@pytest.mark.parametrize("explanation", ["", "   ", "\n\t"])
def test_score_refuses_an_empty_explanation(explanation, store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    run_refused(capsys, ["score", store, "0:1", explanation, "--simulator", "keyword"], "explanation",
                "empty" if not explanation else "blank", keep=[store])
    assert not list((tmp_path / "cache").glob("**/*.sqlite")) or _cache_rows(tmp_path / "cache") == 0


def _cache_rows(cache: Path) -> int:
    import sqlite3

    total = 0
    for path in cache.glob("**/*.sqlite"):
        with sqlite3.connect(path) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                total += db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        db.close()
    return total


def test_score_of_a_real_explanation_still_works(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    assert main(["score", str(store), "0:1", "the word dog", "--simulator", "keyword", "--no-cache"]) == 0
    assert capsys.readouterr().out.startswith("unit 0:1, test: score ")


# -- the score's numeric core ----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_pearson_and_pooled_refuse_non_finite_input(bad):
    good = np.array([0.0, 1.0, 2.0, 3.0])
    broken = good.copy()
    broken[2] = bad
    for pred, true in ((broken, good), (good, broken)):
        with pytest.raises(ValueError, match="non-finite"):
            pearson(pred, true)
        with pytest.raises(ValueError, match="non-finite"):
            pooled([pred[:2], pred[2:]], [true[:2], true[2:]], ["top", "random"])
    with pytest.raises(ValueError, match="non-finite"):
        pearson([bad], [1.0])  # even where a single token would give the constant 0


def test_correlation_is_never_nan_for_huge_finite_values():
    x = np.array([1e200, -1e200, 3e200, 2e200])
    c = pearson(x, x * 0.5 + 1e199)
    assert c.r == pytest.approx(1.0) and not c.constant
    c = pooled([np.array([1e308, -1e308]), np.array([1e308])], [np.array([1e307, -1e307]), np.array([2e307])])
    assert c.r == pytest.approx(np.corrcoef([1, -1, 1], [1, -1, 2])[0, 1]) and not c.constant


def test_pooled_refuses_pairs_of_different_lengths():
    with pytest.raises(ValueError, match="exemplar 1: 3 predictions for 2 true activations"):
        pooled([np.zeros(2), np.arange(3.0)], [np.arange(2.0), np.zeros(2)])


# -- a statistic missing from stats.npz ------------------------------------------------------------------
def _drop_statistic(store: Path, name: str) -> None:
    path = store / "layer_0" / "stats.npz"
    with np.load(path) as z:
        kept = {k: z[k] for k in z.files if k != name}
    np.savez(path, **kept)


def test_stats_npz_missing_a_statistic_that_show_and_units_need(store, capsys):
    _drop_statistic(store, "frequency")
    for argv in (["show", store, "0:1"], ["units", store], ["units", store, "--layer", "0"]):
        run_refused(capsys, argv, str(store), "layer_0/stats.npz", "lacks 'frequency'", keep=[store])
    assert main(["units", str(store), "--layer", "2"]) == 0  # the undamaged layer still reads


def test_stats_npz_missing_only_what_show_does_not_use(store, capsys):
    _drop_statistic(store, "std")
    assert main(["show", str(store), "0:1", "--color", "never"]) == 0  # show prints no std
    capsys.readouterr()
    run_refused(capsys, ["units", store], "layer_0/stats.npz", "lacks 'std'", keep=[store])


# -- layers and units the model does not have: refused from its config, before anything is loaded ------------
@pytest.fixture
def nothing_loads(monkeypatch, tmp_path):
    """Loading a model, building (converting) the offline model or opening a corpus fails the test; the
    offline model is not built in this test's cache."""
    import ns_dspy.corpus
    import ns_dspy.models.subject
    from ns_dspy.models.offline import GemmaGGUF

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded or converted, or a corpus opened, before the units were checked")

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(ns_dspy.models.subject, "load_subject", forbidden)
    monkeypatch.setattr(ns_dspy.corpus, "open_corpus", forbidden)
    monkeypatch.setattr(GemmaGGUF, "build", forbidden)


@pytest.mark.parametrize("options, needle", [
    (["--layers", "999"], "layer 999 does not exist: the model has layers 0..17"),
    (["--layers", "3,18"], "layer 18 does not exist"),
    (["--neurons", "5:2048"], "unit 5:2048 does not exist: layer 5 has 2048 units (0..2047) at hookpoint mlp"),
    (["--layers", "2", "--neurons", "100,5000"], "unit 2:5000 does not exist"),
    (["--layers", "3", "--neurons", "640", "--hookpoint", "resid"], "unit 3:640 does not exist: layer 3 has 640"),
])
def test_record_checks_layers_and_units_of_the_offline_model_before_converting_it(options, needle, nothing_loads,
                                                                                    tmp_path, capsys):
    import time

    out = tmp_path / "store"
    start = time.monotonic()
    run_refused(capsys, ["record", "--out", out, *options], needle)
    assert time.monotonic() - start < 10 and not out.exists() and not list(tmp_path.glob("store*"))
    assert not (tmp_path / "empty-cache" / "models" / "gemma-3-270m").exists()  # nothing converted


@pytest.mark.parametrize("model, options, needle", [
    ("tiny_llama", ["--layers", "7"], "layer 7 does not exist: the model has layers 0..2"),
    ("tiny_llama", ["--layers", "0", "--neurons", "60-64"], "unit 0:64 does not exist: layer 0 has 64 units"),
    ("tiny_llama", ["--neurons", "2:32", "--hookpoint", "resid"], "unit 2:32 does not exist: layer 2 has 32 units"),
    ("tiny_gpt2", ["--layers", "0,2"], "layer 2 does not exist: the model has layers 0..1"),
    ("tiny_gpt2", ["--neurons", "1:128"], "unit 1:128 does not exist: layer 1 has 128 units"),
])
def test_record_checks_layers_and_units_of_a_model_folder_before_loading_it(model, options, needle, nothing_loads,
                                                                            request, tmp_path, capsys):
    folder = request.getfixturevalue(model)
    capsys.readouterr()  # building the fixture's model may print progress
    run_refused(capsys, ["record", "--model", folder, "--out", tmp_path / "s", *options], needle, keep=[folder])
    assert not (tmp_path / "s").exists()


def test_model_shapes_come_from_the_config_alone(nothing_loads, tiny_llama, tiny_gpt2, tmp_path):
    import shutil

    from ns_dspy.models.shape import ModelShape, model_shape

    assert model_shape("gemma-3-270m") == ModelShape(18, 640, 2048)  # not built: its registered config
    assert model_shape(str(tiny_llama)) == ModelShape(3, 32, 64)
    assert model_shape(str(tiny_gpt2)) == ModelShape(2, 32, 128)  # GPT-2: n_inner unset = 4 x n_embd
    built = tmp_path / "empty-cache" / "models" / "gemma-3-270m"  # once built, its own config.json is read
    built.mkdir(parents=True)
    shutil.copy(tiny_llama / "config.json", built / "config.json")
    (built / "ns_dspy_source.json").write_text("{}")
    assert model_shape("gemma-3-270m") == ModelShape(3, 32, 64)
    assert model_shape(str(tmp_path)) is None  # not a model folder: loading it says so
    assert model_shape("no-such-model") is None


# -- configuration files: every value is type-checked, also where the command line overrides it ----------
@pytest.mark.parametrize("content, option, needle", [
    ({"explain": {"candidates": "four"}}, ["--candidates", "4"], "explain.candidates must be int, got 'four'"),
    ({"explain": {"refine": "yes"}}, ["--no-refine"], "explain.refine must be bool, got 'yes'"),
    ({"explain": {"cluster": {"min_cluster_size": 2.5}}}, ["--min-cluster-size", "3"],
     "explain.cluster.min_cluster_size must be int, got 2.5"),
    ({"explain": {"min_delta": "small"}}, ["--min-delta", "0.01"], "explain.min_delta must be float"),
    ({"lm": {"temperature": "hot"}}, ["--temperature", "0.5"], "lm.temperature must be float, got 'hot'"),
])
@pytest.mark.parametrize("command", ["explain", "sweep"])
def test_config_file_values_of_the_wrong_type_are_refused_when_the_option_is_given_too(content, option, needle,
                                                                                      command, store, tmp_path,
                                                                                      capsys):
    config = tmp_path / "best.json"
    config.write_text(json.dumps(content))
    run = tmp_path / "run.sqlite"
    extra = (["--run", run, "--method", "stats"] if command == "explain"
             else ["--storage", tmp_path / "study.sqlite", "--n-trials", "1"])
    run_refused(capsys, [command, "--store", store, "--neurons", "0:1", "--config", config, *option,
                         "--simulator", "keyword", *extra], str(config), needle, keep=[store, config])
    assert not run.exists() and not (tmp_path / "study.sqlite").exists()


# -- a bad LM, temperature or missing key leaves no run file, so the corrected command runs ---------------
def test_bad_lm_settings_leave_no_run_file_and_the_corrected_command_runs(store, tmp_path, capsys, monkeypatch):
    from fake_chat import FakeChatServer
    from fault_lm import FaultyExplainer  # registers --embedder fault-words

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    run = tmp_path / "run.sqlite"
    with FakeChatServer(FaultyExplainer(rate=0.0)) as server:
        base = ["explain", "--store", store, "--neurons", "0:1", "--run", run, "--simulator", "keyword",
                "--embedder", "fault-words", "--candidates", "1", "--iterations", "1", "-q"]
        good = f"endpoint:{server.url}@fake"
        for bad, needle in ((["--lm", "endpont:" + server.url], "unknown LM spec"),
                            (["--lm", "openai:gpt-4o"], "needs an API key"),
                            (["--lm", good, "--temperature", "5"], "temperature must be in [0, 2], got 5.0"),
                            (["--lm", good, "--lm-timeout", "0"], "timeout must be a positive number")):
            run_refused(capsys, base + bad, needle, keep=[store])
            assert not run.exists()
        assert main([str(a) for a in base + ["--lm", good]]) == 0
    assert "0:1 done" in " ".join(capsys.readouterr().out.split())


def test_a_huge_neuron_range_is_refused_before_anything_is_built(capsys):
    import time

    from ns_dspy.cli import main
    from ns_dspy.errors import ConfigError
    from ns_dspy.recording.config import parse_int_set

    start = time.perf_counter()
    for text in ("0-99999999999", "0-4000000,5-4000000"):
        with pytest.raises(ConfigError):
            parse_int_set(text, "neurons")
    assert time.perf_counter() - start < 1.0  # no set of 10^11 numbers was built
    assert parse_int_set("0-99,512", "neurons") == list(range(100)) + [512]
    assert main(["record", "--out", "/nonexistent/x", "--neurons", "0-99999999999", "--layers", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "below 4294967296" in err


def test_a_simulator_that_predicts_nan_is_one_line_not_a_traceback(store, tmp_path, capsys, monkeypatch):
    """... and its broken predictions are not cached: the fixed simulator's score is computed afresh."""
    import numpy as np

    from ns_dspy.cli import main
    from ns_dspy.simulators.keyword import KeywordSimulator

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    real = KeywordSimulator.simulate

    def broken(self, explanations, exemplars):
        out = real(self, explanations, exemplars)
        out[0][0] = np.full_like(out[0][0], np.nan)
        return out

    monkeypatch.setattr(KeywordSimulator, "simulate", broken)
    assert main(["score", str(store), "0:1", "the word cat", "--simulator", "keyword"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "non-finite activation" in err
    monkeypatch.setattr(KeywordSimulator, "simulate", real)
    assert main(["score", str(store), "0:1", "the word cat", "--simulator", "keyword"]) == 0  # not replayed
    assert capsys.readouterr().out.startswith("unit 0:1, test: score ")


def test_the_simulation_cache_never_serves_a_non_finite_prediction(tmp_path):
    import sqlite3

    from ns_dspy.simulators.cache import SimulationCache

    cache = SimulationCache(tmp_path / "sim.sqlite")
    good, bad = np.arange(4, dtype=np.float32), np.array([1, np.nan, 2, 3], np.float32)
    cache.put_many({"good": good, "bad": bad, "inf": np.array([np.inf], np.float32)})
    assert len(cache) == 1 and list(cache.get_many(["good", "bad", "inf"])) == ["good"]
    with sqlite3.connect(tmp_path / "sim.sqlite") as db:  # a broken row an older version stored
        db.execute("INSERT INTO predictions VALUES (?, ?)", ("old", bad.tobytes()))
    db.close()
    assert list(cache.get_many(["good", "old"])) == ["good"]  # a miss: simulated again
    cache.close()


# -- outputs that could not be written: refused before anything is built, loaded or written -------------------
@pytest.fixture
def nothing_builds(monkeypatch):
    """Building the program (LM, simulator, embedder) fails the test."""
    import ns_dspy.api
    import ns_dspy.build

    def forbidden(*args, **kwargs):
        raise AssertionError("the program was built before the output path was checked")

    monkeypatch.setattr(ns_dspy.api, "build_program", forbidden)
    monkeypatch.setattr(ns_dspy.build, "build_program", forbidden)


@pytest.mark.parametrize("command, option, directory", [
    (["explain", "--neurons", "0:1", "--simulator", "keyword"], "--run", False),
    (["compile", "--optimizer", "bootstrap", "--neurons", "0:1,0:4,2:7", "--simulator", "keyword"], "--out", False),
    (["sweep", "--simulator", "keyword", "--n-trials", "1"], "--out", True),
])
def test_an_output_under_a_file_is_refused_before_anything_is_built(command, option, directory, store, tmp_path,
                                                                    capsys, nothing_builds):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / ("sub" if directory else "out.json")
    before = sorted(tmp_path.rglob("*"))
    run_refused(capsys, [command[0], "--store", store, *command[1:], option, out], f"cannot write {option}",
                "choose another", keep=[store, blocker])
    assert sorted(tmp_path.rglob("*")) == before  # no run file, study, store or probe left beside them


def test_a_record_output_that_cannot_be_written_or_exists_is_refused_before_loading(nothing_loads, tmp_path,
                                                                                      capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    run_refused(capsys, ["record", "--layers", "1", "--out", blocker / "store"], "cannot write --out",
                keep=[blocker])
    existing = tmp_path / "existing"
    existing.mkdir()
    run_refused(capsys, ["record", "--layers", "1", "--out", existing], "already exists", "--overwrite")


def test_check_writable_creates_nothing_and_answers_for_real(tmp_path):
    from ns_dspy.errors import ConfigError
    from ns_dspy.paths import check_writable

    nested = tmp_path / "a" / "b" / "run.sqlite"
    assert check_writable(nested, "--run") == nested
    assert list(tmp_path.iterdir()) == []  # neither the folders nor the probe
    with pytest.raises(ConfigError, match="is a directory"):
        check_writable(tmp_path, "--run")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_writable(tmp_path / "f", "--out", directory=True)
    with pytest.raises(ConfigError, match=r"cannot write --run .*f is not a directory"):
        check_writable(tmp_path / "f" / "run.sqlite", "--run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# -- devices this machine does not have, and other options checked before any work -------------------------
def test_a_gpu_this_machine_lacks_is_refused_before_the_model_is_read(tmp_path, capsys, monkeypatch):
    """Configurations check a device's name only (a CPU Ray head configures GPU workers); the machine that loads
    the model refuses a GPU it lacks in one line, before reading weights or writing the store."""
    import torch

    import ns_dspy.models.subject as subject

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.setattr(subject, "resolve_offline", lambda name: pytest.fail("the model was looked up"))
    out = tmp_path / "out"
    run_refused(capsys, ["record", "--layers", "1", "--device", "cuda:7", "--out", out], "--device cuda:7")
    assert not out.exists()


@pytest.mark.parametrize("command, needle", [
    (["record", "--layers", "1", "--device", "bogus", "--out", "OUT"], "--device 'bogus' is not a device"),
    (["explain", "--store", "S", "--neurons", "0:1", "--device", "gpu0", "--run", "OUT"], "is not a device"),
    (["score", "S", "0:1", "the word cat", "--device", "tpu"], "--device"),
    (["demo", "--units", "-1", "--out", "OUT"], "--units must be at least 1"),
    (["demo", "--iterations", "0", "--out", "OUT"], "--iterations must be at least 1"),
])
def test_bad_devices_and_demo_counts_are_refused_before_anything_loads(command, needle, store, tmp_path, capsys,
                                                                       nothing_loads, nothing_builds):
    out = tmp_path / "out"
    run_refused(capsys, [store if a == "S" else out if a == "OUT" else a for a in command], needle, keep=[store])
    assert not out.exists()


@pytest.fixture
def stats_run(store, tmp_path, capsys) -> Path:
    """A real run file of the statistical explainer (no LM) with the keyword simulator."""
    run = tmp_path / "stats.sqlite"
    assert main(["explain", "--store", str(store), "--neurons", "0:1,0:4", "--method", "stats", "--simulator",
                 "keyword", "--run", str(run), "-q"]) == 0
    capsys.readouterr()
    return run


def test_explain_refuses_a_run_file_of_another_kind_before_building(store, tmp_path, capsys, nothing_builds):
    other = tmp_path / "notes.sqlite"
    other.write_text("my notes, not a database")
    run_refused(capsys, ["explain", "--store", store, "--neurons", "0:1", "--run", other], str(other),
                "is not an ns-dspy run file", "choose another --run", keep=[store, other])


def test_reading_a_run_leaves_no_journal_files_beside_it(stats_run, tmp_path, capsys):
    def journals():
        return sorted(p.name for p in stats_run.parent.glob(stats_run.name + "-*"))

    assert journals() == []
    before = snapshot(stats_run)
    assert main(["report", str(stats_run), "--out", str(tmp_path / "report.html")]) == 0
    assert journals() == [] and snapshot(stats_run) == before
    assert main(["compare", str(stats_run), str(stats_run), "--simulator", "keyword"]) == 0
    assert journals() == [] and snapshot(stats_run) == before


def test_a_file_given_as_a_store_is_named_as_a_file(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    run_refused(capsys, ["units", afile], f"{afile} is a file, not an exemplar store", keep=[afile])


def test_score_table_count_may_be_zero_not_negative(store, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["score", str(store), "0:1", "the word cat", "--simulator", "keyword", "--table", "-3"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--table: -3 is too small: give an integer of at least 0" in lines[0], lines
    assert main(["score", str(store), "0:1", "the word cat", "--simulator", "keyword", "--table", "0"]) == 0


def test_training_data_from_a_file_that_is_no_run_names_its_option(tmp_path, capsys):
    from simulator_training.cli import main as train_main

    other = tmp_path / "notes.sqlite"
    other.write_text("not a database")
    assert train_main(["build-data", "--out", str(tmp_path / "data"), "--from-run", str(other)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "choose another --from-run" in lines[0], lines
    assert not (tmp_path / "data").exists()
