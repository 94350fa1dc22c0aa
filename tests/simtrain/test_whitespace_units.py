"""The opt-in ``whitespace`` family (``build-data --whitespace N``): units whose values are set per token by the
token's own text (line breaks, blank lines, indentation, spaces), N replicas per class on different windows, all
for training; without the option the dataset is what it was."""

from __future__ import annotations


from simulator_training.cli import main
from simulator_training.data import build_synthetic, read_manifest, read_units
from simulator_training.whitespace import CLASSES, whitespace_units

SMALL = dict(valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2, pairs_train=3, pairs_valid=2,
             progress=False)


def test_targets_are_set_by_each_token_s_text(tiny_pool):
    units = whitespace_units(tiny_pool, replicas=2, n_top=3, n_random=2)
    names = {u["unit"].split("#")[0] for u in units}
    assert {"whitespace:line_break", "whitespace:space"} <= names  # what the tiny tokenizer makes of the text
    for unit in units:
        holds = CLASSES[unit["unit"].split(":")[1].split("#")[0]][0]
        assert unit["family"] == "whitespace" and len(unit["explanations"]) >= 2
        tops = [ex for ex in unit["exemplars"] if ex["kind"] == "top"]
        assert len(tops) == 3 and all(max(ex["targets"]) == 10 for ex in tops)  # every top window shows the class
        for ex in unit["exemplars"]:
            assert ex["targets"] == [10.0 if holds(t) else 0.0 for t in ex["tokens"]]
            assert [tiny_pool.token_strings[i] for i in ex["token_ids"]] == ex["tokens"]
    breaks = [u for u in units if u["unit"].startswith("whitespace:line_break#")]
    assert len(breaks) == 2 and breaks[0]["exemplars"] != breaks[1]["exemplars"]  # replicas draw other windows
    assert whitespace_units(tiny_pool, replicas=2, n_top=3, n_random=2) == units  # seeded


def test_build_data_with_whitespace_and_without(tiny_pool, tiny_tokenizer, tmp_path):
    plain = build_synthetic(tmp_path / "plain", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, **SMALL)
    out = build_synthetic(tmp_path / "ws", tiny_tokenizer, tokenizer_name="tiny", pool=tiny_pool, whitespace=2,
                          **SMALL)
    made = [u for u in read_units(out, "train") if u["family"] == "whitespace"]
    assert made and read_manifest(out)["whitespace"] == {"units": len(made), "replicas": 2}
    assert not any(u["family"] == "whitespace" for u in read_units(out, "valid"))  # measured on real units
    for split in ("train", "valid"):  # every other unit is as it was without the option
        assert [u for u in read_units(out, split) if u["family"] != "whitespace"] == read_units(plain, split)
    assert "whitespace" not in read_manifest(plain)


def test_cli_refuses_whitespace_with_from_run_and_below_zero(tmp_path, capsys):
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-run", "run.sqlite",
                 "--whitespace", "2"]) != 0
    assert "--whitespace adds synthetic units" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--whitespace", "-1"]) != 0
    assert "--whitespace must be 0 (off) or more" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
