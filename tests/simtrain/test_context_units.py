"""The opt-in ``context`` family (``build-data --context N``): units that fire on one word only right after one
other word, described first in the words ns-dspy's statistical explainer writes (``context_text``), with contrast
windows where the word follows another word and the unit is quiet. Through build-data and its command line;
without the option the dataset is what it was."""

from __future__ import annotations

import re

import numpy as np

from ns_dspy.agents.evidence import context_text

from simulator_training.cli import main
from simulator_training.concepts import CONTEXT_FAMILY, FAMILIES, context_concepts
from simulator_training.data import build_synthetic, read_manifest, read_units

SMALL = dict(valid_share=0.3, n_top=4, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)
LOOSE = dict(min_count=2)


def _pair(text: str) -> tuple[str, str]:
    word, before = re.fullmatch(r'the word "(.+)" only right after "(.+)"', text).groups()
    return word, before


def test_context_units_fire_on_a_word_only_after_its_word_before(tiny_pool):
    units = context_concepts(tiny_pool, 40, seed=1, **LOOSE)
    assert units and all(u.family == CONTEXT_FAMILY for u in units) and CONTEXT_FAMILY not in FAMILIES
    words = []
    for unit in units:
        word, before = _pair(unit.descriptions[0])
        assert unit.descriptions[0] == context_text(word, before)  # the statistical explainer's own words
        assert all(f'"{word}"' in d for d in unit.descriptions)
        w, b = tiny_pool.lower_index[word.lower()], tiny_pool.lower_index[before.lower()]
        there = (tiny_pool.lower_id == w) & (tiny_pool.prev == b)
        elsewhere = (tiny_pool.lower_id == w) & (tiny_pool.prev != b)
        assert np.array_equal(unit.word_values(tiny_pool), there * 10.0)  # that word after that word, nothing else
        assert there.sum() >= 2 and elsewhere.any()  # seen often enough, and quiet elsewhere: the decoy
        assert np.array_equal(unit.decoy(tiny_pool), elsewhere)
        share = there.sum() / (there | elsewhere).sum()
        assert 0.1 <= share <= 0.6
        words.append(w)
    assert len(set(words)) == len(words)  # one unit per word
    again = context_concepts(tiny_pool, 40, seed=1, **LOOSE)
    assert [u.descriptions for u in again] == [u.descriptions for u in units]
    assert [u.name for u in context_concepts(tiny_pool, 40, seed=2, **LOOSE)] != [u.name for u in units]
    assert len(context_concepts(tiny_pool, 2, seed=1, **LOOSE)) == min(2, len(units))
    assert context_concepts(tiny_pool, 40, seed=1, min_count=10 ** 6) == []


def test_build_data_adds_context_units_with_quiet_contrast_windows(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    assert "context" not in read_manifest(plain)
    out = build_synthetic(tmp_path / "context", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, context=30,
                          context_options=LOOSE, **SMALL)
    manifest = read_manifest(out)
    made = [u for u in read_units(out, "train") if u["family"] == CONTEXT_FAMILY]
    assert made and manifest["context"]["units"] == len(made) and manifest["context"]["requested"] == 30
    assert not any(u["family"] == CONTEXT_FAMILY for u in read_units(out, "valid"))  # training units only
    shown = 0
    for unit in made:
        word = unit["unit"].removeprefix("context:").rsplit("_after_", 1)[0]
        contrast = [ex for ex in unit["exemplars"] if ex["kind"] == "contrast"]
        shown += bool(contrast)
        for ex in contrast:  # the word is there, after another word, and the unit is quiet
            assert max(ex["targets"]) == 0  # a window may start inside the word: its end is there
            assert word[-2:] in "".join(ex["tokens"]).lower()
        assert any(max(ex["targets"]) == 10 for ex in unit["exemplars"] if ex["kind"] == "top")
    assert shown >= len(made) / 2  # the tiny text has no quiet occurrence for some words in its train documents
    for split in ("train", "valid"):  # every other unit is what the build without the option wrote
        assert [u for u in read_units(out, split) if u["family"] != CONTEXT_FAMILY] == read_units(plain, split)


def test_cli_refuses_context_below_zero_and_with_a_recorded_source(tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "a"), "--context", "-1"]) == 2
    assert "--context must be 0 (off) or more" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "b"), "--from-store", str(tmp_path), "--context",
                 "5"]) == 2
    assert "--context adds synthetic units" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
