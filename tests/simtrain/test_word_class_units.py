"""The opt-in ``word_class`` family (``build-data --word-classes N``): units that fire on every token whose text
ns-dspy's lexicon gives one word class (plural nouns, forms of be, ...), as the statistical explainer names them,
N replicas per class on different windows, all for training; the parts of speech held out as ``syntax``
validation units are left out; without the option the dataset is what it was."""

from __future__ import annotations

from ns_dspy.agents.evidence import token_key
from ns_dspy.agents.word_classes import WORD_CLASSES, lexicon
from simulator_training.cli import main
from simulator_training.data import build_synthetic, read_manifest, read_units, unit_split
from simulator_training.whitespace import WORD_CLASS_FAMILY, word_class_units

SMALL = dict(valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)


def test_targets_follow_the_lexicon_and_held_out_parts_of_speech_are_left_out(tiny_pool):
    units = word_class_units(tiny_pool, replicas=2, n_top=3, n_random=2, valid_share=0.3)
    names = {u["unit"].split(":")[1].split("#")[0] for u in units}
    assert names and names <= set(WORD_CLASSES)
    held_out = {n for n in WORD_CLASSES if unit_split(f"syntax:{n}", 0.3) == "valid"}
    assert held_out and not names & held_out
    words = lexicon()
    for unit in units:
        name = unit["unit"].split(":")[1].split("#")[0]
        assert unit["family"] == WORD_CLASS_FAMILY and len(unit["explanations"]) >= 2
        assert any(d in e for e in unit["explanations"] for d in WORD_CLASSES[name][1])
        tops = [ex for ex in unit["exemplars"] if ex["kind"] == "top"]
        assert len(tops) == 3 and all(max(ex["targets"]) == 10 for ex in tops)
        for ex in unit["exemplars"]:
            assert ex["targets"] == [10.0 if words.get(token_key(t)) == name else 0.0 for t in ex["tokens"]]
    assert word_class_units(tiny_pool, replicas=2, n_top=3, n_random=2, valid_share=0.3) == units  # seeded


def test_build_data_with_word_classes_and_without(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    out = build_synthetic(tmp_path / "wc", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, word_classes=2,
                          **SMALL)
    made = [u for u in read_units(out, "train") if u["family"] == WORD_CLASS_FAMILY]
    assert made and read_manifest(out)["word_classes"] == {"units": len(made), "replicas": 2}
    for split in ("train", "valid"):  # every other unit is as it was without the option
        assert [u for u in read_units(out, split) if u["family"] != WORD_CLASS_FAMILY] == read_units(plain, split)
    assert "word_classes" not in read_manifest(plain)


def test_cli_refuses_word_classes_below_zero(tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--word-classes", "-1"]) != 0
    assert "--word-classes must be 0 (off) or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
