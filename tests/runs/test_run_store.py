import sqlite3

import numpy as np
import pytest

from ns_dspy.errors import StoreError
from ns_dspy.runs import NeuronRecord, RunStore
from ns_dspy.types import UnitId


def _rec(unit, status="done", **kw):
    base = dict(error=None, number=2, score_valid=0.5, score_test=0.4, baseline_test=None, lm_tokens=100,
                lm_cost=0.0, seconds=1.5, trace={"clusters": [{"explanation": "x", "valid": np.float32(0.5)}]})
    base.update(kw)
    return NeuronRecord(unit, status, **base)


def test_round_trip_resume_and_replacing_failures(tmp_path):
    run = RunStore(tmp_path / "r.sqlite", {"a": 1})
    run.put(_rec(UnitId(1, 2)))
    run.put(_rec(UnitId(1, 3), "failed", error="LM endpoint down", number=None, score_valid=None, score_test=None))
    run.close()
    again = RunStore(tmp_path / "r.sqlite", {"a": 1})
    assert again.done() == {UnitId(1, 2)}
    records = again.records()
    assert [r.status for r in records] == ["done", "failed"] and records[1].error == "LM endpoint down"
    assert records[0].trace["clusters"][0]["valid"] == pytest.approx(0.5)
    again.put(_rec(UnitId(1, 3)))  # the retry replaces the failure
    assert again.done() == {UnitId(1, 2), UnitId(1, 3)} and len(again.records()) == 2


def test_other_settings_and_foreign_files_are_refused(tmp_path):
    RunStore(tmp_path / "r.sqlite", {"a": 1, "b": 2}).close()
    with pytest.raises(StoreError, match=r"other settings \(b\)"):
        RunStore(tmp_path / "r.sqlite", {"a": 1, "b": 3})
    foreign = tmp_path / "f.sqlite"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE x (y)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an ns-dspy run file"):
        RunStore(foreign, {"a": 1})
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not an ns-dspy run file"):
        RunStore(tmp_path / "junk.sqlite", {"a": 1})
    with pytest.raises(StoreError, match="is a directory"):
        RunStore(tmp_path, {"a": 1})
