"""ns-dspy compare: two run files of the same neurons, paired on the same test windows."""

from __future__ import annotations

import pytest
from test_runner import _program, _store, responder

from ns_dspy.cli import main
from ns_dspy.errors import ConfigError
from ns_dspy.lms.scripted import scripted_lm
from ns_dspy.runs import RunStore
from ns_dspy.runs.compare import compare_runs, compare_table
from ns_dspy.runs.read import read_run
from ns_dspy.runs.runner import explain_units
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store and three run files of it: NeuronScope, the statistical method, and NeuronScope on unit 0:2 only."""
    base = tmp_path_factory.mktemp("compare")
    store = _store(base)
    lm, _ = scripted_lm([responder] * 200)
    paths = {}
    for name, program, units in (("refine", _program(), [UnitId(0, 1), UnitId(0, 2)]),
                                  ("stats", _program(method="stats"), [UnitId(0, 1)]),
                                  ("other", _program(method="stats"), [UnitId(0, 2)])):
        paths[name] = base / f"{name}.sqlite"
        explain_units(program, store, units, RunStore(paths[name], {}), lm, progress=False)
    return store, paths


def test_each_neuron_is_scored_as_its_run_reports_it_with_the_interval_of_the_difference(world):
    store, paths = world
    a, b = read_run(paths["refine"]), read_run(paths["stats"])
    pairs, skipped = compare_runs(a, b, store, KeywordSimulator())
    assert [p.unit for p in pairs] == [UnitId(0, 1)] and skipped == []  # 0:2 failed in the first run
    (pair,) = pairs
    assert pair.a == pytest.approx(a.by_unit()[UnitId(0, 1)].score_test, abs=1e-9)
    assert pair.b == pytest.approx(b.by_unit()[UnitId(0, 1)].score_test, abs=1e-9)
    assert pair.a - pair.b in pair.interval
    itself, _ = compare_runs(a, a, store, KeywordSimulator())
    assert itself[0].interval.low == itself[0].interval.high == 0.0 and itself[0].verdict == "undecided"
    table = compare_table(pairs, "A.sqlite", "B.sqlite")
    assert f"{pair.a - pair.b:+.3f}" in table and "of 1 neurons" in table


def test_runs_of_other_neurons_are_refused_and_neurons_of_one_run_are_named(world):
    store, paths = world
    with pytest.raises(ConfigError, match="no neuron done in both"):
        compare_runs(read_run(paths["stats"]), read_run(paths["other"]), store, KeywordSimulator())
    pairs, skipped = compare_runs(read_run(paths["stats"]), read_run(paths["stats"]), store, KeywordSimulator())
    assert skipped == [] and "not compared" not in compare_table(pairs, "A", "B", skipped)
    assert "not compared (2, done in one run only): 0:2, 3:4" in compare_table(pairs, "A", "B",
                                                                               [UnitId(0, 2), UnitId(3, 4)])


def test_the_command_prints_the_table_and_refuses_mistakes_in_one_line(world, capsys, tmp_path):
    store, paths = world
    argv = ["compare", str(paths["refine"]), str(paths["stats"]), "--store", str(store.path), "--simulator", "keyword"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "A - B" in out and "0:1" in out and "simulator keyword" in out
    # these run files do not record their store or simulator: the user is told which option to give
    assert main(argv[:3]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give --store" in err[0]
    assert main(["compare", str(tmp_path / "nope.sqlite"), str(paths["stats"])]) == 2
    assert not (tmp_path / "nope.sqlite").exists()
    assert main(argv[:3] + ["--store", str(tmp_path), "--simulator", "keyword"]) == 2
    assert "store" in capsys.readouterr().err

