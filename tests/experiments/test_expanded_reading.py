"""experiments/expanded_reading.py: explanations expanded into member words by an LM, read by a simulator."""

from __future__ import annotations

import json

import pytest

from expanded_reading import PROMPTS, expanded, is_word_list, main, parse_words, run, summary
from experiment_world import CATEGORY_UNITS, check_unit_cli_refusals
from ns_dspy.simulators.base import build_simulator


UNITS = CATEGORY_UNITS


def test_parse_words_and_expanded():
    assert parse_words('Rock, "stone".\n earth, a very long phrase here, stone, *sand*') == [
        "Rock", "stone", "earth", "sand"]
    assert parse_words(",".join(f"w{i}" for i in range(20))) == [f"w{i}" for i in range(12)]
    assert expanded("Natural objects.", ["rock", "stone", "sand"]) == \
        'Natural objects, for example "rock", "stone" or "sand".'
    assert expanded("Natural objects", ["rock"]) == 'Natural objects, for example "rock".'
    assert expanded("Natural objects", []) == "Natural objects"


def test_run_expands_descriptions_not_word_lists_and_resumes(tmp_path):
    asked = []

    def ask(prompt):
        asked.append(prompt)
        return "rock, stone" if "natural object" in prompt else "wall, road"

    simulator = build_simulator("keyword")
    out = tmp_path / "out.json"
    state = run(UNITS, simulator, ask, out, families={"wordnet"}, progress=False)
    rows = {r["unit"]: r for r in state["rows"]}
    row = rows["wordnet:natural_object"]
    assert set(row["readings"]) == {"plain", *PROMPTS}
    # the keyword simulator finds no quoted word in the plain description; the expansion names the members
    assert row["readings"]["plain"]["r"] <= 0.0
    assert row["readings"]["words"]["r"] == pytest.approx(1.0)
    assert row["readings"]["words"]["texts"][0] == \
        'words for kinds of natural object, for example "rock" or "stone".'
    # word-list decoys are read as written in every reading; the sibling description is expanded
    plain, words = row["readings"]["plain"]["texts"], row["readings"]["words"]["texts"]
    assert "sibling" in row["decoys"] and any(is_word_list(t) for t in plain[1:])
    for text, reading in zip(plain[1:], words[1:]):
        assert (reading == text) == is_word_list(text)
    assert state["expansions"]["words"]["words for kinds of structure"] == ["wall", "road"]
    # each description asked once per prompt (truth, sibling and over-broad texts of both units)
    assert len(asked) == sum(len(state["expansions"][p]) for p in PROMPTS)
    saved = json.loads(out.read_text())
    assert saved["rows"] == state["rows"]

    def refuse(prompt):
        raise AssertionError("a finished run asked the LM again")

    assert run(UNITS, simulator, refuse, out, families={"wordnet"}, progress=False)["rows"] == state["rows"]
    text = summary(state, "t")
    assert "| plain | 2 |" in text and "| words | 2 |" in text
    assert "| family |" not in text  # one family: no table per family
    state["rows"][1]["family"] = "syntax"
    text = summary(state, "t")
    assert "| syntax | 1 | " in text and "| wordnet | 1 | " in text


def test_main_refuses_bad_data_before_writing(tmp_path):
    check_unit_cli_refusals(main, tmp_path)
