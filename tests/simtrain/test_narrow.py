"""The opt-in ``narrow`` family (``build-data --narrow N``): units that fire on one to three words of a category and
on nothing else, described by listing those words, shown with contrast windows where the category's other words
occur and the unit is quiet; through build-data and its command line, and without the option the dataset is what
it was."""

from __future__ import annotations

import re

import numpy as np

from ns_dspy.agents.evidence import word_list

from simulator_training.cli import main
from simulator_training.concepts import FAMILIES, NARROW_FAMILY, all_concepts, narrow_concepts
from simulator_training.data import build_synthetic, read_manifest, read_units

SMALL = dict(valid_share=0.3, n_top=4, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)
LOOSE = dict(min_count=2, min_left=1)


def _listed(text: str) -> list[str]:
    quoted = re.findall(r'"([^"]+)"', text)
    return quoted or [w.strip() for w in text.split(":", 1)[1].split(",")]


def _sources(pool):
    return [c for c in all_concepts(pool) if c.family == "semantic"]


def test_narrow_units_fire_on_their_listed_words_only_and_take_the_category_as_decoy(tiny_pool):
    sources = _sources(tiny_pool)
    units = narrow_concepts(sources, tiny_pool, 50, seed=1, **LOOSE)
    assert units and all(u.family == NARROW_FAMILY for u in units) and NARROW_FAMILY not in FAMILIES
    by_name = {c.name: c for c in sources}
    for unit in units:
        words = _listed(unit.descriptions[0])
        assert 1 <= len(words) <= 3 and unit.descriptions[0] == word_list(words)  # the statistical explainer's form
        assert all(set(_listed(d)) == set(words) for d in unit.descriptions)
        source = by_name[unit.name.removeprefix("narrow:")]
        category = source.word_values(tiny_pool) > 0
        listed = np.isin(tiny_pool.lower_id, [tiny_pool.lower_index[w.lower()] for w in words]) & ~tiny_pool.code
        values = unit.word_values(tiny_pool)
        assert np.array_equal(values, listed * 10.0)  # every occurrence of a listed word, in any case, nothing else
        assert (category & listed).any()  # the words are members of the category
        decoy = unit.decoy(tiny_pool)
        assert decoy.any() and not (decoy & listed).any() and np.array_equal(decoy, category & ~listed)
    # seeded: the same units again, others with another seed
    again = narrow_concepts(sources, tiny_pool, 50, seed=1, **LOOSE)
    assert [u.descriptions for u in again] == [u.descriptions for u in units]
    other = narrow_concepts(sources, tiny_pool, 50, seed=2, **LOOSE)
    assert [u.descriptions for u in other] != [u.descriptions for u in units]
    assert len(narrow_concepts(sources, tiny_pool, 2, seed=1, **LOOSE)) == min(2, len(units))
    # a category without enough other members to contrast with gives no unit
    assert narrow_concepts(sources, tiny_pool, 50, seed=1, min_count=2, min_left=10 ** 6) == []


def test_build_data_adds_narrow_training_units_with_quiet_contrast_windows(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    assert "narrow" not in read_manifest(plain)
    out = build_synthetic(tmp_path / "narrow", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, narrow=40,
                          narrow_options=LOOSE, **SMALL)
    manifest = read_manifest(out)
    train, valid = read_units(out, "train"), read_units(out, "valid")
    made = [u for u in train if u["family"] == NARROW_FAMILY]
    sources = {c.name: c for c in _sources(tiny_pool)}
    assert made and manifest["narrow"]["units"] == len(made) and manifest["narrow"]["requested"] == 40
    assert not any(u["family"] == NARROW_FAMILY for u in valid)  # training units only
    assert all(u["unit"].removeprefix("narrow:") in {x["unit"] for x in read_units(plain, "train")} for u in made)
    for unit in made:
        words = {w.lower() for w in _listed(unit["explanations"][0].rstrip("."))}
        source = sources[unit["unit"].removeprefix("narrow:")]
        others = {tiny_pool.lowers[i] for i in np.unique(tiny_pool.lower_id[source.word_values(tiny_pool) > 0])} - words
        contrast = [ex for ex in unit["exemplars"] if ex["kind"] == "contrast"]
        assert contrast
        for ex in contrast:  # each shows another word of the category, where the unit is quiet
            text = "".join(ex["tokens"]).lower()
            assert any(re.search(rf"\b{re.escape(w)}\b", text) for w in others)
        for ex in unit["exemplars"]:
            for token, target in zip(ex["tokens"], ex["targets"]):
                if target > 0:
                    assert token.strip().lower() and any(token.strip().lower() in w or w in token.strip().lower()
                                                         for w in words)
        assert any(max(ex["targets"]) == 10 for ex in unit["exemplars"] if ex["kind"] == "top")
    # every other unit is what the build without the option wrote
    for split in ("train", "valid"):
        before = read_units(plain, split)
        after = [u for u in read_units(out, split) if u["family"] != NARROW_FAMILY]
        assert after == before


def test_cli_refuses_narrow_below_zero_and_with_a_recorded_source(tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "a"), "--narrow", "-1"]) == 2
    assert "--narrow must be 0 (off) or more" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "b"), "--from-store", str(tmp_path), "--narrow",
                 "5"]) == 2
    assert "--narrow adds synthetic units" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
