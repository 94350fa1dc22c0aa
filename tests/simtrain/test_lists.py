"""The opt-in ``lists`` family (``build-data --lists N``): units that fire on every listed word in any
capitalisation and nowhere else, described by listing all their words, mostly as ns-dspy's statistical explainer
writes a list; through build-data and its command line, and without the option the dataset is what it was."""

from __future__ import annotations

import random
import re

import numpy as np

from ns_dspy.agents.evidence import word_list

from simulator_training.cli import main
from simulator_training.concepts import FAMILIES, LIST_FAMILY, LIST_SIZES, explanations, list_concepts
from simulator_training.data import build_synthetic, read_manifest, read_units

SMALL = dict(valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)


def _listed(text: str) -> list[str]:
    quoted = re.findall(r'"([^"]+)"', text)
    return quoted or [w.strip() for w in text.split(":", 1)[1].split(",")]


def test_list_units_fire_on_exactly_their_words_in_any_case(tiny_pool):
    units = list_concepts(tiny_pool, 14, seed=3, min_count=2)
    assert len(units) == 14 and all(u.family == LIST_FAMILY for u in units)
    assert LIST_FAMILY not in FAMILIES  # opt-in
    sizes = [len(_listed(u.descriptions[0])) for u in units]
    assert sizes == [min(LIST_SIZES[i % len(LIST_SIZES)], max(sizes)) for i in range(14)] and max(sizes) >= 8
    for unit in units:
        words = _listed(unit.descriptions[0])
        assert unit.descriptions[0] == word_list(words)  # the statistical explainer's own form
        assert all(set(map(str.lower, _listed(d))) == set(map(str.lower, words)) for d in unit.descriptions)
        values = unit.word_values(tiny_pool)
        wanted = {w.lower() for w in words}
        expected = np.array([tiny_pool.lowers[i] in wanted for i in tiny_pool.lower_id]) * 10.0
        assert np.array_equal(values, expected) and values.max() == 10.0
        found = np.bincount(tiny_pool.lower_id, minlength=len(tiny_pool.lowers))[
            [tiny_pool.lower_index[w] for w in wanted]]
        assert found.max() <= 0.5 * found.sum()  # no one word makes the unit its own
    # seeded: the same units again, others with another seed
    assert [u.descriptions for u in list_concepts(tiny_pool, 14, seed=3, min_count=2)] == [u.descriptions for u in units]
    assert [u.descriptions for u in list_concepts(tiny_pool, 14, seed=4, min_count=2)] != [u.descriptions for u in units]
    texts = explanations(units[0], random.Random(0))
    assert texts and all(any(w.lower() in t.lower() for w in _listed(units[0].descriptions[0])) for t in texts)


def test_build_data_with_lists_and_without(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    assert "lists" not in read_manifest(plain)
    assert not any(u["family"] == LIST_FAMILY for s in ("train", "valid") for u in read_units(plain, s))
    out = build_synthetic(tmp_path / "lists", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, lists=10, **SMALL)
    manifest = read_manifest(out)
    assert manifest["lists"] == {"units": 10, "requested": 10}
    made = [u for s in ("train", "valid") for u in read_units(out, s) if u["family"] == LIST_FAMILY]
    assert made and sum(manifest["units"][s].get(LIST_FAMILY, 0) for s in ("train", "valid")) == len(made)
    for unit in made:  # every top window holds a listed word at 10
        assert all(max(ex["targets"]) == 10 for ex in unit["exemplars"] if ex["kind"] == "top")


def test_cli_refuses_lists_with_from_run_and_below_zero(tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-run", "run.sqlite", "--lists", "5"]) != 0
    assert "--lists adds synthetic units" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--lists", "-1"]) != 0
    assert "--lists must be 0 (off) or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
