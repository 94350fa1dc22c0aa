"""experiments/long_prose.py on the toy store whose unit fires on ' dog' (5) and ' cat' (3), with the keyword
simulator (10 wherever a quoted or named word occurs): every form names the same peak words."""

from __future__ import annotations

import json

from long_prose import FORMS, main

from tests.runs.test_runner import _store


def test_every_form_names_the_same_words_and_is_scored_beside_the_list(tmp_path, capsys):
    store = _store(tmp_path)
    neurons = tmp_path / "neurons.json"
    neurons.write_text(json.dumps({"z-score": ["0:1"], "frequency": ["0:2"]}))
    out = tmp_path / "out"
    assert main(["--store", str(store.path), "--neurons", str(neurons), "--simulators", "keyword",
                 "--out", str(out)]) == 0
    data = json.loads((out / "long_prose.json").read_text())
    assert list(data["texts"]) == ["0:1"]  # 0:2 never fires: it has no peak words
    texts = data["texts"]["0:1"]
    assert set(texts) == set(FORMS)
    words = {w for w in texts["list"].split('"')[1::2]}
    assert words == {"dog", "cat"}  # the only two peak tokens
    assert all(words <= set(t.split('"')[1::2]) for t in texts.values())
    res = data["results"]["keyword"]
    scores = res["units"]["0:1"]
    # the keyword reader fires wherever a word of the text is named: every form names dog and cat
    assert all(v > 0.3 for v in scores.values()), scores
    assert res["mean"] == {k: round(v, 4) for k, v in scores.items()}
    assert res["minus_list"]["list"][0] == 0.0
    assert "| keyword |" in (out / "long_prose.md").read_text()
