"""experiments/word_classes.py on the toy store whose unit fires on ' dog' (5) and ' cat' (3): with only "dog"
listed, the class of singular nouns read exactly brings "cat" back; the reading table covers every class."""

from __future__ import annotations

import json

import pytest
from word_classes import main

from ns_dspy.agents.word_classes import WORD_CLASSES
from tests.runs.test_runner import _store


def test_a_class_read_exactly_adds_what_the_list_left_out(tmp_path):
    store = _store(tmp_path)
    depths = tmp_path / "depths.json"
    depths.write_text(json.dumps({"neurons": {"0:1": {"5": {"explanations": ['the word "dog"'], "test": 0.5}},
                                              "0:2": {"4": {}}}}))
    out = tmp_path / "out"
    assert main(["ceiling", "--store", str(store.path), "--depths", str(depths), "--out", str(out)]) == 0
    got = json.loads((out / "word_classes.json").read_text())["neurons"]
    assert list(got) == ["0:1"]  # a neuron without variant 5 is skipped
    row = got["0:1"]
    assert row["classes"][0] == "nouns" and row["lists + classes"] > row["lists"] + 0.02
    assert row["lists + first class"] == pytest.approx(row["lists + classes"]) or len(row["classes"]) > 1
    assert "| lists + classes |" in (out / "summary.md").read_text()


def test_the_reading_table_has_every_class(tmp_path):
    store = _store(tmp_path)
    out = tmp_path / "out"
    assert main(["reading", "--store", str(store.path), "--neurons", "0:1", "--simulators", "keyword",
                 "--out", str(out)]) == 0
    got = json.loads((out / "word_classes.json").read_text())["simulators"]["keyword"]
    assert set(got) == set(WORD_CLASSES)
    assert got["nouns"]["tokens"] > 0 and got["nouns"]["trained"] is True
    assert got["adjectives"]["trained"] is False  # held out as a syntax validation unit
