"""Labelled text, synthetic concepts and datasets on a tiny pool (no network, no model)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ns_dspy.corpus.brown import detokenize_brown, tagged_text
from ns_dspy.errors import ConfigError

from simulator_training.concepts import all_concepts, explanations, pair
from simulator_training.data import build_synthetic, read_manifest, read_units, unit_split
from simulator_training.text import Pool

from tiny_text import brown_files


def test_brown_words_keep_spans_tags_and_sentences():
    tagged = brown_files(1)["ca00"]
    text, words = tagged_text(tagged)
    assert text == detokenize_brown(tagged)
    assert all(text[w.start:w.end] == w.word for w in words)
    assert [w.word for w in words][:4] == ["The", "cat", "sat", "on"]
    assert words[2].tag == "vbd"
    assert words[0].sentence == 0 and words[6].sentence == 0 and words[7].sentence == 1  # "The dog ..." opens the second sentence
    assert '"' in [w.word for w in words]  # `` and '' become double quotes


def _concept(pool, name):
    return next(c for c in all_concepts(pool) if c.name == name)


def _fires_on(pool, concept):
    """The words (as text) of the tokens where the concept is active, over all windows."""
    values = concept.word_values(pool)
    acts = pool.token_values(values, np.arange(pool.n_windows))
    words = pool.word[np.arange(pool.n_windows)][acts > 0]
    return {pool.raws[pool.raw_id[w]] for w in words}


def test_tokens_stand_for_the_last_token_of_their_word(tiny_pool, tiny_tokenizer):
    for w in range(min(20, tiny_pool.n_windows)):
        ids, tokens = tiny_pool.tokens(w)
        for t, word in enumerate(tiny_pool.word[w, :len(ids)]):
            if word >= 0 and not tiny_pool.spread[word]:
                raw = tiny_pool.raws[tiny_pool.raw_id[word]]
                assert raw.endswith(tokens[t].strip()) or tokens[t].strip().endswith(raw[-1]), (raw, tokens[t])


def test_concepts_fire_where_defined(tiny_pool):
    assert _fires_on(tiny_pool, _concept(tiny_pool, "word:the")) == {"The", "the"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "syntax:past_verbs")) == {"sat", "chased", "said", "fell",
                                                                            "opened", "closed"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:def")) == {"def"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:func_name")) == {"add", "upper"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "semantic:animals")) == {"cat", "dog", "horse"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "spelling:-ly")) == {"quickly", "slowly", "early"}
    comments = _concept(tiny_pool, "code:comments")  # spread: every token of the comment fires
    values = comments.word_values(tiny_pool)
    acts = tiny_pool.token_values(values, np.arange(tiny_pool.n_windows))
    assert (acts > 0).sum() > len(_fires_on(tiny_pool, comments))


def test_pairs_and_graded_values(tiny_pool):
    a, b = _concept(tiny_pool, "semantic:animals"), _concept(tiny_pool, "code:def")
    weak = pair(a, b, weak=True).word_values(tiny_pool)
    assert set(np.unique(weak)) == {0.0, 6.0, 10.0}
    late = _concept(tiny_pool, "position:late_in_sentence").word_values(tiny_pool)
    assert len(np.unique(late)) > 3  # graded, not binary
    texts = explanations(pair(a, b, weak=True), random.Random(0), n=4)
    assert len(set(texts)) == 4 and all(b.descriptions[0] in t for t in texts)


def test_dataset_splits_by_unit_and_by_text(tiny_pool, tiny_tokenizer, tmp_path):
    out = build_synthetic(tmp_path / "data", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool,
                          valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=5,
                          pairs_valid=3, progress=False)
    train, valid = read_units(out, "train"), read_units(out, "valid")
    assert train and valid
    assert not {u["unit"] for u in train} & {u["unit"] for u in valid}
    eval_windows = {tuple(tiny_pool.tokens(w)[0]) for w in tiny_pool.windows("eval")}
    train_windows = {tuple(tiny_pool.tokens(w)[0]) for w in tiny_pool.windows("train")}
    for unit in valid:
        assert all(tuple(ex["token_ids"]) in eval_windows for ex in unit["exemplars"])
    for unit in train:
        assert all(tuple(ex["token_ids"]) in train_windows for ex in unit["exemplars"])
        assert any(max(ex["targets"]) > 0 for ex in unit["exemplars"] if ex["kind"] == "top")
    manifest = read_manifest(out)
    assert sum(manifest["units"]["train"].values()) == len(train)
    assert "two-concept" in manifest["units"]["train"]


def test_pool_round_trips(tiny_pool, tmp_path):
    tiny_pool.save(tmp_path / "pool")
    back = Pool.load(tmp_path / "pool")
    assert np.array_equal(back.word, tiny_pool.word) and back.lowers == tiny_pool.lowers
    assert back.tokens(3) == tiny_pool.tokens(3)


def test_malformed_datasets_are_one_line_errors(tmp_path, tiny_pool, tiny_tokenizer):
    with pytest.raises(ConfigError, match="no manifest.json"):
        read_units(tmp_path, "train")
    out = build_synthetic(tmp_path / "d", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, n_top=2,
                          n_random=1, valid_top=2, valid_random=1, pairs_train=0, pairs_valid=0, progress=False)
    (out / "train.jsonl").write_text('{"unit": "x", "family": "word", "explanations": [], "exemplars": []}\n')
    with pytest.raises(ConfigError, match=r"train.jsonl:1 .*no explanation"):
        read_units(out, "train")
    with pytest.raises(ConfigError, match="already exists"):
        build_synthetic(out, tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(ConfigError, match="rebuild"):
        read_manifest(out)


def test_words_in_context_and_punctuation_units_fire_on_the_neighbour(tiny_pool):
    assert _fires_on(tiny_pool, _concept(tiny_pool, "syntax:after_the")) == {"cat", "mat", "dog", "garden", "rain",
                                                                           "market", "sea", "horse"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "syntax:predicate_adjective")) == {"happy", "sad"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "position:mark_open_paren")) == {"("}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "position:after_open_paren")) == {"slowly"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "position:after_comma")) == {"and"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:loop_var")) == {"name"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:first_argument")) == {"a", "'.'", "name", "text", ")"}
    names = [c.name for c in all_concepts(tiny_pool)]
    assert len(names) == len(set(names))
    assert "position:mark_comma" not in names  # the same unit as position:comma


def test_symbol_and_counting_units(tiny_pool):
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:mark_plus")) == {"+"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:after_plus")) == {"b"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:mark_equals")) == {"="}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:mark_dot")) == {"."}  # not the prose full stops
    assert _fires_on(tiny_pool, _concept(tiny_pool, "code:after_comma")) == {"b"}
    assert _fires_on(tiny_pool, _concept(tiny_pool, "position:word_4")) == {"on", "the", "market", "and"}
    first, late = (_concept(tiny_pool, n).word_values(tiny_pool) > 0 for n in ("position:first_5_words", "position:from_word_5"))
    prose = ~tiny_pool.code
    assert np.array_equal(first | late, prose) and np.array_equal(first & late, prose & (tiny_pool.pos == 4))
    comma = _concept(tiny_pool, "position:comma")
    assert any("," in d for d in comma.descriptions) and any("comma" in d for d in comma.descriptions)
    after = [c for c in all_concepts(tiny_pool) if ":after_" in c.name]
    assert {"position:after_open_paren", "code:after_star"} <= {c.name for c in after}
    for concept in after:
        for d in concept.descriptions:  # not "a opening parenthesis", "a asterisk"
            assert not any(f" a {v}" in f" {d}" for v in "aeiou"), d


def test_training_units_that_duplicate_a_validation_unit_are_left_out(tiny_pool, tiny_tokenizer, tmp_path):
    kwargs = dict(tokenizer_name="tiny", pool=tiny_pool, valid_share=0.3, n_top=3, n_random=2, valid_top=3,
                  valid_random=2, pairs_train=0, pairs_valid=0, progress=False)
    out = build_synthetic(tmp_path / "data", tiny_tokenizer, max_r=0.8, **kwargs)
    dropped = read_manifest(out)["left_out_near_valid"]
    train = {u["unit"] for u in read_units(out, "train")}
    valid = {u["unit"] for u in read_units(out, "valid")}
    assert dropped and not set(dropped) & train
    assert all(unit_split(twin, 0.3) == "valid" for twin in dropped.values())  # held out (if too rare, unwritten)
    # checked on every word, not the sample the builder uses: what is left never duplicates a held-out unit
    concepts = {c.name: c for c in all_concepts(tiny_pool)}
    held = [concepts[n].word_values(tiny_pool) for n in valid]
    for name in train:
        x = concepts[name].word_values(tiny_pool)
        for y in held:
            if x.std() > 0 and y.std() > 0:
                assert np.corrcoef(x, y)[0, 1] <= 0.8 + 1e-3, name
    for name, twin in dropped.items():
        assert np.corrcoef(concepts[name].word_values(tiny_pool), concepts[twin].word_values(tiny_pool))[0, 1] > 0.75
    everything = build_synthetic(tmp_path / "all", tiny_tokenizer, max_r=1.01, **kwargs)
    assert read_manifest(everything)["left_out_near_valid"] == {}
    assert set(dropped) <= {u["unit"] for u in read_units(everything, "train")}


def _truncated(doc, k):
    """``doc`` cut after its ``k``-th word (mid-sentence or mid-line): what a causal unit sees up to there."""
    from simulator_training.text import Doc

    end = doc.spans[k - 1][1]
    return Doc(doc.text[:end], doc.source, doc.spans[:k], doc.tags[:k], doc.group[:k], doc.quote[:k],
               doc.paren[:k], doc.spread[:k])


def _causal_mismatches(full, cut, sizes, cut_sizes, concepts_full, concepts_cut):
    bad = []
    for name, concept in concepts_full.items():
        if name not in concepts_cut:
            continue
        a, b = concept.word_values(full), concepts_cut[name].word_values(cut)
        fa = fb = 0
        for n, k in zip(sizes, cut_sizes):
            if not np.array_equal(a[fa:fa + k], b[fb:fb + k]):
                bad.append(name)
                break
            fa, fb = fa + n, fb + k
    return bad


def test_every_unit_is_causal(tiny_tokenizer):
    """A unit's value at a word may depend only on the text up to that word, as a left-to-right model's neuron
    does: cutting every document in the middle of a sentence or line changes no value before the cut."""
    from simulator_training.concepts import Concept, _v
    from simulator_training.text import build_pool, code_documents, prose_documents

    from tiny_text import CODE

    docs = prose_documents(brown_files()) + code_documents([(f"m{k}.py", c * 3) for k, c in enumerate(CODE)], min_words=5)
    cut_docs = [(key, _truncated(doc, len(doc.spans) // 2 + 1)) for key, doc in docs]
    assert any(d.group[-1] == full.group[len(d.group)] for (_, d), (_, full) in zip(cut_docs, docs))  # mid-group
    kw = dict(window=24, min_tokens=8, eval_share=0.3, progress=False)
    full, cut = build_pool(docs, tiny_tokenizer, **kw), build_pool(cut_docs, tiny_tokenizer, **kw)
    sizes, cut_sizes = [len(d.spans) for _, d in docs], [len(d.spans) for _, d in cut_docs]
    by_name = lambda pool: {c.name: c for c in all_concepts(pool)}  # noqa: E731
    concepts_full, concepts_cut = by_name(full), by_name(cut)
    assert len(set(concepts_full) & set(concepts_cut)) > 150
    assert _causal_mismatches(full, cut, sizes, cut_sizes, concepts_full, concepts_cut) == []
    # the check catches units that look ahead
    ahead = {"before_a_word": Concept("before_a_word", "position", ["x"], lambda p: _v(p.next >= 0)),
             "sentence_end": Concept("sentence_end", "position", ["x"], lambda p: _v(p.pos == p.group_len - 2))}
    assert sorted(_causal_mismatches(full, cut, sizes, cut_sizes, ahead, ahead)) == ["before_a_word", "sentence_end"]
