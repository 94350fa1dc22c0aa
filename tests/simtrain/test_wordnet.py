"""The WordNet reader, its categories and the ``wordnet`` units, on a tiny hand-written WordNet 3.0 database in
the real file format (tests/simtrain/wordnet_db, written by its make_db.py) and the tiny text pool."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from ns_dspy.errors import ConfigError

from simulator_training.cli import main
from simulator_training.concepts import explanations, wordnet_concepts
from simulator_training.data import build_synthetic, read_manifest, read_units
from simulator_training.wordnet import RANK_VALUES, WordNet, _Table, categories, load_wordnet

DB = Path(__file__).parent / "wordnet_db"
LOOSE = dict(min_forms=2, max_forms=50, min_count=1, min_occurrences=1, max_share=1.0, max_top_share=1.0,
             max_jaccard=1.0, min_noun_depth=1, min_decoys=2)  # thresholds for a text of a few dozen distinct words


@pytest.fixture(scope="module")
def wn():
    return load_wordnet(DB)


def _key(wn, lemma, pos, sense=1):
    return wn.senses(lemma, pos)[sense - 1]


def _fires_on(pool, values):
    acts = pool.token_values(values, np.arange(pool.n_windows))
    words = pool.word[np.arange(pool.n_windows)][acts > 0]
    return {pool.raws[pool.raw_id[w]] for w in words}


def test_reader_parses_lemmas_pointers_and_glosses(wn):
    dog = wn.synset(_key(wn, "dog", "n"))
    assert dog.lemmas == ("dog", "domestic_dog", "Canis_familiaris") and dog.lexname == "noun.animal"
    assert dog.definition == "a member of the genus Canis" and '"the dog barked all night"' in dog.gloss
    mammal = _key(wn, "mammal", "n")
    assert wn.hypernyms(dog.key) == [mammal]
    assert {wn.synset(k).lemmas[0] for k in wn.hyponyms(mammal)} == {"cat", "dog", "horse"}
    assert sorted(s for s, _ in wn.synset(mammal).pointers) == ["@", "~", "~", "~"]  # hyponyms stored too
    assert wn.name(dog.key) == "dog.n.01" and wn.name(_key(wn, "cat", "n", 2)) == "guy.n.01"
    assert wn.depth(_key(wn, "entity", "n")) == 0 and wn.depth(dog.key) == 4
    assert len(wn.closure(_key(wn, "animal", "n"))) == 5  # animal, mammal, cat, dog, horse
    # adjectives: satellites point to their head, heads to their attribute noun
    glad = wn.synset(_key(wn, "glad", "a"))
    assert glad.ss_type == "s" and glad.targets("&") == [_key(wn, "happy", "a")]
    assert wn.synset(_key(wn, "happy", "a")).targets("=") == [_key(wn, "happiness", "n")]
    # verbs: frames after the pointers do not disturb the parse; the exception list lemmatizes
    assert wn.synset(_key(wn, "chase", "v")).definition == "go after with the intent to catch"
    assert wn.lemmatize("fell", "v") == ["fall"] and wn.lemmatize("chased", "v") == ["chase"]
    assert wn.lemmatize("Rivers", "n") == ["river"] and wn.lemmatize("flowing", "v") == ["flow"]
    assert wn.lemmatize("cats", "v") == []


def test_membership_inflection_polysemy_and_parts_of_speech(wn, tiny_pool):
    cats = {c.name: c for c in categories(wn, tiny_pool, 50, **LOOSE)}
    animal = cats["animal.n.01"]
    assert animal.members["n"] == {"cat": 10.0, "dog": 10.0, "horse": 10.0}
    assert _fires_on(tiny_pool, animal.word_values(tiny_pool)) == {"cat", "dog", "horse"}
    water = cats["body_of_water.n.01"]  # "Rivers" (nns) is an inflected member
    assert _fires_on(tiny_pool, water.word_values(tiny_pool)) == {"Rivers", "sea"}
    # polysemy: "cat" means "guy" only in its second sense, so it is a weaker member of "man"
    assert _Table(wn, tiny_pool).members(_key(wn, "man", "n")) == {"n": {"cat": RANK_VALUES[1]}}
    single = {c.name: c for c in categories(wn, tiny_pool, 50, **{**LOOSE, "min_forms": 1})}
    assert "man.n.01" not in single  # no word of the text means it in its first sense
    assert "organism.n.01" not in single and "person.n.01" not in single  # too generic
    # verbs by their tag only: "fell" via the exception list, "chased" by the -ed rule
    travel = cats["travel.v.01"]
    assert _fires_on(tiny_pool, travel.word_values(tiny_pool)) == {"chased", "fell", "flow"}
    # adjectives through the attribute of their cluster head
    assert _fires_on(tiny_pool, cats["adj:happiness.n.01"].word_values(tiny_pool)) == {"happy", "sad"}
    assert "entity.n.01" not in cats  # generic
    # decoys: the sibling category's main-sense members, which are quiet
    assert set(water.decoy_forms()) == {"garden", "market"}
    quiet = water.word_values(tiny_pool)[water.decoy_mask(tiny_pool)]
    assert len(quiet) and (quiet == 0).all()
    # seeded and deterministic
    again = categories(wn, tiny_pool, 3, seed=5, **LOOSE)
    assert [c.key for c in again] == [c.key for c in categories(wn, tiny_pool, 3, seed=5, **LOOSE)]


def test_units_fire_on_members_and_mostly_do_not_list_them(wn, tiny_pool):
    cats = categories(wn, tiny_pool, 50, **LOOSE)
    units = wordnet_concepts(cats, seed=0)
    assert {u.family for u in units} == {"wordnet"} and len(units) == len(cats)
    for cat, unit in zip(cats, units):
        values = unit.word_values(tiny_pool)
        members = {w for forms in cat.members.values() for w in forms}
        active = {tiny_pool.lowers[i] for i in np.unique(tiny_pool.lower_id[values > 0])}
        assert active and active <= members, (unit.name, active, members)
        assert not values[tiny_pool.code].any()
        plain = [d for d in unit.descriptions if '"' not in d]
        assert len(plain) > len(unit.descriptions) / 2, unit.descriptions  # mostly without listing members
        for d in unit.descriptions:
            head, *exception = re.split(r"(?:;|, and) (?:not|quiet)", d, maxsplit=1)
            assert set(re.findall(r'"([^"]+)"', head)) <= members, (d, members)  # examples are members
            assert not set(re.findall(r'"([^"]+)"', "".join(exception))) & members, d  # exceptions are not
        long = [d for d in unit.descriptions if len(d) > 120]
        assert long, unit.descriptions
        texts = explanations(unit, random.Random(0), n=6)
        assert len(set(texts)) == 6
    water = next(u for u, c in zip(units, cats) if c.name == "body_of_water.n.01")
    assert any("garden" in d or "market" in d for d in water.descriptions)  # the decoys in an exception clause
    assert any("a point or extent in space" in d or "covered with water" in d for d in water.descriptions)


def test_build_data_adds_wordnet_units_to_both_splits(wn, tiny_pool, tiny_tokenizer, tmp_path):
    out = build_synthetic(tmp_path / "data", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                          valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=2,
                          pairs_valid=1, progress=False, wordnet=DB, wordnet_units=20, wordnet_options=LOOSE,
                          seed=1)  # seed 1 holds out two of the tiny database's categories
    train, valid = read_units(out, "train"), read_units(out, "valid")
    wn_train = {u["unit"] for u in train if u["family"] == "wordnet"}
    wn_valid = {u["unit"] for u in valid if u["family"] == "wordnet"}
    assert wn_train and wn_valid and not wn_train & wn_valid
    manifest = read_manifest(out)
    assert manifest["wordnet"]["categories"] >= len(wn_train | wn_valid)
    assert "wordnet" in manifest["units"]["train"] and "wordnet" in manifest["units"]["valid"]
    contrast = [ex for u in train + valid if u["family"] == "wordnet" for ex in u["exemplars"]
                if ex["kind"] == "contrast"]
    assert contrast  # windows with a sibling category's words, where the unit is quiet on them
    eval_windows = {tuple(tiny_pool.tokens(w)[0]) for w in tiny_pool.windows("eval")}
    for unit in valid:
        assert all(tuple(ex["token_ids"]) in eval_windows for ex in unit["exemplars"])
    # without the option nothing changes: no wordnet unit, no manifest entry
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                            valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=2,
                            pairs_valid=1, progress=False)
    assert "wordnet" not in read_manifest(plain)
    assert not any(u["family"] == "wordnet" for s in ("train", "valid") for u in read_units(plain, s))


def test_bad_wordnet_folder_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "wn"
    shutil.copytree(DB, bad)
    lines = (bad / "data.noun").read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace("00000", "00009", 1)  # an offset that is not the line's byte offset
    (bad / "data.noun").write_text("".join(lines))
    out = tmp_path / "out"
    for folder, why in ((tmp_path / "missing", "does not exist"), (tmp_path, "no data.noun"),
                        (bad, "data.noun:4 is not a WordNet 3.0 database line")):
        assert main(["-q", "build-data", "--out", str(out), "--wordnet", str(folder)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and why in err, err
        assert not out.exists()
    (bad / "data.noun").write_text((DB / "data.noun").read_text())
    (bad / "index.noun").write_text("dog n 1 0 1 0 99999999  \n")
    with pytest.raises(ConfigError, match="sense n:99999999 is not in data.noun"):
        WordNet(bad)
