"""Which compiled program a run loads: ``--program default`` (the one packaged for the run's LM, when it fits),
``none`` or a file; and the programs that ship in ``ns_dspy/programs/`` load into the program the default
configuration builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toy_neurons import toy_program

from ns_dspy.build import build_program, check_run_config
from ns_dspy.cli import build_parser
from ns_dspy.config import DEFAULT_LM, ExplainConfig, LMConfig, RunConfig, SimulatorConfig, load_run_config
from ns_dspy.errors import ConfigError
from ns_dspy.optimize import load_compiled, manifest_path, read_manifest, save_compiled
from ns_dspy.optimize import packaged
from ns_dspy.optimize.packaged import packaged_program, packaged_programs, resolve_program


def _compiled(tmp_path, name: str, lm: str, **explain) -> Path:
    program = toy_program(**explain)
    predict = _predict(program)
    predict.signature = predict.signature.with_instructions("compiled instructions")
    path = tmp_path / f"{name}.json"
    save_compiled(program, path, {"optimizer": "bootstrap", "lm": lm})
    return path


def _predict(program):
    return dict(program.named_predictors())["hypothesis.hypothesize"]


def test_default_resolves_to_the_program_packaged_for_the_lm_when_it_fits(tmp_path, monkeypatch):
    ours = _compiled(tmp_path, "a-ours", "local:ours")
    _compiled(tmp_path, "b-ours", "local:ours")  # a second one for the same LM: the first by name wins
    theirs = _compiled(tmp_path, "c-theirs", "endpoint:http://h/v1@m")
    (tmp_path / "broken.manifest.json").write_text("{")
    assert packaged_programs(tmp_path) == {"local:ours": ours, "endpoint:http://h/v1@m": theirs}
    monkeypatch.setattr(packaged, "PROGRAMS_DIR", tmp_path)

    explain = toy_program().config
    assert resolve_program("default", "local:ours", explain) == ours
    assert resolve_program("default", "endpoint:http://h/v1@m", explain) == theirs
    assert resolve_program("default", "openai:gpt-4o", explain) is None  # no program for that LM: uncompiled
    assert resolve_program("none", "local:ours", explain) is None and resolve_program(None, "local:ours", explain) is None
    assert resolve_program(str(theirs), "local:ours", explain) == theirs  # a file is taken as given
    # a program compiled with refinement does not fit a run without it (other predictors), nor the stats method
    assert packaged_program("local:ours", ExplainConfig(refine=False), tmp_path) is None
    assert packaged_program("local:ours", ExplainConfig(method="stats"), tmp_path) is None

    config = RunConfig(explain=explain, lm=LMConfig(spec="local:ours"), simulator=SimulatorConfig("keyword"))
    assert config.program == "default" and config.program_path() == ours
    program = toy_program()
    load_compiled(config.program_path(), program)
    assert _predict(program).signature.instructions == "compiled instructions"
    assert RunConfig(program="none").program_path() is None


def test_the_program_option_parses_default_none_and_files(tmp_path):
    parse = lambda *a: load_run_config(build_parser().parse_args(["explain", "--store", "s", "--neurons", "1:2", *a]))  # noqa: E731
    assert parse().program == "default"
    assert parse("--program", "none").program == "none" and parse("--program", "none").program_path() is None
    assert parse("--program", str(tmp_path / "c.json")).program_path() == tmp_path / "c.json"
    missing = RunConfig(program=str(tmp_path / "c.json"), simulator=SimulatorConfig("keyword"))
    with pytest.raises(ConfigError, match="no compiled program at"):  # a named file must exist; one line, no model
        check_run_config(missing)


def test_every_packaged_program_loads_into_the_default_program_of_its_lm():
    """A shipped program must fit what the default configuration builds: a change to an agent's signature that
    forgets to recompile it fails here, not in a user's run."""
    shipped = packaged_programs()
    for lm, path in shipped.items():
        manifest = read_manifest(path)
        assert manifest_path(path).is_file() and manifest["lm"] == lm
        assert {"units", "scores"} <= set(manifest), "the manifest records the neurons and the scores"
        config = RunConfig(lm=LMConfig(spec=lm), simulator=SimulatorConfig("keyword"))
        assert config.program_path() == path
        with build_program(config, with_lm=False) as built:  # loads the state; refused on any mismatch
            state = built.program.dump_state()
        assert json.loads(path.read_text())["hypothesis.hypothesize"] == state["hypothesis.hypothesize"]
        if manifest["optimizer"] in ("bootstrap", "bootstrap-rs", "best-steps"):
            # these optimizers add demos and keep the instructions: a packaged program made by one must carry
            # the agents' current instructions, else an edit to a prompt never reaches the default run
            fresh = RunConfig(lm=LMConfig(spec=lm), simulator=SimulatorConfig("keyword"), program="none")
            with build_program(fresh, with_lm=False) as built:
                current = {n: p.signature.instructions for n, p in built.program.named_predictors()}
            saved = json.loads(path.read_text())
            for name, instructions in current.items():
                assert saved[name]["signature"]["instructions"] == instructions, f"recompile {path.name}: {name}"
    if DEFAULT_LM in shipped:
        assert RunConfig().program_path() == shipped[DEFAULT_LM]
