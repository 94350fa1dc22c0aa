"""The opt-in ``condition`` family (``build-data --conditions``): units that fire on a word only under a condition,
checked word by word on a hand-made Brown-format text, for causality, and through build-data; without the option
the dataset is what it was."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ns_dspy.corpus.default import DEFAULT_VERSION
from ns_dspy.simulators.finetuned_adapter import tokenizer_fingerprint

from simulator_training.cli import build_parser, main
from simulator_training.concepts import CONDITION_FAMILY, FAMILIES, all_concepts, condition_concepts
from simulator_training.data import build_synthetic, read_manifest, read_units

from tiny_text import CODE

SENTENCES = [
    "The/at time/nn was/bedz late/jj ./.",
    "A/at time/nn came/vbd ./.",
    "At/in the/at time/nn ,/, we/ppss left/vbd ./.",
    "This/dt time/nn it/pps rained/vbd ./.",
    "He/pps did/dod not/* see/vb the/at old/jj dog/nn ,/, but/cc he/pps saw/vbd a/at cat/nn ./.",
    "She/pps said/vbd ``/`` I/ppss never/rb saw/vbd it/ppo ''/'' and/cc left/vbd ./.",
    "Two/cd dogs/nns ran/vbd to/in 3/cd houses/nns ./.",
    "The/at dog/nn and/cc the/at horse/nn and/cc a/at cow/nn didn't/dod* move/vb ./.",
    "It/pps was/bedz in/in the/at house/nn in/in the/at town/nn in/in May/np on/in the/at hill/nn of/in the/at "
    "year/nn ./.",
]
CONDITION_CODE = [
    "x = 'a'\nprint('b')\ndef f(self, path):\n    return 0  # done\n",
    "# a comment on its own line\ndef g(name):\n    return name.upper()  # shout\n",
]
OPTIONS = {"min_count": 2}  # thresholds for a text of a few dozen distinct words


def _files(n: int = 12) -> dict[str, str]:
    """Brown-format files, one sentence a line; file ``k`` starts at sentence ``k`` (the first in order)."""
    return {f"c{'abcdefghjk'[k % 10]}{k:02d}": "\n".join(SENTENCES[(k + j) % len(SENTENCES)]
                                                          for j in range(len(SENTENCES))) + "\n"
            for k in range(n)}


def _docs():
    from simulator_training.text import code_documents, prose_documents

    code = [(f"m{k}.py", c * 3) for k, c in enumerate(CODE + CONDITION_CODE)]
    return prose_documents(_files()) + code_documents(code, min_words=5)


@pytest.fixture(scope="module")
def pool(tiny_tokenizer):
    from simulator_training.text import build_pool

    return build_pool(_docs(), tiny_tokenizer, window=24, min_tokens=8, eval_share=0.3, progress=False)


@pytest.fixture(scope="module")
def units(pool):
    return {c.name: c for c in condition_concepts(pool, **OPTIONS)}


def _sentences(pool, values):
    """The first document (the sentences in order): per sentence, the words with a value above 0 and the value."""
    n = sum(1 for line in _files()["ca00"].splitlines() for _ in line.split())
    out = []
    for i in range(n):
        if pool.pos[i] == 0:
            out.append([])
        if values[i] > 0:
            out[-1].append((pool.raws[pool.raw_id[i]], float(values[i])))
    assert len(out) == len(SENTENCES)
    return out


def _fires(pool, concept):
    return [[w for w, _ in s] for s in _sentences(pool, concept.word_values(pool))]


def _decoys(pool, concept):
    return [[w for w, _ in s] for s in _sentences(pool, concept.decoy(pool).astype(np.float32))]


def _code_fires(pool, concept):
    values = concept.word_values(pool)
    return {pool.raws[pool.raw_id[i]] for i in np.flatnonzero(values > 0)}


def test_a_word_only_in_one_context(pool, units):
    time = units["condition:time_after_the"]
    assert [s for s in _fires(pool, time) if s] == [["time"], ["time"]]  # "The time", "At the time"
    assert _fires(pool, time)[:4] == [["time"], [], ["time"], []]  # not "A time", "This time"
    assert _decoys(pool, time)[:4] == [[], ["time"], [], ["time"]]  # the same word elsewhere is its decoy
    assert not (time.word_values(pool)[time.decoy(pool)]).any()
    graded = _sentences(pool, units["condition:time_mostly_after_the"].word_values(pool))
    assert graded[:4] == [[("time", 10.0)], [("time", 3.0)], [("time", 10.0)], [("time", 3.0)]]
    opening = units["condition:the_opening"]  # "The" first in a sentence, not "the" later on
    assert [s for s in _fires(pool, opening) if s] == [["The"], ["The"]]
    assert _fires(pool, opening)[7] == ["The"] and "the" in _decoys(pool, opening)[7]
    for unit in (time, units["condition:time_mostly_after_the"], opening):
        assert len(unit.descriptions) >= 3 and unit.family == CONDITION_FAMILY and unit.source == "prose"


def test_negation_scope_ends_at_the_clause(pool, units):
    scope = units["condition:negation_scope"]
    fires = _fires(pool, scope)
    assert fires[4] == ["see", "the", "old", "dog"]  # "did not ..." up to the comma; not "but he saw a cat"
    assert fires[5] == ["saw", "it"]  # "never saw it" inside the quotation, closed by its mark
    assert fires[7] == ["move"]  # after "didn't"
    assert not any(fires[k] for k in (0, 1, 2, 3, 6, 8))
    assert _decoys(pool, scope)[4] == ["not", "but", "he", "saw", "a", "cat"]  # the negator and after the comma
    fading = _sentences(pool, units["condition:negation_scope_fading"].word_values(pool))
    assert fading[4] == [("see", 10.0), ("the", 8.0), ("old", 6.0), ("dog", 4.0)]
    assert _fires(pool, units["condition:negated_verbs"])[4:8] == [["see"], ["saw"], [], ["move"]]
    assert _decoys(pool, units["condition:negated_verbs"])[4] == ["did", "saw"]  # the verbs out of scope
    assert _fires(pool, units["condition:negated_modifiers"])[4] == ["old"]
    assert any("until the end of the clause" in d for d in scope.descriptions)
    assert not any('"see"' in d or '"dog"' in d for d in scope.descriptions)  # described, not listed


def test_quoted_speech_without_the_marks(pool, units):
    assert _fires(pool, units["condition:quoted_words"])[5] == ["I", "never", "saw", "it"]
    assert _decoys(pool, units["condition:quoted_words"])[5] == ['"', '"', "and", "left"]  # marks, narration
    assert _fires(pool, units["condition:quoted_pronouns"])[5] == ["I", "it"]  # not "She"
    assert _fires(pool, units["condition:quoted_verbs"])[5] == ["saw"]  # not "said", "left"
    assert _fires(pool, units["condition:narration_after_quote"])[5] == ["and", "left"]
    for name in ("quoted_words", "quoted_pronouns", "quoted_verbs", "narration_after_quote"):
        fires = _fires(pool, units[f"condition:{name}"])
        assert not any(fires[k] for k in range(len(SENTENCES)) if k != 5), name
    assert any("but not the quote marks themselves" in d for d in units["condition:quoted_words"].descriptions)


def test_a_category_but_not_one_member(pool, units):
    animals = units["condition:semantic_animals_except_dog"]  # "dog" and "dogs" hold half of the animals
    fires, decoys = _fires(pool, animals), _decoys(pool, animals)
    assert fires[4] == ["cat"] and fires[7] == ["horse", "cow"] and fires[6] == []
    assert decoys[4] == ["dog"] and decoys[6] == ["dogs"] and decoys[7] == ["dog"]
    values = animals.word_values(pool)
    assert not values[animals.decoy(pool)].any()  # the excluded member is 0 everywhere
    assert any('except "dog"' in d for d in animals.descriptions)
    assert any('"dog" (and "dogs") is the one exception' in d for d in animals.descriptions)
    prepositions = units["condition:pos_prepositions_except_in"]
    assert _fires(pool, prepositions)[8] == ["on", "of"] and _fires(pool, prepositions)[2] == ["At"]
    assert _decoys(pool, prepositions)[8] == ["in", "in", "in"]
    nouns = units["condition:nouns_without_article"]
    assert _fires(pool, nouns)[4] == ["dog"] and _fires(pool, nouns)[6] == ["dogs", "houses"]  # "old dog", not "a cat"
    assert _decoys(pool, nouns)[4] == ["cat"] and _fires(pool, nouns)[0] == []
    assert _fires(pool, units["condition:after_the_not_noun"])[4] == ["old"]


def test_the_word_after_a_cue_category(pool, units):
    number = units["condition:after_number"]
    assert _fires(pool, number)[6] == ["dogs", "houses"] and _decoys(pool, number)[6] == ["Two", "3"]
    assert sum(map(len, _fires(pool, number))) == 2
    assert _fires(pool, units["condition:after_name"])[8] == ["on"]  # "May on"
    assert _fires(pool, units["condition:after_past_verb"])[5] == ["it"]  # "saw it"; after "said" comes a mark
    names = set(units)
    assert not names & {c.name for c in all_concepts(pool)}
    assert "condition:after_possessive" not in names  # syntax:noun_after_possessive says it already


def test_code_in_a_context(pool, units):
    assert _code_fires(pool, units["condition:def_parameters"]) == {"a", "b", "text", "self", "path", "name"}
    assert _code_fires(pool, units["condition:inline_comments"]) == {"# shout", "# done"}
    assert _code_fires(pool, units["condition:strings_outside_brackets"]) == {"'a'"}  # not '.', 'b'
    assert _code_fires(pool, units["condition:after_code_number"]) == {"# done", "def"}  # "0  # done", "x = 0\ndef"
    for name in ("def_parameters", "inline_comments", "strings_outside_brackets"):
        unit = units[f"condition:{name}"]
        assert unit.source == "code" and unit.decoy(pool).any()
        assert not unit.word_values(pool)[~pool.code].any()


def test_descriptions_are_varied_and_values_in_range(pool, units):
    assert len(units) > 20
    for unit in units.values():
        values = unit.word_values(pool)
        assert values.min() >= 0 and values.max() <= 10, unit.name
        assert len(set(unit.descriptions)) == len(unit.descriptions) >= 3, unit.name
        assert max(len(d) for d in unit.descriptions) > 2 * min(len(d) for d in unit.descriptions), unit.name
    long = [d for u in units.values() for d in u.descriptions if len(d) > 100]
    assert sum(("but" in d or "except" in d or "quiet" in d) for d in long) > len(long) / 2  # exception clauses
    assert all(u.decoy is not None for u in units.values() if "mostly" not in u.name and "fading" not in u.name)


def _truncated(doc, k):
    from simulator_training.text import Doc

    end = doc.spans[k - 1][1]
    return Doc(doc.text[:end], doc.source, doc.spans[:k], doc.tags[:k], doc.group[:k], doc.quote[:k],
               doc.paren[:k], doc.spread[:k])


def test_condition_units_are_causal(pool, units, tiny_tokenizer):
    """Cutting every document after its k-th word changes no value before the cut (the same units, made once,
    applied to the cut text)."""
    from simulator_training.concepts import Concept, _v
    from simulator_training.text import build_pool

    docs = _docs()
    kw = dict(window=24, min_tokens=8, eval_share=0.3, progress=False)
    ahead = Concept("before_a_comma", CONDITION_FAMILY, ["x"], lambda p: _v(p.next == p.lower_index.get(",", -2)))
    caught = set()
    for share in (0.2, 0.35, 0.5, 0.65, 0.8):
        cut_docs = [(key, _truncated(doc, max(1, int(len(doc.spans) * share)))) for key, doc in docs]
        cut = build_pool(cut_docs, tiny_tokenizer, **kw)
        keep = np.concatenate([np.arange(len(d.spans)) < len(c.spans) for (_, d), (_, c) in zip(docs, cut_docs)])
        for unit in [*units.values(), ahead]:
            if not np.array_equal(unit.word_values(pool)[keep], unit.word_values(cut)):
                caught.add(unit.name)
            if unit.decoy is not None:
                assert np.array_equal(unit.decoy(pool)[keep], unit.decoy(cut)), unit.name
    assert caught == {"before_a_comma"}  # the check does catch a unit that looks ahead


# ----------------------------------------------------------------------------------------- in build-data

def _signature(pool, concepts) -> tuple[list[str], str]:
    digest = hashlib.sha256()
    for c in concepts:
        digest.update(c.name.encode())
        digest.update(json.dumps(c.descriptions).encode())
        digest.update(c.word_values(pool).tobytes())
    return [c.name for c in concepts], digest.hexdigest()


def _files_digest(folder):
    return {f: hashlib.sha256((folder / f).read_bytes()).hexdigest() for f in ("train.jsonl", "valid.jsonl",
                                                                               "manifest.json")}


SMALL = dict(valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)


def test_default_units_and_dataset_are_unchanged(pool, tiny_pool, tiny_tokenizer, tmp_path):
    assert CONDITION_FAMILY not in FAMILIES
    for p in (pool, tiny_pool):
        before = _signature(p, all_concepts(p))
        assert not any(n.startswith("condition:") for n in before[0])
        condition_concepts(p, **OPTIONS)  # making (and evaluating) them leaves the default units as they were
        for c in condition_concepts(p, **OPTIONS):
            c.word_values(p)
        assert _signature(p, all_concepts(p)) == before
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    explicit = build_synthetic(tmp_path / "explicit", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                               families=FAMILIES, conditions=False, condition_options=None, **SMALL)
    assert _files_digest(plain) == _files_digest(explicit)
    assert "conditions" not in read_manifest(plain)
    assert not any(u["family"] == CONDITION_FAMILY for s in ("train", "valid") for u in read_units(plain, s))
    flagged = build_synthetic(tmp_path / "flagged", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                              conditions=True, **SMALL)
    assert _files_digest(flagged) != _files_digest(plain) and "conditions" in read_manifest(flagged)


def test_build_data_with_conditions(pool, units, tiny_tokenizer, tmp_path):
    out = build_synthetic(tmp_path / "data", tiny_tokenizer, tokenizer_name="tiny", pool=pool, conditions=True,
                          condition_options=OPTIONS, seed=1, **SMALL)
    manifest = read_manifest(out)
    assert manifest["conditions"] == {"units": len(units), "contrast_windows": 3, "options": OPTIONS}
    train, valid = read_units(out, "train"), read_units(out, "valid")
    made = {u["unit"]: u for u in train + valid if u["family"] == CONDITION_FAMILY}
    assert {u["unit"] for u in train} & set(made) and {u["unit"] for u in valid} & set(made)
    assert set(made) <= set(units)
    assert manifest["units"]["train"][CONDITION_FAMILY] + manifest["units"]["valid"][CONDITION_FAMILY] == len(made)
    contrast = {name: [ex for ex in u["exemplars"] if ex["kind"] == "contrast"] for name, u in made.items()
                if units[name].decoy is not None}
    assert sum(map(len, contrast.values())) > 10
    # a contrast window holds a decoy word (the same word where the condition does not hold), quiet
    by_ids = {tuple(pool.tokens(w)[0]): w for w in range(pool.n_windows)}
    for name, windows in contrast.items():
        unit = units[name]
        decoy = unit.decoy(pool).astype(np.float32)
        for ex in windows:
            w = np.asarray([by_ids[tuple(ex["token_ids"])]])
            quiet = (pool.token_values(decoy, w)[0] > 0) & (pool.token_values(unit.word_values(pool), w)[0] < 1)
            assert quiet.any(), name
    # the family can also be chosen by name, alone
    alone = build_synthetic(tmp_path / "alone", tiny_tokenizer, tokenizer_name="tiny", pool=pool,
                            families=(CONDITION_FAMILY,), condition_options=OPTIONS, **SMALL)
    assert set(read_manifest(alone)["units"]["train"]) == {CONDITION_FAMILY, "two-concept"}


def test_cli_conditions_flag(pool, tiny_llama, tiny_tokenizer, tmp_path, monkeypatch, capsys):
    """``--conditions`` reaches build-data: the command line end to end, on this pool (cached where it looks)."""
    assert build_parser().parse_args(["build-data", "--out", "x"]).conditions is False
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    key = f"{tokenizer_fingerprint(tiny_tokenizer)['fingerprint'][:16]}-w64-{DEFAULT_VERSION}"
    pool.save(tmp_path / "cache" / "simulator-text" / key)  # build-data finds its text pool cached
    args = ["-q", "build-data", "--tokenizer", str(tiny_llama), "--valid-share", "0.3", "--pairs-train", "2",
            "--pairs-valid", "1"]
    assert main([*args, "--out", str(tmp_path / "with"), "--conditions"]) == 0
    manifest = read_manifest(tmp_path / "with")
    assert manifest["conditions"]["units"] == len(condition_concepts(pool))
    assert CONDITION_FAMILY in manifest["units"]["train"]
    units = [u for s in ("train", "valid") for u in read_units(tmp_path / "with", s)]
    assert any(ex["kind"] == "contrast" for u in units if u["family"] == CONDITION_FAMILY for ex in u["exemplars"])
    # without the flag: the dataset of a direct call that does not pass it
    assert main([*args, "--out", str(tmp_path / "without")]) == 0
    direct = build_synthetic(tmp_path / "direct", tiny_tokenizer, tokenizer_name=str(tiny_llama), pool=pool,
                             valid_share=0.3, pairs_train=2, pairs_valid=1, progress=False)
    assert _files_digest(tmp_path / "without") == _files_digest(direct)
    capsys.readouterr()
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--conditions", "--from-run", "r.sqlite"]) == 2
    assert "--conditions" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_tiny_text_pool_has_no_condition_surprises(tiny_pool):
    """On the shared tiny text (no negation): every unit still evaluates, and those that fire fire on prose."""
    for unit in condition_concepts(tiny_pool):
        values = unit.word_values(tiny_pool)
        assert values.shape == tiny_pool.lower_id.shape
        if unit.source == "prose":
            assert not values[tiny_pool.code].any(), unit.name
