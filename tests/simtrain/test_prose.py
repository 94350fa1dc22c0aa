"""Long explanations (build-data --long): true to the unit's data, additive to the dataset, read by eval --style
long and by training; training can start from an adapter (--init)."""

from __future__ import annotations

import json
import random
import re
from types import SimpleNamespace

import numpy as np
import pytest

from ns_dspy.errors import ConfigError
from ns_dspy.simulators.keyword import KeywordSimulator

from simulator_training.cli import main
from simulator_training.data import build_synthetic, read_units
from simulator_training.evaluate import evaluate, restyle
from simulator_training.prose import examples_and_exceptions, long_explanations
from simulator_training.train import TrainConfig, train


def _ex(tokens, acts):
    return SimpleNamespace(tokens=tokens, activations=np.asarray(acts, float))


def test_examples_are_active_and_exceptions_quiet_on_every_occurrence():
    exemplars = [
        _ex([" the", " cat", " sat", " on", " the", " mat"], [0, 9, 0, 0, 0, 0]),
        _ex([" a", " dog", " sat", " near", " cat"], [0, 8, 0, 0, 7]),
        _ex([" the", " dog", " ran", " sat"], [0, 6, 0, 2]),  # "sat" once active: never an exception
        _ex([" my", " bird", " ran"], [0, 3, 0]),  # "bird": mean 3, not a reliable example
    ]
    examples, exceptions = examples_and_exceptions(exemplars)
    assert examples == ["cat", "dog"]  # commonest first; each mean >= 5
    assert "sat" not in exceptions and "bird" not in exceptions
    assert set(exceptions) <= {"the", "a", "ran", "on", "near", "my"}
    assert "the" in exceptions  # next to an active token three times, quiet on all four occurrences


def test_long_explanations_quote_only_what_is_true():
    rng = random.Random(0)
    exemplars = [_ex([" he", " was", " sad", " and", " angry"], [0, 0, 9, 0, 8]),
                 _ex([" she", " felt", " happy", " and", " calm"], [0, 0, 7, 0, 6]),
                 _ex([" and", " then", " sad"], [0, 0, 9])]
    texts = long_explanations(["words for emotions", "emotion words"], exemplars, rng, n=6)
    assert len(texts) == len(set(texts)) == 6
    examples, exceptions = examples_and_exceptions(exemplars)
    for text in texts:
        assert "emotion" in text and len(text.split()) >= 5
        assert set(re.findall(r'"([^"]+)"', text)) <= set(examples) | set(exceptions)
    assert examples and exceptions and not set(examples) & set(exceptions)
    assert any(f'"{w}"' in t for t in texts for w in exceptions)  # some name an exception
    # a description that quotes words itself gets no further quoted examples
    quoted = long_explanations(['the word "sad"'], exemplars, random.Random(1), n=4)
    assert all(t.count('"') in (2, 4, 6) and 'e.g.' not in t for t in quoted)


def test_long_explanations_of_a_two_concept_unit_name_both_parts():
    exemplars = [_ex([" red", " car", " 5"], [9, 0, 5])]
    texts = long_explanations(["colour words"], exemplars, random.Random(0), n=4, weak="numbers|weak")
    assert all("colour words" in t and "numbers" in t for t in texts)


@pytest.fixture(scope="module")
def both(tiny_pool, tiny_tokenizer, tmp_path_factory):
    base = tmp_path_factory.mktemp("prose")
    kw = dict(tokenizer_name="tiny", pool=tiny_pool, valid_share=0.3, n_top=3, n_random=2, valid_top=3,
              valid_random=2, pairs_train=6, pairs_valid=3, progress=False)
    plain = build_synthetic(base / "plain", tiny_tokenizer, **kw)
    long = build_synthetic(base / "long", tiny_tokenizer, long=3, **kw)
    return plain, long


def test_long_explanations_are_added_without_changing_the_dataset(both):
    plain, long = both
    for split in ("train", "valid"):
        a, b = read_units(plain, split), read_units(long, split)
        assert [u["unit"] for u in a] == [u["unit"] for u in b]
        for u, v in zip(a, b):
            assert "long_explanations" not in u
            assert {k: v[k] for k in u} == u  # same exemplars, targets and short explanations
            assert 1 <= len(v["long_explanations"]) <= 3
            assert all(len(t.split()) > 4 for t in v["long_explanations"])
    assert json.loads((long / "manifest.json").read_text())["long_explanations"] == 3


def test_eval_reads_the_long_style_on_the_same_tokens(both, capsys):
    plain, long = both
    units = read_units(long, "valid")
    long_units = restyle(units, "long")
    assert [u["exemplars"] for u in long_units] == [u["exemplars"] for u in units]
    assert all(u["explanations"] == u["long_explanations"] for u in long_units)
    assert restyle(units, "short") is units
    rows = evaluate(KeywordSimulator(), long_units, progress=False)
    assert all(r["explanation"] in u["long_explanations"] for r, u in zip(rows, long_units))
    with pytest.raises(ConfigError, match="build-data --long"):
        restyle(read_units(plain, "valid"), "long")
    assert main(["-q", "eval", "--simulator", "keyword", "--data", str(plain), "--style", "long"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--long" in err and len(err.splitlines()) == 1


def test_training_draws_long_explanations_too(both, drawn_explanations):
    _, long = both
    units = read_units(long, "train")
    seen = drawn_explanations(units)
    longs = {t for u in units for t in u["long_explanations"]}
    shorts = {t for u in units for t in u["explanations"]}
    assert set(seen) <= longs | shorts
    assert 0.2 < sum(t in longs for t in seen) / len(seen) < 0.6  # 3 long beside up to 6 short per unit


def _config(tiny_llama, **kw):
    base = dict(base_model=str(tiny_llama), rank=4, alpha=8.0, dtype="float32", steps=3, batch_size=4,
                lr=3e-3, head_lr=1e-2, warmup=1, checkpoint_every=10, max_tokens=64)
    return TrainConfig(**{**base, **kw})


def test_training_can_start_from_an_adapter(tiny_llama, both, tmp_path):
    from safetensors.torch import load_file

    plain, long = both
    first = train(_config(tiny_llama, steps=6), plain, tmp_path / "a", device="cpu", progress=False)
    # zero steps from it: the same weights come out (the starting point is the adapter, not fresh LoRA)
    same = train(_config(tiny_llama, steps=1, lr=0.0, head_lr=0.0, init=str(first)), long, tmp_path / "b",
                 device="cpu", progress=False)
    wa, wb = load_file(str(first / "adapter_model.safetensors")), load_file(str(same / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6
    fresh = train(_config(tiny_llama, steps=1, lr=0.0, head_lr=0.0), long, tmp_path / "c", device="cpu",
                  progress=False)
    wc = load_file(str(fresh / "adapter_model.safetensors"))
    assert max(float((wa[k] - wc[k]).abs().max()) for k in wa) > 1e-3
    manifest = json.loads((same / "ns_dspy_simulator.json").read_text())
    assert manifest["training"]["init_from"]["folder"] == str(first)
    assert len(manifest["training"]["init_from"]["sha256"]) == 64
    # another rank is refused in one line before any step
    with pytest.raises(ConfigError, match="rank 4 .ours 8."):
        train(_config(tiny_llama, rank=8, init=str(first)), long, tmp_path / "d", device="cpu", progress=False)
    assert not (tmp_path / "d" / "train_log.jsonl").exists()
