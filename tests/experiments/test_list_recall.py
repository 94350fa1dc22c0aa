"""experiments/list_recall.py on the toy store whose unit fires on ' dog' (5) and ' cat' (3), with the keyword
simulator (10 wherever a quoted word occurs): it reads every listed word, so recall is 1 in every group."""

from __future__ import annotations

import json

from list_recall import main, token_class

from tests.runs.test_runner import _store


def test_token_classes():
    assert [token_class(t) for t in [" dog", "Trace", "c", "ab", "2024", "://", "__init__", "x2"]] == \
        ["word", "Capitalised", "fragment", "fragment", "digits", "symbol", "mixed", "mixed"]


def test_recall_by_length_and_by_kind_of_token(tmp_path):
    store = _store(tmp_path)
    neurons = tmp_path / "neurons.json"
    neurons.write_text(json.dumps({"z-score": ["0:1"]}))
    out = tmp_path / "out"
    assert main(["--store", str(store.path), "--neurons", str(neurons), "--simulators", "keyword",
                 "--sizes", "1,2", "--out", str(out)]) == 0
    res = json.loads((out / "list_recall.json").read_text())["results"]["keyword"]["0:1"]
    assert set(res) == {"1", "2"}
    for k, r in res.items():
        assert r["recall"] == 1.0
        assert set(r["by_group"]) == {"word", "first half"} | ({"second half"} if k == "2" else set())
        assert all(g["recall"] == 1.0 for g in r["by_group"].values())
        assert sum(r["by_group"][g]["tokens"] for g in ("first half", "second half") if g in r["by_group"]) == \
            r["listed_tokens"]
    summary = (out / "summary.md").read_text()
    assert "| `keyword` | 2 | 1.00 (" in summary and "Recall by the kind of listed token" in summary
