"""experiments/valid_size.py on the toy store whose unit 0:1 fires on ' dog' (5) and ' cat' (3), with the keyword
simulator: the two arms read the same train and test windows and differ only in the valid windows they choose on."""

from __future__ import annotations

import json

import pytest
from valid_size import main, subset

from ns_dspy.types import UnitId
from tests.runs.test_runner import _store


def test_the_small_arm_keeps_the_windows_a_smaller_recording_keeps(tmp_path):
    store = _store(tmp_path)
    unit = UnitId(0, 1)
    tops = store.exemplars(unit, "valid", "top")
    small = subset(store, unit, "valid", 3, 2)
    assert [ex.window for ex in small[:3]] == [ex.window for ex in tops[:3]]
    assert [ex.kind for ex in small] == ["top"] * 3 + ["random"] * 2
    randoms = store.exemplars(unit, "valid", "random")
    assert [ex.window for ex in small[3:]] == [ex.window for ex in randoms[:2]]  # the smallest hash keys
    assert len(subset(store, unit, "valid", None, None)) == 10
    with pytest.raises(SystemExit, match="fewer than 7,2"):
        subset(store, unit, "valid", 7, 2)


def test_both_arms_are_scored_on_the_same_test_windows(tmp_path, capsys):
    store = _store(tmp_path)
    out = tmp_path / "out"
    assert main(["--store", str(store.path), "--neurons", "0:1", "--out", str(out), "--train", "6,4",
                 "--small", "3,2", "--test-small", "3,2", "--simulator", "keyword"]) == 0
    data = json.loads((out / "valid_size.json").read_text())
    row = data["neurons"][0]
    assert row["windows"] == {"train": 10, "valid_small": 5, "valid_large": 10, "test": 10, "test_small": 5}
    for arm in ("small", "large"):
        words = {w for text in row[arm]["before"] for w in text.split('"')[1::2]}
        assert {"dog", "cat"} <= words, row[arm]["before"]  # the train statistics name the unit's two words
        assert row[arm]["test_before"] > 0.5 and row[arm]["test_small_before"] > 0.5
    s = data["summary"]
    assert s["neurons"] == 1
    d = s["large_minus_small"]["test_after"]["mean"]
    assert d == pytest.approx(row["large"]["test_after"] - row["small"]["test_after"])
    md = (out / "summary.md").read_text()
    assert "python experiments/valid_size.py --store" in md and "| small |" in md and "| large |" in md


@pytest.mark.parametrize("flag,value", [("--small", "30"), ("--train", "a,b"), ("--test-small", "0,5")])
def test_a_bad_window_count_is_one_line_before_anything_is_read(flag, value, tmp_path):
    with pytest.raises(SystemExit, match=flag):
        main(["--store", str(tmp_path / "nowhere"), "--neurons", "0:1", "--out", str(tmp_path / "out"), flag, value])
    assert not (tmp_path / "out").exists()
