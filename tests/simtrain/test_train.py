"""Training a tiny Llama simulator for a few steps on CPU: loss goes down, resume, export, reload, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ns_dspy.errors import ConfigError, ModelError
from ns_dspy.simulators.finetuned import FinetunedSimulator
from ns_dspy.simulators.finetuned_adapter import MANIFEST
from ns_dspy.simulators.keyword import KeywordSimulator

from simulator_training.cli import main
from simulator_training.data import build_synthetic, read_units
from simulator_training.evaluate import evaluate, markdown, summarise
from simulator_training.export import export
from simulator_training.train import TrainConfig, bin_loss, train


@pytest.fixture(scope="module")
def data(tiny_pool, tiny_tokenizer, tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("simdata") / "data", tiny_tokenizer, tokenizer_name="tiny",
                           pool=tiny_pool, valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2,
                           pairs_train=10, pairs_valid=4, progress=False)


def _config(tiny_llama, **kw):
    base = dict(base_model=str(tiny_llama), rank=4, alpha=8.0, dtype="float32", steps=40, batch_size=4,
                lr=3e-3, head_lr=1e-2, warmup=2, checkpoint_every=10, max_tokens=64)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def run(tiny_llama, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("simrun") / "run"
    adapter = train(_config(tiny_llama), data, out, device="cpu", progress=False)
    return out, adapter


def test_bin_loss_is_two_hot_and_masked():
    import torch

    logits = torch.zeros(1, 3, 11)
    logits[0, 0, 6], logits[0, 0, 7] = 5.0, 5.0  # confident between 6 and 7
    targets = torch.tensor([[6.5, 0.0, 3.0]])
    only_first = bin_loss(logits, targets, torch.tensor([[True, False, False]]))
    assert float(only_first) < 0.8
    with_third = bin_loss(logits, targets, torch.tensor([[True, False, True]]))
    assert float(with_third) > float(only_first)


def test_loss_goes_down_and_the_adapter_reloads(run, tiny_llama):
    out, adapter = run
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:4])
    manifest = json.loads((adapter / MANIFEST).read_text())
    assert manifest["training"]["steps_done"] == 40 and manifest["base_model"] == str(tiny_llama)
    sim = FinetunedSimulator.from_pretrained(adapter, dtype="float32", device="cpu")
    assert sim.manifest["training"]["rank"] == 4


def test_predictions_change_with_the_explanation(run, data):
    _, adapter = run
    sim = FinetunedSimulator.from_pretrained(adapter, dtype="float32", device="cpu")
    unit = read_units(data, "train")[0]
    from simulator_training.evaluate import _exemplars

    exemplars = _exemplars(unit)
    a, b = sim.simulate(["the word \"the\"", "Python comments"], exemplars)
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) > 1e-3


def test_resume_continues_from_the_checkpoint(tiny_llama, data, tmp_path):
    out = tmp_path / "run"
    first = train(_config(tiny_llama, steps=20), data, out, device="cpu", progress=False, max_minutes=0.0)
    assert first.name == "checkpoint"  # stopped by the time budget after one step
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 1
    adapter = train(_config(tiny_llama, steps=20), data, out, device="cpu", progress=False)
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))  # no step repeated or skipped
    assert json.loads((adapter / MANIFEST).read_text())["training"]["steps_done"] == 20
    with pytest.raises(ConfigError, match="another configuration"):
        train(_config(tiny_llama, steps=30, rank=8), data, out, device="cpu", progress=False)


def test_resumed_run_equals_an_uninterrupted_one(tiny_llama, data, tmp_path):
    from safetensors.torch import load_file

    whole = train(_config(tiny_llama, steps=6), data, tmp_path / "a", device="cpu", progress=False)
    train(_config(tiny_llama, steps=3), data, tmp_path / "b", device="cpu", progress=False)
    resumed = train(_config(tiny_llama, steps=6), data, tmp_path / "b", device="cpu", progress=False)
    wa, wb = load_file(str(whole / "adapter_model.safetensors")), load_file(str(resumed / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_export_casts_checks_and_refuses_other_bases(run, tmp_path, tiny_gpt2):
    _, adapter = run
    dest = export(adapter, tmp_path / "exported", dtype="bfloat16")
    assert (dest / "adapter_model.safetensors").stat().st_size < (adapter / "adapter_model.safetensors").stat().st_size
    FinetunedSimulator.from_pretrained(dest, dtype="float32", device="cpu")
    with pytest.raises(ModelError, match="another tokenizer|hidden size"):
        FinetunedSimulator.from_pretrained(dest, base_model=str(tiny_gpt2), dtype="float32", device="cpu")
    with pytest.raises(ConfigError, match="already exists"):
        export(adapter, dest)


def test_evaluate_scores_correct_against_shuffled(data):
    units = read_units(data, "valid") + read_units(data, "train")
    rows = evaluate(KeywordSimulator(), units, seed=0, progress=False)
    summary = summarise(rows)
    word = summary["families"]["word"]  # "the word X" names the word: the keyword simulator reads it
    assert word["r"] > word["r_shuffled"] + 0.15
    assert all(r["explanation"] != r["shuffled"] for r in rows)
    singles = [v["r"] for f, v in summary["families"].items() if f != "two-concept"]
    assert summary["balanced"]["r"] == pytest.approx(np.mean(singles), abs=1e-3)
    r = np.array([x["r"] for x in rows if x["family"] == "word"])
    assert word["r_se"] == pytest.approx(r.std(ddof=1) / np.sqrt(len(r)), abs=1e-4)
    errors = [v["r_se"] for f, v in summary["families"].items() if f != "two-concept"]
    assert summary["balanced"]["r_se"] == pytest.approx(np.sqrt(np.sum(np.square(errors))) / len(errors), abs=1e-4)
    table = markdown({"keyword": summary})
    assert "| word |" in table and "**all**" in table and "**balanced**" in table
    assert f"{word['r']:.3f} ± {word['r_se']:.3f} | {word['r_shuffled']:.3f}" in table


def test_cli_trains_evaluates_and_reports_bad_input(tiny_llama, data, tmp_path, capsys):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**_config(tiny_llama, steps=4).__dict__, "comment": "tiny"}))
    assert main(["-q", "train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "r"),
                 "--device", "cpu"]) == 0
    assert main(["-q", "eval", "--simulator", f"finetuned:{tmp_path / 'r' / 'adapter'}", "--baseline", "keyword",
                 "--data", str(data), "--dtype", "float32", "--device", "cpu", "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev.json").read_text())
    assert set(report["summary"]) == {f"finetuned:{tmp_path / 'r' / 'adapter'}", "keyword"}
    assert (tmp_path / "ev.md").read_text().startswith("| family |")
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "build-data" in err and len(err.splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"rnak": 4}')
    assert main(["train", "--config", str(bad), "--data", str(data), "--out", str(tmp_path / "y")]) == 2
    assert "unknown setting(s) rnak" in capsys.readouterr().err


def test_every_subcommand_prints_its_help(capsys):
    """Help texts come from the settings' documentation (one with a "10%" broke `train --help` once)."""
    from simulator_training.cli import build_parser

    parser = build_parser()
    for command in ("build-data", "train", "eval", "decoys", "union", "export"):
        with pytest.raises(SystemExit) as done:
            parser.parse_args([command, "--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_auto_dtype_trains_in_float32_where_bfloat16_is_emulated(monkeypatch, caplog):
    import ns_dspy.models.subject as subject
    from simulator_training.train import _resolved

    assert TrainConfig().dtype == "auto"
    monkeypatch.setattr(subject, "cpu_description", lambda: {"flags": ["avx2", "fma"]})  # an AVX2-only CPU
    assert _resolved(TrainConfig(), "cpu").dtype == "float32"
    with caplog.at_level("WARNING", logger="simulator_training"):
        assert _resolved(TrainConfig(dtype="bfloat16"), "cpu").dtype == "bfloat16"  # asked for: kept, warned
    assert "emulated" in caplog.text
    monkeypatch.setattr(subject, "cpu_description", lambda: {"flags": ["avx512f", "amx_bf16"]})
    assert _resolved(TrainConfig(), "cpu").dtype == "bfloat16"
    assert _resolved(TrainConfig(dtype="float32"), "cpu").dtype == "float32"
    with pytest.raises(ConfigError, match="--dtype must be auto"):
        TrainConfig(dtype="int8")
