"""experiments/whitespace.py on a toy store: one unit fires on line breaks, one on runs of spaces, one on a word.
The shares of activation on whitespace are counted on train, the exact readings of each class on valid, an
excluded unit is never drawn, and the simulator's readings are reported beside them."""

from __future__ import annotations

import json

import pytest
from whitespace import main, shares

from ns_dspy.types import UnitId
from tests.trigger_words import trigger_store

WORDS = ["\n", "    ", " dog", " cat", " sky", " sea", " red", " big", " old", "\n\n"]


def test_shares_exact_readings_and_exclusions(tmp_path):
    store = trigger_store(tmp_path / "store", WORDS, [{"\n": 5.0, "\n\n": 3.0}, {"    ": 4.0}, {" dog": 5.0}, {}])
    first, second = shares(store, UnitId(0, 0)), shares(store, UnitId(0, 1))
    assert first["any whitespace"] == first["line break"] == 1.0 and first["indentation"] == 0.0
    assert 0 < first["blank line"] < 1 and first["single line break"] + first["blank line"] == pytest.approx(1.0)
    assert second["any whitespace"] == second["indentation"] == 1.0 and second["line break"] == 0.0
    assert shares(store, UnitId(0, 2))["any whitespace"] == 0.0
    excluded = tmp_path / "excluded.json"
    excluded.write_text(json.dumps({"evaluated": ["0:2"]}))
    out = tmp_path / "out"
    assert main(["--store", str(store.path), "--out", str(out), "--units", "2", "--simulator", "keyword",
                 "--exclude", str(excluded)]) == 0
    got = json.loads((out / "whitespace.json").read_text())
    assert "0:2" not in got["sample"] and set(got["units"]) == {"0:0", "0:1"}
    assert got["units"]["0:0"]["exact"]["line break"] > 0.9 > got["units"]["0:0"]["exact"]["indentation"]
    assert got["units"]["0:1"]["exact"]["indentation"] > 0.9
    assert set(got["units"]["0:0"]["simulator"]) >= {"line breaks", 'the words "the", "of" and "and"'}
    table = (out / "summary.md").read_text()
    assert "| exact: line break |" in table and "| any whitespace |" in table


def test_a_missing_exclusion_file_is_one_usage_error(tmp_path):
    store = trigger_store(tmp_path / "store", WORDS, [{"\n": 5.0}, {}])
    with pytest.raises(SystemExit) as err:
        main(["--store", str(store.path), "--out", str(tmp_path / "o"), "--exclude", str(tmp_path / "none.json")])
    assert err.value.code == 2 and not (tmp_path / "o").exists()
