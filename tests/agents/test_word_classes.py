"""Word classes in the statistical explainer (``ExplainConfig.word_classes``): a neuron that follows plural nouns
or forms of *be* spreads its activation over more words than a list can name, so the explainer can add an
explanation of a word class to its chosen set, kept only when the set then scores higher on valid. The lexicon
that says which class a token is ships with the package (``ns_dspy/agents/data/word_classes.tsv``, built from the
Brown corpus's tags). The reader here is the keyword simulator, which also reads "plural nouns" as 10 on every
token the lexicon calls a plural noun."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import word_class_explanations
from ns_dspy.agents.word_classes import LEXICON, WORD_CLASSES, build_lexicon, lexicon, write_lexicon
from ns_dspy.config import ExplainConfig
from ns_dspy.scoring import HeldOut
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId
from tests.agents.stats_only import stats_only
from tests.scoring.test_polarity import _exemplars as windows

UNIT = UnitId(0, 1)
TRAIN_PLURALS = [" years", " men", " days", " things", " children"]
VALID_PLURALS = [" hands", " women", " eyes", " words", " times"]  # plural nouns that train never shows
OTHERS = [" dog", " cat", " mat", " sat", " ran", " on", " sky", " big", " the", " was"]
PLURAL = WORD_CLASSES["plural_nouns"][1][0]


def test_a_word_enters_the_lexicon_with_the_class_most_of_its_occurrences_carry():
    pairs = ([("years", "nns")] * 3 + [("Years", "nns")] + [("run", "nn")] * 2 + [("run", "vb")] * 2
             + [("rare", "jj")] * 2 + [("odd", "xx")] * 3 + [("odd", "jj")] * 2 + [("The", "at")] * 5
             + [("is", "bez")] * 9 + [("is", "nn")] + [("-", "in")] * 3 + [("$5", "nns")] * 3 + [("12", "cd")] * 3)
    assert build_lexicon(pairs) == {"12": "numbers_pos", "is": "be_forms", "the": "articles", "years": "plural_nouns"}
    # "run": a noun as often as a verb; "rare": seen twice; "odd": mostly a tag of no class; "-" and "$5": no letter
    assert build_lexicon(pairs, min_seen=2)["rare"] == "adjectives"
    assert "run" in build_lexicon(pairs, min_share=0.5)


def test_the_shipped_lexicon_reads_back_and_refuses_a_file_that_is_not_one(tmp_path):
    shipped = lexicon()
    assert len(shipped) > 15000 and set(shipped.values()) <= set(WORD_CLASSES)
    assert {shipped[w] for w in ("years", "men", "children")} == {"plural_nouns"}
    assert (shipped["is"], shipped["the"], shipped["of"]) == ("be_forms", "articles", "prepositions")
    assert LEXICON.read_text().startswith("# ns-dspy word classes")
    path = tmp_path / "lex.tsv"
    write_lexicon(path, {"dogs": "plural_nouns"}, "test")
    assert lexicon(path) == {"dogs": "plural_nouns"}
    path.write_text("dogs\tplural_nouns\n")
    with pytest.raises(ValueError, match="not a word-class lexicon"):
        lexicon(path)
    write_lexicon(path, {"dogs": "plurals"}, "test")
    with pytest.raises(ValueError, match="unknown word class 'plurals'"):
        lexicon(path)


def _exemplars(split, seed, values, plurals):
    return windows(split, seed, values, n_top=16, n_random=16, vocab=plurals + OTHERS, quiet=0.0)


def test_the_classes_the_activation_follows_are_named_in_their_direction():
    up = _exemplars("train", 0, dict.fromkeys(TRAIN_PLURALS, 6.0), TRAIN_PLURALS)
    assert word_class_explanations(up)[0] == PLURAL
    down = _exemplars("train", 0, {**dict.fromkeys(TRAIN_PLURALS, -4.0), " dog": 5.0}, TRAIN_PLURALS)
    texts = word_class_explanations(down, most=5)
    assert f"(negative) {PLURAL}" in texts and PLURAL not in texts
    assert WORD_CLASSES["nouns"][1][0] in texts  # " dog" and the other singular nouns carry the rest
    assert len(word_class_explanations(down, most=1)) == 1
    # a class with fewer than min_count tokens in train is not named
    assert PLURAL not in word_class_explanations(up, min_count=10 ** 6)
    assert word_class_explanations(up, min_r=1.01) == []  # a class must follow the activation at least min_r
    flat = [Exemplar(tokens=ex.tokens, activations=np.ones(len(ex.tokens), np.float32), split="train", kind=ex.kind)
            for ex in up]
    assert word_class_explanations(flat) == []  # nothing varies
    with pytest.raises(ValueError, match="train exemplars only"):
        word_class_explanations(_exemplars("valid", 0, {}, TRAIN_PLURALS))


class PluralReader(KeywordSimulator):
    """The keyword simulator, plus "plural nouns" read as every token the lexicon calls a plural noun."""

    def simulate(self, explanations, exemplars):
        out = super().simulate(explanations, exemplars)
        classes = lexicon()
        for i, text in enumerate(explanations):
            if text == PLURAL:
                out[i] = [np.array([10.0 if classes.get(t.strip()) == "plural_nouns" else 0.0 for t in ex.tokens],
                                   np.float32) for ex in exemplars]
        return out


def test_a_word_class_joins_the_set_when_it_helps_on_valid():
    values = {" dog": 8.0, **dict.fromkeys(TRAIN_PLURALS + VALID_PLURALS, 6.0)}
    train = _exemplars("train", 0, values, TRAIN_PLURALS)
    valid = HeldOut(UNIT, "valid", tuple(_exemplars("valid", 1, values, VALID_PLURALS)))
    reader = PluralReader()
    on = stats_only(reader, word_classes=True)(train=train, valid=valid)
    off = stats_only(reader, word_classes=False)(train=train, valid=valid)
    assert PLURAL not in off.explanations
    assert on.explanations[-1] == PLURAL and on.explanations[:-1] == off.explanations
    assert on.polysemantic > off.polysemantic + 0.1  # the lists name train's plurals only
    assert on.trace.statistical.explanations == on.explanations
    # a reader that cannot read it gains nothing from it on valid, and the set stays as it was
    plain = stats_only(KeywordSimulator(), word_classes=True)(train=train, valid=valid)
    without = stats_only(KeywordSimulator(), word_classes=False)(train=train, valid=valid)
    assert plain.explanations == without.explanations
    assert ExplainConfig().word_classes is True  # on by default
