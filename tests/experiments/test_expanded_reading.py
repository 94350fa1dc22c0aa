"""experiments/expanded_reading.py: explanations expanded into member words by an LM, read by a simulator."""

from __future__ import annotations

import json

import pytest

from expanded_reading import PROMPTS, expanded, is_word_list, main, parse_words, run, summary
from ns_dspy.simulators.base import build_simulator
from simulator_training.data import write_units


def _unit(name: str, members: list[str], explanations: list[str]) -> dict:
    texts = [[" the", " rock", " sat", " by", " a", " stone", " wall"],
             [" a", " big", " stone", " fell", " on", " the", " rock"],
             [" no", " match", " here", " at", " all", " in", " it"],
             [" the", " wall", " by", " the", " road", " was", " old"]]
    exemplars = [{"tokens": t, "token_ids": list(range(len(t))), "kind": "top" if k < 2 else "random",
                  "targets": [10.0 if tok.strip() in members else 0.0 for tok in t]} for k, t in enumerate(texts)]
    return {"unit": name, "family": "wordnet", "explanations": explanations, "exemplars": exemplars}


UNITS = [_unit("wordnet:natural_object", ["rock", "stone"], ["words for kinds of natural object"]),
         _unit("wordnet:structure", ["wall", "road"], ["words for kinds of structure"])]


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


def test_main_refuses_bad_data_before_writing(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no valid.jsonl"):
        main(["--data", str(tmp_path / "none"), "--out", str(tmp_path / "o.json")])
    write_units(tmp_path / "d", {"train": UNITS[:1], "valid": UNITS}, {"source": "test"}, overwrite=False)
    with pytest.raises(SystemExit, match="no unit of the families code"):
        main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o.json"), "--families", "code"])
    with pytest.raises(SystemExit, match="must end in .json"):
        main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.json").exists()
    (tmp_path / "o.json").write_text(json.dumps({"settings": {"data": "elsewhere"}, "expansions": {}, "rows": []}))
    with pytest.raises(SystemExit, match="was made with other settings"):
        main(["--data", str(tmp_path / "d"), "--out", str(tmp_path / "o.json")])
