"""experiments/calibration_kinds.py and experiments/final_calibration.py on the toy store whose unit fires on ' dog'
(5) and ' cat' (3), with the keyword simulator: every variant runs the statistical explainer and leaves the
calibration settings as they were; the final-calibration rescoring refits only the maps that test reuses."""

from __future__ import annotations

import json

import pytest
from calibration_kinds import KINDS
from calibration_kinds import main as kinds_main
from final_calibration import main as final_main

from ns_dspy.scoring import HeldOut, calibration, fit_calibration, polysemantic
from ns_dspy.simulators.keyword import KeywordSimulator
from ns_dspy.types import UnitId
from tests.runs.test_runner import _store


def test_every_variant_runs_the_statistical_explainer_and_restores_the_settings(tmp_path):
    store = _store(tmp_path)
    out = tmp_path / "out"
    before = calibration.KIND, calibration.FINAL_KIND, calibration.CROSS_FIT
    argv = ["--store", str(store.path), "--out", str(out), "--neurons", "0:1", "--evaluation",
            "--simulator", "keyword"]
    assert kinds_main(argv) == 0
    assert (calibration.KIND, calibration.FINAL_KIND, calibration.CROSS_FIT) == before
    got = json.loads((out / "kinds.json").read_text())["neurons"]["0:1"]
    assert set(got) == set(KINDS)
    for kind in KINDS:
        assert got[kind]["explanations"] and -1.0 <= got[kind]["test"] <= 1.0
    # the linear variant's test score is the shipped linear path's: its choice, maps fitted linearly on valid
    sim, unit = KeywordSimulator(), UnitId(0, 1)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    texts = got["linear"]["explanations"]
    maps = fit_calibration(sim, texts, valid, kind="linear") if len(texts) > 1 else None
    assert got["linear"]["test"] == pytest.approx(polysemantic(sim, texts, test, calibration=maps).value)
    summary = (out / "summary.md").read_text()
    assert all(f"| {kind} |" in summary for kind in KINDS) and "final calibration monotone" in summary
    # resumable: a second run keeps what is done (no variant is run again)
    stamp = (out / "kinds.json").stat().st_mtime_ns
    assert kinds_main(argv) == 0
    assert (out / "kinds.json").stat().st_mtime_ns == stamp


def test_final_calibration_scores_the_same_choice_with_each_kind_of_map(tmp_path):
    store = _store(tmp_path)
    lists = ['the word "dog"', 'the word "cat"']
    run = tmp_path / "list_edits.json"
    run.write_text(json.dumps({"command": "toy", "neurons": [{"unit": "0:1", "explanations": lists}]}))
    out = tmp_path / "out"
    assert final_main(["--list-edits", str(run), "--store", str(store.path), "--out", str(out),
                       "--simulator", "keyword"]) == 0
    row = json.loads((out / "final.json").read_text())["neurons"]["0:1"]["explanations"]
    sim, unit = KeywordSimulator(), UnitId(0, 1)
    valid, test = HeldOut.from_store(store, unit, "valid"), HeldOut.from_store(store, unit, "test")
    for kind in ("linear", "monotone", "guarded"):
        maps = fit_calibration(sim, lists, valid, kind=kind)
        assert row[kind] == pytest.approx(polysemantic(sim, lists, test, calibration=maps).value)
    # the keyword simulator predicts 0 or 10: through two values a monotone map and a line agree
    assert row["monotone"] == pytest.approx(row["linear"]) and row["guarded"] == pytest.approx(row["linear"])
    assert "the edited word lists alone" in (out / "summary.md").read_text()
