"""The opt-in generated units (``build-data --spelling N --syntax N``): spelling units fire on exactly the prose
words their description names (an ending, a beginning, a letter sequence inside the word, a length), syntax units
on one part of speech right after another; seeded; through build-data and its command line; and without the
options the dataset is what it was."""

from __future__ import annotations

import re

import numpy as np
import pytest

from simulator_training.cli import main
from simulator_training.concepts import POS, PREFIXES, SUFFIXES
from simulator_training.data import build_synthetic, read_manifest, read_units
from simulator_training.generated import SPELLING_KINDS, spelling_concepts, syntax_concepts

SMALL = dict(valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)
LOOSE = dict(min_forms=2, min_count=3, max_share=0.7)  # the tiny pool has few words


def _describes(kind: str, key: str, word: str) -> bool:
    """What the unit's first description says, written again from its words."""
    if not (word.isascii() and word.isalpha()):
        return False
    if kind == "length":
        return len(word) == int(key)
    if kind == "containing":
        return len(word) >= 5 and key in word[1:-1]
    if len(word) < len(key) + 3:
        return False
    return word.endswith(key) if kind == "ending" else word.startswith(key)


def test_spelling_units_fire_on_exactly_the_words_they_describe(tiny_pool):
    units = spelling_concepts(tiny_pool, 12, seed=1, **LOOSE)
    assert len(units) == 12 and all(u.family == "spelling" for u in units)
    assert len({u.name for u in units}) == 12
    kinds = [u.name.split("-")[1] for u in units]
    assert set(kinds) == set(SPELLING_KINDS)  # round-robin over the kinds
    counts = np.bincount(tiny_pool.lower_id[~tiny_pool.code], minlength=len(tiny_pool.lowers))
    for unit in units:
        _, kind, key = unit.name.split("-", 2)
        assert key not in SUFFIXES and key not in PREFIXES or kind in ("containing", "length")
        quoted = re.findall(r'"([^"]+)"', unit.descriptions[0])
        assert kind == "length" or quoted == [key]
        values = unit.word_values(tiny_pool)
        expected = np.array([_describes(kind, key, tiny_pool.lowers[i]) for i in tiny_pool.lower_id]) & ~tiny_pool.code
        assert np.array_equal(values, expected * 10.0) and values.max() == 10.0
        members = [i for i, w in enumerate(tiny_pool.lowers) if _describes(kind, key, w) and counts[i]]
        assert len(members) >= LOOSE["min_forms"]
        assert counts[members].max() <= LOOSE["max_share"] * counts[members].sum()  # not one word's unit
    again = spelling_concepts(tiny_pool, 12, seed=1, **LOOSE)
    assert [u.name for u in again] == [u.name for u in units]
    assert [u.name for u in spelling_concepts(tiny_pool, 12, seed=2, **LOOSE)] != [u.name for u in units]
    assert len(spelling_concepts(tiny_pool, 10**6, seed=1, **LOOSE)) < 10**6  # all there are, no repeats


def test_syntax_units_fire_on_a_part_of_speech_right_after_another(tiny_pool):
    units = syntax_concepts(tiny_pool, 12, seed=0, min_count=3)
    assert len(units) == 12 and all(u.family == "syntax" for u in units)
    tags = np.array(tiny_pool.tags)
    for unit in units:
        a, b = unit.name.removeprefix("syntax:gen-").split("-after-")
        assert a != b and unit.descriptions[0] == f"{POS[a][1][0]} right after {POS[b][1][0]}"
        here = np.where(tiny_pool.tag_id >= 0, np.isin(tags[np.maximum(tiny_pool.tag_id, 0)], list(POS[a][0])), False)
        before = np.where(tiny_pool.prev_tag >= 0, np.isin(tags[np.maximum(tiny_pool.prev_tag, 0)], list(POS[b][0])),
                          False)
        values = unit.word_values(tiny_pool)
        assert np.array_equal(values, (here & before & ~tiny_pool.code) * 10.0)
        assert int((values > 0).sum()) >= 3


def test_build_data_with_generated_units_and_without(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    assert "generated" not in read_manifest(plain)
    names = lambda path: [u["unit"] for s in ("train", "valid") for u in read_units(path, s)]  # noqa: E731
    assert not any(":gen-" in n for n in names(plain))
    out = build_synthetic(tmp_path / "gen", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, spelling=6,
                          syntax=4, **SMALL)
    manifest = read_manifest(out)
    made = [n for n in names(out) if ":gen-" in n]
    assert manifest["generated"]["spelling"]["requested"] == 6 and manifest["generated"]["syntax"]["requested"] == 4
    assert made and all(n.startswith(("spelling:gen-", "syntax:gen-")) for n in made)
    single = [n for n in names(plain) if "+" not in n]
    assert [n for n in names(out) if "+" not in n and ":gen-" not in n][:len(single)] == single  # the others stay


@pytest.mark.parametrize("flag", ["--spelling", "--syntax"])
def test_cli_refuses_generated_units_with_from_run_and_below_zero(flag, tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-run", "run.sqlite", flag, "5"]) != 0
    assert f"{flag} adds synthetic units" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), flag, "-1"]) != 0
    assert f"{flag} must be 0 (off) or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
