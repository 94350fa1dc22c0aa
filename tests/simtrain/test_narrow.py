"""The opt-in ``narrow`` family (``build-data --narrow N``): units that fire on one to three words of a category and
on nothing else, described by listing those words, shown with contrast windows where the category's other words
occur and the unit is quiet; and the opt-in ``neighbour`` family (``--neighbour N``): a unit's concept and the
words right beside it, described as the concept "; also" those words. Through build-data and its command line;
without the options the dataset is what it was."""

from __future__ import annotations

import random
import re

import numpy as np

from ns_dspy.agents.evidence import word_list

from simulator_training.cli import main
from simulator_training.concepts import (FAMILIES, NARROW_FAMILY, NEIGHBOUR_FAMILY, all_concepts, explanations,
                                         narrow_concepts, neighbour_concepts)
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


# --- the neighbour family: a concept and the words beside it -------------------------------------------------

NEAR = dict(min_near=2)


def test_neighbour_units_fire_on_the_concept_and_the_words_beside_it(tiny_pool):
    sources = [c for c in all_concepts(tiny_pool) if c.family in ("semantic", "syntax", "position")]
    units = neighbour_concepts(sources, tiny_pool, 40, seed=1, **NEAR)
    assert units and all(u.family == NEIGHBOUR_FAMILY for u in units) and NEIGHBOUR_FAMILY not in FAMILIES
    by_name = {c.name: c for c in sources}
    for unit in units:
        source = by_name[unit.name.removeprefix("neighbour:")]
        listed_text, _, flag = unit.weak.partition("|")
        words = _listed(listed_text)
        assert 1 <= len(words) <= 3 and listed_text == word_list(words)
        ids = [tiny_pool.lower_index[w.lower()] for w in words]
        concept = source.word_values(tiny_pool)
        listed = np.isin(tiny_pool.lower_id, ids)
        if source.source == "prose":
            listed &= ~tiny_pool.code
        assert not (concept[np.isin(tiny_pool.lower_id, ids)] > 0).any()  # never active in the concept itself
        beside = np.isin(tiny_pool.prev, ids) | np.isin(tiny_pool.next, ids)
        assert (beside & (concept > 0)).any()  # and they do sit beside it
        scale = 6.0 if flag == "weak" else 10.0
        assert np.array_equal(unit.word_values(tiny_pool), np.maximum(concept, listed * scale))
        assert set(unit.descriptions) <= set(source.descriptions)
        assert not any(f'"{w.lower()}"' in d.lower() for d in unit.descriptions for w in words)
        texts = explanations(unit, random.Random(0))
        assert texts and all(listed_text in t for t in texts)  # every phrasing names the list too
    again = neighbour_concepts(sources, tiny_pool, 40, seed=1, **NEAR)
    assert [(u.name, u.weak) for u in again] == [(u.name, u.weak) for u in units]


def test_build_data_adds_neighbour_training_units_and_changes_nothing_else(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    out = build_synthetic(tmp_path / "near", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, neighbour=30,
                          neighbour_options=NEAR, **SMALL)
    manifest = read_manifest(out)
    made = [u for u in read_units(out, "train") if u["family"] == NEIGHBOUR_FAMILY]
    assert made and manifest["neighbour"] == {"units": len(made), "requested": 30, "family": NEIGHBOUR_FAMILY}
    assert not any(u["family"] == NEIGHBOUR_FAMILY for u in read_units(out, "valid"))
    assert all(max(t for ex in u["exemplars"] for t in ex["targets"]) > 0 for u in made)
    for split in ("train", "valid"):
        assert [u for u in read_units(out, split) if u["family"] != NEIGHBOUR_FAMILY] == read_units(plain, split)
    assert main(["-q", "build-data", "--out", str(tmp_path / "bad"), "--neighbour", "-2"]) == 2
