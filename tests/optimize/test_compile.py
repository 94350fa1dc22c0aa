"""Compiling NeuronScope with DSPy optimizers on the toy world of ``toy_neurons``: seven units with known
trigger words, a scripted LM that explains better when shown demos or told to, the transparent keyword
simulator and an exact word embedder (the approach of tests/runs/test_runner.py)."""

from __future__ import annotations

import json
import os

import dspy
import pytest
from toy_neurons import toy_lm, toy_program

from ns_dspy.errors import ConfigError
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.optimize import (compile_neurons, compile_program, evaluate_program, fingerprint, load_compiled,
                              manifest_path, neuron_sets, parse_options, read_manifest, save_compiled, split_sizes)
from ns_dspy.program import ExplainConfig
from ns_dspy.scoring import SimulatorMetric
from ns_dspy.types import UnitId


# --- data -----------------------------------------------------------------------------------------------------
def test_neuron_sets_are_disjoint_seeded_and_skip_silent_units(store, caplog):
    caplog.set_level("INFO")
    sets = neuron_sets(store, [UnitId(0, i) for i in range(7)], seed=3)
    ids = sets.ids()
    assert ids["skipped"] == ["0:6"] and "skipping unit 0:6: no activation" in caplog.text
    assert (len(ids["train"]), len(ids["val"]), len(ids["test"])) == (2, 2, 2)
    assert not set(ids["test"]) & set(ids["train"] + ids["val"]) and not set(ids["train"]) & set(ids["val"])
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == [f"0:{i}" for i in range(6)]
    assert neuron_sets(store, [UnitId(0, i) for i in range(7)], seed=3).ids() == ids  # deterministic
    assert neuron_sets(store, [UnitId(0, i) for i in range(7)], seed=4).ids() != ids
    ex = sets.train[0]
    assert set(ex.inputs().keys()) == {"train", "valid"} and ex.valid.split == "valid"
    assert all(e.split == "train" for e in ex.train) and "test" not in ex  # no test data for the optimizer
    assert all(e.test.split == "test" and "test" not in e.inputs() for e in sets.test)
    drawn = neuron_sets(store, n_neurons=4, seed=1)
    assert sum(len(s) for s in (drawn.train, drawn.val, drawn.test)) == 4 and "0:6" not in drawn.ids()["test"]
    assert "only" not in caplog.text
    everything = neuron_sets(store, n_neurons=99, seed=1)  # more than the store has: all 6 usable, said aloud
    assert sum(len(s) for s in (everything.train, everything.val, everything.test)) == 6
    assert "--n-neurons 99: the store has only 6 usable units" in caplog.text


def test_split_sizes_and_option_parsing():
    assert split_sizes(12) == (6, 3, 3) and split_sizes(3) == (1, 1, 1) and split_sizes(4) == (2, 1, 1)
    with pytest.raises(ConfigError, match="at least 3"):
        split_sizes(2)
    assert parse_options(["num_trials=3", "auto=none", "minibatch=false", "init_temperature=0.5", "x=light"]) == {
        "num_trials": 3, "auto": None, "minibatch": False, "init_temperature": 0.5, "x": "light"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["num_trials"])


# --- compile ----------------------------------------------------------------------------------------------------
def test_bootstrap_compiles_differs_saves_and_reloads_identically(store, tmp_path):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(7)], seed=0)
    program = toy_program()
    before_state = program.dump_state()
    lm, engine = toy_lm()
    out = tmp_path / "compiled.json"
    compiled, report = compile_neurons(program, sets, lm, optimizer="bootstrap", out=out, num_threads=2,
                                       options={"max_bootstrapped_demos": 2},
                                       provenance={"lm": "toy", "simulator": "keyword", "store": str(store.path)})
    assert program.dump_state() == before_state  # the input program is untouched
    state = compiled.dump_state()
    assert state != before_state
    assert len(state["hypothesis.hypothesize"]["demos"]) == 2 and len(state["refinement.refine"]["demos"]) == 2
    assert state["decomposition.decompose"] == before_state["decomposition.decompose"]  # frozen
    assert report.after.mean > report.before.mean and report.after.test_mean > report.before.test_mean
    calls = report.usage["compile_lm"]["calls"]
    assert report.tokens == 10 * calls > 0 and len(engine.prompts) > calls  # the test evaluations are not counted

    reloaded = load_compiled(out, toy_program())
    assert reloaded.dump_state() == state
    with dspy.context(lm=lm):
        assert evaluate_program(reloaded, sets.test, SimulatorMetric(reloaded.simulator)).scores == report.after.scores
    saved = json.loads(out.read_text())
    assert "metadata" in saved and set(saved) - {"metadata"} == set(state)  # DSPy's own JSON state format

    m = read_manifest(out)
    assert manifest_path(out) == tmp_path / "compiled.manifest.json" == report.manifest_path
    assert m["optimizer"] == "bootstrap" and m["options"] == {"max_bootstrapped_demos": 2}
    assert m["optimized"] == ["hypothesis", "refinement"] and m["seed"] == 0
    assert m["units"] == sets.ids() and not set(m["units"]["test"]) & set(m["units"]["train"] + m["units"]["val"])
    assert m["lm"] == "toy" and m["simulator"] == {"spec": "keyword", "cache_key": "keyword-1"}
    assert m["embedder"] == "toy-words" and m["store"] == str(store.path) and m["ns_dspy_version"]
    assert m["explain_config"]["iterations"] == 1 and m["fingerprint"] == fingerprint(program)
    assert m["scores"]["uncompiled"]["mean"] == pytest.approx(report.before.mean)
    assert m["scores"]["compiled"]["scores"] == report.after.scores
    assert m["lm_usage"]["tokens"] == report.tokens and m["lm_usage"]["compile_lm"]["calls"] > 0
    table = report.table()
    assert "uncompiled" in table and f"{report.after.mean:.3f}" in table and "LM tokens spent compiling" in table


def test_rerun_is_answered_from_the_cache(store, tmp_path):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(6)], seed=0)
    lm, engine = toy_lm(cache=True)
    first = compile_neurons(toy_program(), sets, lm, optimizer="bootstrap", out=tmp_path / "a.json")[1]
    calls = len(engine.prompts)
    second = compile_neurons(toy_program(), sets, lm, optimizer="bootstrap", out=tmp_path / "b.json")[1]
    assert len(engine.prompts) == calls and second.tokens == 0  # nothing asked of the LM again
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert second.after.scores == first.after.scores


def test_decomposition_is_optimised_only_on_request(store):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(6)], seed=0)
    program = toy_program()
    lm, _ = toy_lm()
    with dspy.context(lm=lm):
        compiled = compile_program(program, optimizer="bootstrap", trainset=sets.train, valset=sets.val,
                                   metric=SimulatorMetric(program.simulator), optimize_decomposition=True)
    assert compiled.decomposition.decompose.demos and compiled.hypothesis.hypothesize.demos
    assert compiled.simulator is program.simulator and not getattr(compiled.decomposition, "_compiled", False)


@pytest.mark.parametrize("optimizer, options", [
    ("bootstrap-rs", {"num_candidate_programs": 1, "max_bootstrapped_demos": 1}),
    ("mipro", {"num_candidates": 2, "num_trials": 3, "max_bootstrapped_demos": 1}),
    ("gepa", {"max_metric_calls": 12, "reflection_minibatch_size": 1}),
])
def test_every_optimizer_improves_the_program_and_round_trips(store, tmp_path, optimizer, options):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(6)], seed=0)
    program = toy_program()
    lm, _ = toy_lm()
    reflection = toy_lm()[0] if optimizer == "gepa" else None
    with dspy.context(lm=lm):
        compiled = compile_program(program, optimizer=optimizer, trainset=sets.train, valset=sets.val,
                                   metric=SimulatorMetric(program.simulator), options=options,
                                   reflection_lm=reflection, num_threads=2)
        before, after = (evaluate_program(p, sets.test, SimulatorMetric(p.simulator)) for p in (program, compiled))
    state, initial = compiled.dump_state(), program.dump_state()
    assert state["hypothesis.hypothesize"] != initial["hypothesis.hypothesize"]  # demos or a new instruction
    assert state["decomposition.decompose"] == initial["decomposition.decompose"]  # frozen
    assert after.mean > before.mean
    save_compiled(compiled, tmp_path / "c.json", {"optimizer": optimizer})
    assert load_compiled(tmp_path / "c.json", toy_program()).dump_state() == state


@pytest.mark.parametrize("optimizer, options, reflection, message", [
    ("simba", {}, None, "unknown optimizer 'simba': use one of best-steps, bootstrap, bootstrap-rs, gepa, mipro"),
    ("gepa", {}, None, "gepa needs a reflection LM: pass --reflection-lm"),
    ("bootstrap", {"max_labeled_demos": 4}, None, "max_labeled_demos is fixed at 0"),
    ("bootstrap", {"num_trials": 4}, None, "bootstrap has no option 'num_trials': use one of"),
    ("mipro", {"auto": None}, None, "mipro without auto needs both"),
    ("mipro", {"auto": "huge"}, None, "mipro refused its options: Invalid value for auto"),
])
def test_optimizer_mistakes_are_one_line(store, optimizer, options, reflection, message):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(6)], seed=0)
    program = toy_program()
    lm, engine = toy_lm()
    with dspy.context(lm=lm), pytest.raises(ConfigError) as err:
        compile_program(program, optimizer=optimizer, trainset=sets.train, valset=sets.val,
                        metric=SimulatorMetric(program.simulator), options=options, reflection_lm=reflection)
    assert message in str(err.value) and "\n" not in str(err.value) and not engine.prompts


# --- load -------------------------------------------------------------------------------------------------------
@pytest.fixture
def compiled_path(store, tmp_path):
    sets = neuron_sets(store, [UnitId(0, i) for i in range(6)], seed=0)
    lm, _ = toy_lm()
    compile_neurons(toy_program(), sets, lm, optimizer="bootstrap", out=tmp_path / "c.json")
    return tmp_path / "c.json"


def test_loading_into_another_configuration_is_refused(compiled_path):
    with pytest.raises(ConfigError, match=r"^compiled for another configuration: refine=True there, refine=False "
                                          r"here - build the program as recorded in c.manifest.json") as err:
        load_compiled(compiled_path, toy_program(refine=False))
    assert "\n" not in str(err.value)
    other = toy_program()
    other.hypothesis.hypothesize = dspy.ChainOfThought(other.hypothesis.hypothesize.signature)
    with pytest.raises(ConfigError, match="compiled for another configuration: predictors hypothesis.hypothesize "
                                          "only there, hypothesis.hypothesize.predict only here"):
        load_compiled(compiled_path, other)
    load_compiled(compiled_path, toy_program(iterations=3))  # not structural: loads


def test_other_settings_are_news_for_a_users_program_not_for_a_shipped_one(compiled_path, tmp_path, caplog,
                                                                           monkeypatch):
    import logging
    import shutil

    import ns_dspy.optimize.packaged as packaged

    caplog.set_level(logging.DEBUG, logger="ns_dspy")
    load_compiled(compiled_path, toy_program(iterations=3))
    said = [r for r in caplog.records if "compiled with other settings (iterations=" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.INFO]
    shipped = tmp_path / "programs"
    shipped.mkdir()
    for f in (compiled_path, compiled_path.with_name("c.manifest.json")):
        shutil.copy(f, shipped / f.name)
    monkeypatch.setattr(packaged, "PROGRAMS_DIR", shipped.resolve())
    caplog.clear()
    load_compiled(shipped / "c.json", toy_program(iterations=3))
    said = [r for r in caplog.records if "compiled with other settings (iterations=" in r.getMessage()]
    assert [r.levelno for r in said] == [logging.DEBUG]


def test_loading_refuses_a_missing_or_foreign_file(compiled_path, tmp_path):
    with pytest.raises(ConfigError, match="no compiled program at"):
        load_compiled(tmp_path / "missing.json", toy_program())
    manifest_path(compiled_path).rename(tmp_path / "elsewhere.json")
    with pytest.raises(ConfigError, match="has no manifest c.manifest.json beside it"):
        load_compiled(compiled_path, toy_program())
    (tmp_path / "elsewhere.json").rename(manifest_path(compiled_path))
    compiled_path.write_text(compiled_path.read_text().replace('"demos"', '"demos" ', 1))
    with pytest.raises(ConfigError, match="is not the state its manifest c.manifest.json describes"):
        load_compiled(compiled_path, toy_program())


# --- the offline stack (opt-in: minutes) --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("NS_DSPY_SLOW_COMPILE") != "1", reason="set NS_DSPY_SLOW_COMPILE=1 (minutes)")
def test_compile_on_the_offline_stack(tmp_path):
    from ns_dspy.demo import peaked_units
    from ns_dspy.lms import make_lm
    from ns_dspy.recording import RecordConfig, record
    from ns_dspy.build import build_program
    from ns_dspy.config import RunConfig, SimulatorConfig

    store = ExemplarStore.open(record(RecordConfig(layers="6", tokens=4096), tmp_path / "store", progress=False))
    config = ExplainConfig(iterations=1, candidates=1, max_exemplars=8)
    run_config = RunConfig(explain=config, simulator=SimulatorConfig("prompted:gemma-3-270m"))
    program = build_program(run_config, with_lm=False).program
    sets = neuron_sets(store, peaked_units(store, 4), seed=0, max_exemplars=8)
    assert (len(sets.train), len(sets.val), len(sets.test)) == (2, 1, 1)
    compiled, report = compile_neurons(program, sets, make_lm("local:qwen2.5-coder-1.5b-instruct"),
                                       optimizer="bootstrap", out=tmp_path / "c.json",
                                       options={"max_bootstrapped_demos": 1})
    fresh = build_program(run_config, with_lm=False).program
    assert load_compiled(tmp_path / "c.json", fresh).dump_state() == compiled.dump_state()
    assert report.manifest_path.exists() and report.usage["compile_lm"]["calls"] > 0
