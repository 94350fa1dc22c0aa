"""``build-data --from-store``: real units of a recording as training data without an explain run - each unit's
statistical word lists, ranked on half of its train windows, paired with the other half, targets normalised by the
unit's peak; no valid or test window is used, and the units a caller evaluates on are never drawn."""

from __future__ import annotations

import json

import pytest

from ns_dspy.errors import ConfigError

from simulator_training.cli import main
from simulator_training.data import from_exemplar_store, read_manifest, read_units

from trigger_words import trigger_store

WORDS = ["cat", "dog", "sun", "tree", "red", "blue", "one", "two", "milk", "road", "song", "wind"]


@pytest.fixture
def store(tmp_path):
    # unit 0: "cat" 2.0, "dog" 1.0; unit 1: "sun" 3.0; unit 2: -0.5 everywhere (never positive: not drawn)
    return trigger_store(tmp_path / "store", WORDS, [{"cat": 2.0, "dog": 1.0}, {"sun": 3.0}, {}], token_ids=True)


def _units(folder) -> dict[str, dict]:
    return {u["unit"]: u for split in ("train", "valid") for u in read_units(folder, split)}


def test_units_are_word_lists_ranked_on_half_their_train_windows_with_the_other_half_as_targets(store, tmp_path):
    out = from_exemplar_store(tmp_path / "d", store.path, n_units=2, sizes=(1, 3), valid_share=0.5)
    units = _units(out)
    assert set(units) == {"0:0", "0:1"}  # the unit that is never positive is skipped
    cat = units["0:0"]
    assert cat["family"] == "recorded"
    assert cat["explanations"][0] == 'the word "cat"'
    assert cat["explanations"][1].startswith('the words "cat", "dog" and ')
    assert units["0:1"]["explanations"][0] == 'the word "sun"'
    unit = store.units()[0]
    second = [ex for kind in ("top", "random") for ex in store.exemplars(unit, "train", kind)[1::2]]
    assert [ex["tokens"] for ex in cat["exemplars"]] == [ex.tokens for ex in second]  # train windows only
    assert [ex["kind"] for ex in cat["exemplars"]] == [ex.kind for ex in second]
    held_out = {tuple(ex.tokens) for split in ("valid", "test") for kind in ("top", "random")
                for ex in store.exemplars(unit, split, kind)}
    assert not held_out & {tuple(ex["tokens"]) for ex in cat["exemplars"]}
    for ex in cat["exemplars"]:
        words = ex["tokens"]
        expected = [10.0 if w == "cat" else 5.0 if w == "dog" else 0.0 for w in words]  # activation / 2.0 * 10
        assert ex["targets"] == expected
        assert ex["token_ids"] == [WORDS.index(w) for w in words]
    manifest = read_manifest(out)
    assert manifest["source"] == "store" and manifest["units"]["train"].get("recorded", 0) + \
        manifest["units"]["valid"].get("recorded", 0) == 2


def test_the_lists_are_ranked_on_the_first_half_only(store, tmp_path, monkeypatch):
    import ns_dspy.agents.evidence as evidence

    seen = []
    real = evidence.ranked_tokens
    monkeypatch.setattr(evidence, "ranked_tokens", lambda exs, **kw: seen.append(list(exs)) or real(exs, **kw))
    from_exemplar_store(tmp_path / "d", store.path, n_units=1, exclude={"0:1"})
    unit = store.units()[0]
    first = [ex for kind in ("top", "random") for ex in store.exemplars(unit, "train", kind)[0::2]]
    assert [ex.window for ex in seen[0]] == [ex.window for ex in first]


def test_excluded_units_are_never_drawn_and_too_few_units_is_an_error(store, tmp_path):
    out = from_exemplar_store(tmp_path / "d", store.path, n_units=1, exclude={"0:0"})
    assert set(_units(out)) == {"0:1"}
    assert read_manifest(out)["excluded"] == ["0:0"]
    with pytest.raises(ConfigError, match="only 1 usable units"):
        from_exemplar_store(tmp_path / "e", store.path, n_units=2, exclude={"0:0"})
    assert not (tmp_path / "e").exists()
    with pytest.raises(ConfigError, match="does not exist"):
        from_exemplar_store(tmp_path / "f", tmp_path / "nowhere", n_units=1)


def test_cli_reads_exclusions_from_names_and_neuron_files(store, tmp_path, capsys):
    neurons = tmp_path / "neurons.json"
    neurons.write_text(json.dumps({"z-score": ["0:0"], "note": {"more": ["0:2"]}}))
    assert main(["-q", "build-data", "--out", str(tmp_path / "d"), "--from-store", str(store.path), "--units", "1",
                 "--exclude", str(neurons)]) == 0
    assert set(_units(tmp_path / "d")) == {"0:1"}
    assert read_manifest(tmp_path / "d")["excluded"] == ["0:0", "0:2"]
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-store", str(store.path), "--units", "1",
                 "--exclude", "0:1,0:0"]) == 2
    assert "only 0 usable units" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-store", str(store.path),
                 "--exclude", str(tmp_path / "missing.json")]) == 2
    assert "--exclude" in capsys.readouterr().err
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-store", str(store.path),
                 "--from-run", "r.sqlite"]) == 2
    assert main(["-q", "build-data", "--out", str(tmp_path / "x"), "--from-store", str(store.path),
                 "--lists", "3"]) == 2
    assert "does not combine with --from-store" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_build_data_from_a_run_reads_the_run_without_writing_it(store, tmp_path, capsys):
    """``--from-run``: the finished units' final explanations x their held-out exemplars; the run file is read
    only (not written, no journal files left beside it)."""
    import hashlib

    from ns_dspy.cli import main as ns_main

    run = tmp_path / "stats.sqlite"
    assert ns_main(["explain", "--store", str(store.path), "--neurons", "0:0,0:1", "--method", "stats", "--simulator",
                    "keyword", "--run", str(run), "-q"]) == 0
    before = hashlib.sha256(run.read_bytes()).hexdigest()
    assert main(["-q", "build-data", "--out", str(tmp_path / "data"), "--from-run", str(run)]) == 0
    units = _units(tmp_path / "data")
    assert set(units) == {"0:0", "0:1"} and all(u["family"] == "recorded" and u["explanations"]
                                               for u in units.values())
    assert read_manifest(tmp_path / "data")["source"] == "run"
    assert hashlib.sha256(run.read_bytes()).hexdigest() == before and not list(tmp_path.glob("stats.sqlite-*"))
