"""The simulator-training commands refuse an output they could not write (or, without --overwrite, one that
exists) in one line before any work: no dataset built, no model loaded, no evaluation run."""

from __future__ import annotations

import pytest

from simulator_training import cli
from simulator_training.cli import main


@pytest.fixture
def no_work(monkeypatch):
    """Loading a tokenizer or building a simulator fails the test: the check must come first."""
    import ns_dspy.build

    def forbidden(*args, **kwargs):
        raise AssertionError("work started before the output was checked")

    monkeypatch.setattr(cli, "_load_tokenizer", forbidden)
    monkeypatch.setattr(ns_dspy.build, "build_simulator", forbidden)


@pytest.mark.parametrize("argv, needle", [
    (["build-data", "--out", "{blocker}/data"], "cannot write --out"),
    (["build-data", "--out", "{existing}"], "already exists"),
    (["train", "--data", "{existing}", "--out", "{blocker}/run"], "cannot write --out"),
    (["eval", "--simulator", "keyword", "--data", "{existing}", "--out", "{blocker}/eval"], "cannot write --out"),
    (["decoys", "--simulator", "keyword", "--data", "{existing}", "--out", "{blocker}/d"], "cannot write --out"),
    (["export", "{existing}", "--to", "{existing}"], "already exists"),
    (["export", "{existing}", "--to", "{blocker}/adapter"], "cannot write --to"),
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(argv, needle, tmp_path, capsys, no_work):
    blocker, existing = tmp_path / "a-file", tmp_path / "existing"
    blocker.write_text("not a folder")
    existing.mkdir()
    before = sorted(tmp_path.rglob("*"))
    assert main([a.format(blocker=blocker, existing=existing) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert sorted(tmp_path.rglob("*")) == before
