"""experiments/limits.py on the toy store whose unit fires on ' dog' (5) and ' cat' (3): a set of two lists, one per
level, read perfectly is the lookup table itself; one list for both words loses the grading."""

from __future__ import annotations

import json

import pytest
from limits import RUNGS, context_lookup, main

from tests.runs.test_runner import _store


def _run(tmp_path, explanations: list[str], simulator_test: float = 0.5) -> dict:
    store = _store(tmp_path)
    depths = tmp_path / "depths.json"
    depths.write_text(json.dumps({"command": "toy", "simulator": "keyword",
                                  "neurons": {"0:1": {"5": {"explanations": explanations, "test": simulator_test}}}}))
    out = tmp_path / "out"
    assert main(["--store", str(store.path), "--depths", str(depths), "--out", str(out)]) == 0
    return json.loads((out / "limits.json").read_text())["neurons"]["0:1"]


def test_two_levels_read_perfectly_equal_the_lookup_and_one_list_loses_the_grading(tmp_path):
    graded = _run(tmp_path / "a", ['the word "dog"', 'the word "cat"'])["rungs"]
    assert graded["all tokens"] == pytest.approx(1.0) and graded["named tokens"] == pytest.approx(1.0)
    assert graded["tier levels"] == pytest.approx(1.0)
    assert graded["simulator"] == 0.5  # the run's own score, as given
    flat = _run(tmp_path / "b", ['the words "dog" and "cat"'])["rungs"]
    assert flat["named tokens"] == pytest.approx(1.0) and 0.5 < flat["tier levels"] < 0.99
    summary = (tmp_path / "b" / "out" / "summary.md").read_text()
    assert all(f"| {r} |" in summary for r in RUNGS)


def test_a_missing_file_or_variant_is_one_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--store", "x", "--depths", str(tmp_path / "none.json"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--depths" in capsys.readouterr().err
    (tmp_path / "d.json").write_text(json.dumps({"neurons": {"0:1": {"4": {}}}}))
    with pytest.raises(SystemExit):
        main(["--store", "x", "--depths", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")])
    assert "--variant" in capsys.readouterr().err


def test_the_context_rung_reads_the_previous_token_and_backs_off_to_the_token():
    """' dog' fires (4) only after ' the'; elsewhere it is quiet, as every other token: the token's own mean
    (half the time 4) cannot tell the two apart, the pair's can. A pair seen once in train is not trusted: the
    lookup falls back to the token's mean, which is what a token-only lookup gives."""
    from types import SimpleNamespace

    import numpy as np
    from quality import lookup_score

    def ex(tokens):
        acts = [4.0 if t == " dog" and i and tokens[i - 1] == " the" else 0.0 for i, t in enumerate(tokens)]
        return SimpleNamespace(tokens=tokens, activations=np.array(acts, np.float32), kind="top")

    texts = [[" the", " dog", " ran"], [" a", " dog", " sat"], [" see", " the", " dog"], [" my", " dog", " ate"]]
    train = [ex(t) for t in texts * 2]  # every pair seen twice
    test = SimpleNamespace(exemplars=[ex(t) for t in texts[::-1]])
    assert context_lookup(train, test) == pytest.approx(1.0)
    assert lookup_score(train, test) < 0.8
    assert context_lookup(train[:2], test) == pytest.approx(lookup_score(train[:2], test))  # each pair seen once
