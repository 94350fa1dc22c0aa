"""The decoy evaluation: decoys built from a unit's own data, and the keyword simulator on units whose answer
is known (it reads listed words, so it wins on a word unit and loses on a unit that depends on context)."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from ns_dspy.simulators import build_simulator

from simulator_training.cli import main
from simulator_training.data import DATA_FORMAT, DATA_VERSION
from simulator_training.evaluate import (DECOY_FAMILIES, _exemplars, decoy_sets, decoys, evaluate_decoys,
                                         exact_reading, markdown_decoys, summarise_decoys, wilson)


def _unit(name, family, explanation, texts):
    """``texts``: one list of (token, target) pairs per exemplar."""
    return {"unit": name, "family": family, "explanations": [explanation],
            "exemplars": [{"tokens": [t for t, _ in ex], "token_ids": list(range(len(ex))),
                           "targets": [float(a) for _, a in ex], "kind": "top"} for ex in texts]}


def _words(text, active=(), **targets):
    return [(f" {w}", targets.get(w, 10.0 if i in active else 0.0)) for i, w in enumerate(text.split())]


# A word unit: "cat" always fires; "black" sits next to it and is quiet.
CAT = _unit("word:cat", "word", 'Fires on "cat"', [
    _words("a black cat sat", cat=10), _words("my black cat ran", cat=10), _words("one cat slept", cat=10),
    _words("a black dog sat")])
# A context unit: the word after "not" fires; the same words elsewhere are quiet.
AFTER_NOT = _unit("syntax:after-not", "syntax", 'Fires after "not"', [
    _words("it is not good but fine", active=(3,)), _words("it was not bad at all", active=(3,)),
    _words("she is not happy today", active=(3,)), _words("good food is good"),
    _words("bad news makes happy people sad")])
LONELY = _unit("spelling:ly", "spelling", 'Fires on words ending in "ly"', [
    _words("he ran quickly home", quickly=10), _words("she sang softly", softly=10),
    _words("they left slowly", slowly=10)])
SIBLINGS = [_unit(f"word:{w}", "word", f'Fires on "{w}"', [_words(f"a {w} sat", **{w: 10})])
            for w in ("dog", "cow", "hen", "owl")]
UNITS = [CAT, AFTER_NOT, LONELY, *SIBLINGS]


def test_each_family_only_under_its_condition():
    cat = decoys(CAT, UNITS, random.Random(0))
    assert cat.truth == 'Fires on "cat"'
    assert cat.decoys["cooccurring"] == 'the word "black"'  # near the trigger, quiet; "a" is near it only once
    assert cat.decoys["over_broad"] == 'Fires on "cat"; also the word "black"'
    assert cat.decoys["sibling"] in {u["explanations"][0] for u in SIBLINGS}
    assert set(cat.skipped) == {"context_free", "over_narrow"}  # "cat" is never quiet, and carries all
    assert "100%" in cat.skipped["over_narrow"] and "0%" in cat.skipped["context_free"]

    ctx = decoys(AFTER_NOT, UNITS, random.Random(0))
    assert list(ctx.decoys) == ["cooccurring", "context_free", "over_narrow", "over_broad"]  # in family order
    assert ctx.decoys["cooccurring"] == 'the words "not", "it" and "is"'
    assert ctx.decoys["context_free"] == 'the words "bad", "good" and "happy"'  # quiet in 4 of 7 occurrences
    assert ctx.decoys["over_narrow"] == 'the word "bad"'  # a third of the mass each
    assert ctx.skipped == {"sibling": "no other syntax unit"}

    # a stricter context threshold or a looser narrowness one turns those families off
    strict = decoys(AFTER_NOT, UNITS, random.Random(0), context_share=0.6, narrow_share=0.3)
    assert "context_free" in strict.skipped and "over_narrow" in strict.skipped
    assert "context_free" not in strict.decoys and "over_narrow" not in strict.decoys


def test_decoys_differ_from_the_truth_and_each_other():
    for unit in UNITS:
        d = decoys(unit, UNITS, random.Random(3))
        texts = [t.lower() for t in d.decoys.values()]
        assert d.truth.lower() not in texts and len(set(texts)) == len(texts)
        assert set(d.decoys) | set(d.skipped) == set(DECOY_FAMILIES) and not set(d.decoys) & set(d.skipped)
    # a sibling that says the same as the truth is no decoy
    twin = _unit("word:cat2", "word", 'Fires on "cat"', [_words("a cat", cat=10)])
    alone = decoys(CAT, [CAT, twin], random.Random(0))
    assert "sibling" not in alone.decoys and "sibling" in alone.skipped


def test_a_seed_gives_the_same_decoys():
    assert decoys(CAT, UNITS, random.Random(5)) == decoys(CAT, UNITS, random.Random(5))
    siblings = {decoys(CAT, UNITS, random.Random(s)).decoys["sibling"] for s in range(20)}
    assert len(siblings) > 1  # the seed does choose
    a = decoy_sets(UNITS, seed=1, max_units=3)
    b = decoy_sets(UNITS, seed=1, max_units=3)
    assert [(u["unit"], d) for u, d in a] == [(u["unit"], d) for u, d in b]
    # a unit's decoys do not depend on which other units are sampled
    full = dict((u["unit"], d) for u, d in decoy_sets(UNITS, seed=1))
    assert all(full[u["unit"]] == d for u, d in a)


def test_keyword_simulator_wins_on_words_and_loses_on_context():
    rows = {r["unit"]: r for r in evaluate_decoys(build_simulator("keyword"), UNITS, seed=0, progress=False)}
    cat, ctx = rows["word:cat"], rows["syntax:after-not"]
    assert cat["r"] == pytest.approx(1.0) and cat["win"] is True and cat["rank"] == 1
    assert all(cat["r"] > r for r in cat["r_decoys"].values())
    assert cat["r_decoys"]["over_broad"] < 1.0  # "black" is a false positive
    # the keyword simulator reads 'Fires after "not"' as the word "not", which is always quiet
    assert ctx["win"] is False and ctx["rank"] >= 3
    assert ctx["r"] < 0 < ctx["r_decoys"]["context_free"] and ctx["r_decoys"]["over_narrow"] > ctx["r"]

    summary = summarise_decoys(list(rows.values()))
    assert summary["families"]["syntax"]["win"] == 0.0 and summary["families"]["syntax"]["rank"] == ctx["rank"]
    assert summary["decoys"]["context_free"] == {"units": 1, "skipped": len(UNITS) - 1, "beats": 0.0,
                                                 "r_decoy": ctx["r_decoys"]["context_free"], "lists": 1,
                                                 "over_exact": pytest.approx(0.0, abs=1e-4)}
    assert summary["all"]["units"] == len(UNITS) and summary["no_decoys"] == 0
    assert summary["all"]["win"] == pytest.approx(sum(r["win"] for r in rows.values()) / len(UNITS), abs=1e-4)
    assert (summary["families"]["syntax"]["win_low"], summary["families"]["word"]["win_high"]) == (0.0, 1.0)
    table = markdown_decoys({"keyword": summary, "again": summary})
    assert "| syntax | 1 | 5.0 | 0% | 0-73% | " in table and "| context_free | 1 | 6 | 0% |" in table
    assert "**balanced**" in table and "again: truth beats" in table


def test_wilson_interval():
    assert wilson(0, 10, z=1.96) == pytest.approx((0.0, 1.96 ** 2 / (10 + 1.96 ** 2)))  # 0 wins: z^2 / (n + z^2)
    low, high = wilson(14, 34)
    assert low < 14 / 34 < high and (low, high) == pytest.approx(tuple(1 - x for x in wilson(20, 34)[::-1]))
    assert wilson(140, 340)[1] - wilson(140, 340)[0] < high - low  # ten times the units: a narrower interval
    assert wilson(0, 0) == (0.0, 1.0)


def test_exact_reading_of_a_word_list():
    exemplars = _exemplars(AFTER_NOT)
    tokens = [t for ex in exemplars for t in ex.tokens]
    acts = np.concatenate([ex.activations for ex in exemplars])
    indicator = np.array([t.strip() in {"good", "bad"} for t in tokens], dtype=float)
    assert exact_reading('the words "Good" and "bad"', exemplars) == pytest.approx(
        np.corrcoef(indicator, acts)[0, 1], abs=1e-4)  # case-folded, as the decoys group tokens
    assert exact_reading('Fires after "not"', exemplars) is None  # not a word list
    assert exact_reading('(negative) the word "not"', exemplars) is None
    assert exact_reading('the word "zebra"', exemplars) is None  # no token: a constant reading


class _TopicReader:
    """Reads any word list as its topic: the listed words and the unit's trigger "cat" (a lenient simulator)."""

    def simulate(self, explanations, exemplars):
        out = []
        for text in explanations:
            words = {w.lower() for w in re.findall(r'"([^"]+)"', text)}
            if text.startswith("the word"):
                words.add("cat")
            out.append([np.array([10.0 * (t.strip().lower() in words) for t in ex.tokens], np.float32)
                        for ex in exemplars])
        return out


def test_how_far_a_simulator_reads_a_list_beyond_its_words():
    strict = summarise_decoys(evaluate_decoys(build_simulator("keyword"), [CAT], seed=0, progress=False))
    lenient_rows = evaluate_decoys(_TopicReader(), [CAT], seed=0, progress=False)
    lenient = summarise_decoys(lenient_rows)
    # 'the word "black"': quiet where it occurs, so read exactly it is below zero; the lenient reader credits it
    assert lenient_rows[0]["exact_decoys"]["cooccurring"] < 0 < lenient_rows[0]["r_decoys"]["cooccurring"]
    assert lenient["decoys"]["cooccurring"]["over_exact"] > 0.5 and lenient["decoys"]["cooccurring"]["lists"] == 1
    assert strict["decoys"]["cooccurring"]["over_exact"] == pytest.approx(0.0, abs=1e-4)
    assert lenient["decoys"]["over_broad"]["lists"] == 0  # not a word list: no exact reading
    table = markdown_decoys({"lenient": lenient})
    assert "lenient: lists above exact" in table and "| cooccurring | 1 | 0 | 100% |" in table


def test_cli_writes_decoys(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": DATA_FORMAT, "version": DATA_VERSION}))
    (data / "valid.jsonl").write_text("".join(json.dumps(u) + "\n" for u in UNITS))
    assert main(["-q", "decoys", "--simulator", "keyword", "--data", str(data), "--max-units", "3",
                 "--out", str(tmp_path / "decoys")]) == 0
    report = json.loads((tmp_path / "decoys.json").read_text())
    assert set(report["summary"]) == {"keyword"} and report["max_units"] == 3
    assert len(report["units"]["keyword"]) == 3 and all("decoys" in r for r in report["units"]["keyword"])
    assert (tmp_path / "decoys.md").read_text().startswith("| family |")
    assert (tmp_path / "decoys.png").stat().st_size > 0


def test_cli_passes_simulator_options(tmp_path, tiny_llama):
    """``--simulator-opt`` reaches the simulator and names it in the results; an option the backend does not take
    is one line and exit 2, with nothing written."""
    from tiny_adapters import random_adapter

    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": DATA_FORMAT, "version": DATA_VERSION}))
    (data / "valid.jsonl").write_text("".join(json.dumps(u) + "\n" for u in UNITS))
    folder = random_adapter(tiny_llama, tmp_path / "sim", ["q_proj", "v_proj"], seed=1)
    assert main(["-q", "decoys", "--simulator", f"finetuned:{folder}", "--simulator-opt", "quantize=int8",
                 "--dtype", "float32", "--device", "cpu", "--data", str(data), "--max-units", "2",
                 "--out", str(tmp_path / "decoys")]) == 0
    report = json.loads((tmp_path / "decoys.json").read_text())
    assert set(report["summary"]) == {f"finetuned:{folder} quantize=int8"}
    assert main(["-q", "eval", "--simulator", "keyword", "--simulator-opt", "quantize=int8", "--data", str(data),
                 "--out", str(tmp_path / "eval")]) == 2
    assert not list(tmp_path.glob("eval*"))
