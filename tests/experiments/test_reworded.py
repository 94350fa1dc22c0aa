"""experiments/reworded.py: the same explanations read in template wording and reworded, paired unit by unit
over the units whose evaluated explanation was reworded."""

from __future__ import annotations

import json

import pytest

from reworded import compare, main
from simulator_training.cli import main as simtrain
from simulator_training.data import write_units


def _unit(name: str, family: str, word: str, explanations: list[str], paraphrases=None) -> dict:
    texts = [[" the", f" {word}", " sat", " on", " a", " mat", " today"],
             [" a", " big", f" {word}", " ran", " off", " now", " fast"],
             [" no", " match", " here", " at", " all", " in", " it"]]
    exemplars = [{"tokens": t, "token_ids": list(range(len(t))), "kind": "top" if k < 2 else "random",
                  "targets": [10.0 if tok.strip() == word else 0.0 for tok in t]} for k, t in enumerate(texts)]
    unit = {"unit": name, "family": family, "explanations": explanations, "exemplars": exemplars}
    if paraphrases is not None:
        unit["paraphrases"] = paraphrases
    return unit


@pytest.fixture
def data(tmp_path):
    valid = [
        # reworded with the word kept: the keyword simulator reads it as well
        _unit("word:cat", "word", "cat", ['the word "cat"'], ['the "cat" token']),
        # reworded without the word: its score falls to nothing
        _unit("word:dog", "word", "dog", ['the word "dog"'], ["fires on a pet's name"]),
        # no rewording kept: read in template wording in both runs, left out of the pairing
        _unit("word:owl", "word", "owl", ['the word "owl"'], [None]),
    ]
    write_units(tmp_path / "d", {"train": valid[:1], "valid": valid}, {"source": "test"}, overwrite=False)
    return tmp_path / "d"


def test_pairs_the_reworded_units_only(data, tmp_path, capsys):
    for style in ("short", "paraphrase"):
        assert simtrain(["-q", "eval", "--simulator", "keyword", "--data", str(data), "--style", style,
                         "--out", str(tmp_path / style)]) == 0
    text = compare(data, tmp_path / "paraphrase.json", tmp_path / "short.json")
    assert "2 of 3 evaluated units read a rewording" in text
    row = next(line for line in text.splitlines() if line.startswith("| **all**"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "2" and cells[5] == "1 / 0"  # dog down, cat level
    template, reworded = float(cells[2]), float(cells[3])
    assert template > 0.7 and reworded < template / 2  # cat as before, dog at about 0
    moved = [line for line in text.splitlines() if line.startswith("| word:")]
    assert len(moved) == 1 and "word:dog" in moved[0] and "a pet's name" in moved[0]

    # a file of several simulators needs --simulator
    short = json.loads((tmp_path / "short.json").read_text())
    both = {**short, "units": {**short["units"], "other": short["units"]["keyword"]}}
    (tmp_path / "both.json").write_text(json.dumps(both))
    with pytest.raises(SystemExit, match="holds the simulators keyword, other: name one with --simulator"):
        compare(data, tmp_path / "paraphrase.json", tmp_path / "both.json")
    assert compare(data, tmp_path / "paraphrase.json", tmp_path / "both.json", "keyword") == text.replace(
        "short.json)", "both.json)")
    # another seed, or the styles swapped, is refused in one line
    short = json.loads((tmp_path / "short.json").read_text())
    (tmp_path / "seed1.json").write_text(json.dumps({**short, "seed": 1}))
    with pytest.raises(SystemExit, match="seeds 0 and 1"):
        compare(data, tmp_path / "paraphrase.json", tmp_path / "seed1.json")
    with pytest.raises(SystemExit, match="--style paraphrase file as --paraphrase"):
        compare(data, tmp_path / "short.json", tmp_path / "paraphrase.json")
    assert main(["--data", str(data), "--paraphrase", str(tmp_path / "paraphrase.json"), "--short",
                 str(tmp_path / "short.json"), "--out", str(tmp_path / "t.md")]) == 0
    assert (tmp_path / "t.md").read_text() == text


def test_decoy_files_count_wins_in_each_wording(data, tmp_path):
    for style in ("short", "paraphrase"):
        assert simtrain(["-q", "decoys", "--simulator", "keyword", "--data", str(data), "--style", style,
                         "--out", str(tmp_path / style)]) == 0
    para = json.loads((tmp_path / "paraphrase.json").read_text())
    short = json.loads((tmp_path / "short.json").read_text())
    (rows_p,), (rows_s,) = para["units"].values(), short["units"].values()
    wins = {r["unit"]: (bool(s["win"]), bool(r["win"])) for r, s in zip(rows_p, rows_s)}
    text = compare(data, tmp_path / "paraphrase.json", tmp_path / "short.json")
    n_s, n_p = sum(wins[u][0] for u in ("word:cat", "word:dog")), sum(wins[u][1] for u in ("word:cat", "word:dog"))
    assert f"Truth ranked first: **{n_s} of 2** in template wording, **{n_p}** reworded." in text
    assert wins["word:dog"] == (True, False)  # its rewording names no word: every decoy beats or ties it
    changed = [line for line in text.splitlines() if line.startswith("| word:")]
    assert [line.split("|")[1].strip() for line in changed] == [u for u in ("word:cat", "word:dog")
                                                                if wins[u][0] != wins[u][1]]
