"""experiments/simulator_real.py on the toy store whose unit fires on ' dog' (5) and ' cat' (3): each simulator runs
the statistical explainer as shipped, the test figure is its choice scored with its own valid calibration, and a
rerun keeps finished pairs."""

from __future__ import annotations

import json

import pytest
from simulator_real import main

from ns_dspy.config import ExplainConfig
from ns_dspy.exemplars import ExemplarStore
from ns_dspy.program import NeuronScope
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import UnitId
from tests.runs.test_runner import _store


def _argv(tmp_path, specs: str) -> list[str]:
    return ["--store", str(_store(tmp_path).path), "--out", str(tmp_path / "out"), "--neurons", "0:1",
            "--evaluation", "--simulators", specs]


def test_each_simulator_runs_the_shipped_explainer_and_reruns_keep_what_is_done(tmp_path):
    argv = _argv(tmp_path, "keyword")
    store, out = ExemplarStore.open(argv[1]), tmp_path / "out"
    assert main(argv) == 0
    got = json.loads((out / "simulators.json").read_text())["neurons"]["0:1"]["keyword"]
    sim, unit = KeywordSimulator(), UnitId(0, 1)
    train = store.train_exemplars(unit)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    shipped = NeuronScope(sim, None, ExplainConfig(method="stats"))(train=train, valid=valid)
    assert got["explanations"] == list(shipped.explanations)
    assert got["valid"] == pytest.approx(shipped.polysemantic)
    assert got["test"] == pytest.approx(polysemantic(sim, shipped.explanations, test,
                                                     calibration=shipped.calibration).value)
    assert got["test"] > 0.5  # the unit's own words
    assert "| `keyword` |" in (out / "summary.md").read_text()
    stamp = (out / "simulators.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "simulators.json").stat().st_mtime_ns == stamp


def test_a_spec_with_options_runs_the_explainer_with_them_and_other_options_are_refused(tmp_path):
    argv = _argv(tmp_path, "keyword,keyword+whitespace,keyword+whitespace+classes")
    out = tmp_path / "out"
    assert main(argv) == 0
    got = json.loads((out / "simulators.json").read_text())["neurons"]["0:1"]
    assert set(got) == {"keyword", "keyword+whitespace", "keyword+whitespace+classes"}
    # the toy text has no whitespace, and the keyword simulator reads no word class: the same choice
    assert got["keyword+whitespace"]["explanations"] == got["keyword"]["explanations"]
    assert got["keyword+whitespace+classes"]["explanations"] == got["keyword"]["explanations"]
    with pytest.raises(SystemExit):
        main([*argv[:-1], "keyword+tiers"])
