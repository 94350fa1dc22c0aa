"""experiments/membership_prior.py: a word-membership prior from an LM's log-probs, blended into a simulator."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from membership_prior import (ALPHAS, Prior, kept_readings, main, prior_reading, run, summary, truth_only_wins,
                              word_of)
from experiment_world import CATEGORY_UNITS, check_unit_cli_refusals
from ns_dspy.simulators.base import build_simulator
from ns_dspy.types import Exemplar


UNITS = CATEGORY_UNITS
KNOWN = {"natural object": {"rock": 3.0, "stone": 2.5, "wall": 0.5}, "structure": {"wall": 3.0, "road": 2.0}}


def fake_pmi(explanation: str, words: list[str]) -> dict[str, float]:
    """A prior that knows the two categories' members (and nothing of word lists)."""
    table = next((v for k, v in KNOWN.items() if k in explanation), {})
    return {w: table.get(w, -1.0) for w in words}


def test_word_of_and_prior_reading():
    assert word_of(" Rock") == "rock" and word_of("don't") == "don't"
    assert word_of(",") is None and word_of(" 12") is None and word_of("a") is None
    exemplars = [Exemplar(tokens=[" rock", " wall", ","], activations=np.zeros(3, np.float32))]
    got = prior_reading({"rock": 2.0, "wall": -1.0}, exemplars)
    np.testing.assert_allclose(got[0], [10.0, 0.0, 0.0])  # clipped at 0, scaled to a largest of 10
    np.testing.assert_allclose(prior_reading({}, exemplars)[0], [0.0, 0.0, 0.0])


def test_run_blends_and_resumes(tmp_path):
    calls = []

    def pmi(explanation, words):
        calls.append(explanation)
        return fake_pmi(explanation, words)

    simulator = build_simulator("keyword")
    out, keep = tmp_path / "out.json", tmp_path / "preds"
    state = run(UNITS, simulator, pmi, out, families={"wordnet"}, keep=keep, progress=False)
    rows = {r["unit"]: r for r in state["rows"]}
    blends = rows["wordnet:natural_object"]["blends"]
    assert set(blends) == {str(a) for a in ALPHAS}
    # the keyword simulator finds no quoted word in the description; the prior knows the members
    assert blends["0.0"]["r"] <= 0.0
    assert blends["1.0"]["r"] > 0.9 and blends["0.5"]["r"] > 0.9
    # the over-narrow decoy ("the word rock" or "stone") is read exactly by the simulator: it wins alone, not blended
    assert not blends["0.0"]["win"]
    saved = np.load(keep / "wordnet_natural_object.npz")
    assert saved["sim"].shape == saved["prior"].shape == (len(rows["wordnet:natural_object"]["texts"]), 28)
    assert json.loads(out.read_text())["rows"] == state["rows"]
    n = len(calls)
    assert run(UNITS, simulator, pmi, out, families={"wordnet"}, progress=False)["rows"] == state["rows"]
    assert len(calls) == n  # a finished unit is not read again
    text = summary(state, "t")
    assert "| 0.0 | 2 |" in text and "| 1.0 | 2 |" in text and "| family |" not in text
    assert "diagnostic" not in text
    # with the kept readings: the diagnostic (the blend on the truth only) equals the blend's wins at a = 0, and
    # the prior alone on the truth beats the decoys as the keyword simulator reads them in both units
    readings = kept_readings(state["rows"], keep)
    assert truth_only_wins(readings, 0.0) == (sum(r["blends"]["0.0"]["win"] for r in state["rows"]), 2)
    assert truth_only_wins(readings, 1.0) == (2, 2)
    lines = summary(state, "t", keep=keep).splitlines()
    assert "diagnostic" in lines[2] and lines[-1].startswith("| 1.0 | 2 |") and lines[-1].endswith(" 2/2 |")


def test_prior_matches_a_plain_forward(tiny_llama):
    """The cached-prefix, batched log-probs equal a full forward of prefix + word + closing quote."""
    prior = Prior(str(tiny_llama), batch=2)
    words = ["stone", "wall", "rock", "a"]
    got = prior.logps('Description: x\nA word: "', words)
    tok, model = prior.tok, prior.model
    pre = tok('Description: x\nA word: "')["input_ids"]
    for w in words:
        cont = tok(w + '"', add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=torch.tensor([pre + cont])).logits[0].float(), -1)
        want = sum(float(lp[len(pre) - 1 + k, t]) for k, t in enumerate(cont))
        assert got[w] == pytest.approx(want, abs=1e-4)
    pmi = prior.pmi("stones", words)
    assert set(pmi) == set(words) and set(prior._neutral) == set(words)


def test_main_refuses_bad_input_before_writing(tmp_path):
    data = check_unit_cli_refusals(main, tmp_path)
    with pytest.raises(SystemExit, match="not an offline model"):
        main(["--data", str(data), "--out", str(tmp_path / "p.json"), "--prior-model", "nonesuch"])
    assert not (tmp_path / "p.json").exists()
