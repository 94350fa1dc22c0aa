"""The simulator conformance suite: every registered simulator kind keeps the contract of ``Simulator``'s
docstring, built by ``build_simulator`` and through ``ns-dspy score`` (cases: conftest.py)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ns_dspy.errors import ConfigError
from ns_dspy.simulators import CachedSimulator, LockedSimulator, Simulator, build_simulator
from ns_dspy.types import Exemplar

EXPLANATIONS = ["the words cat and dog", ""]
WORDS = Exemplar(["The", " cat", " sat", " on", " the", " mat", "."], np.zeros(7))
EMPTY = Exemplar([], np.zeros(0))
GEMMA = Exemplar(["Le", " café", " —", "\n", "\t", "", "é", " naïve", " dog"], np.zeros(9),
                 token_ids=[2, 235_001, 9_843, 108, 255_968, 0, 235_335, 262_000, 5_929])
"""Token strings and ids of another tokenizer (Gemma's 262k vocabulary), an empty token among them."""
CLASH = Exemplar([" dog", " ran", " to", " a", " café"], np.zeros(5), token_ids=[3, 4, 5, 6, 7])
"""Ids that exist in the tiny models' vocabulary but stand for other text there."""
BATCH = [WORDS, EMPTY, GEMMA, CLASH]


def _run(case) -> dict:
    """The run options that pin a local model to float32 on the CPU (none for kinds that run no local model)."""
    return {"dtype": "float32", "device": "cpu"} if case.run_options == "use" else {}


@pytest.fixture
def simulator(simulator_case):
    sim = build_simulator(simulator_case.spec, **_run(simulator_case), **simulator_case.case.known)
    yield sim
    sim.close()


def test_a_known_option_is_accepted(simulator_case, simulator):
    assert isinstance(simulator, Simulator) and simulator.kind == simulator_case.kind
    for name, value in simulator_case.case.known.items():
        if hasattr(simulator, name):
            assert getattr(simulator, name) == value


def test_an_unknown_option_is_refused_in_one_line(simulator_case, one_line):
    with pytest.raises(ConfigError) as err:
        build_simulator(simulator_case.spec, bogus_option=1)
    assert "bogus_option" in one_line(err)


def test_check_spec_refuses_what_building_refuses_without_loading(simulator_case, one_line, monkeypatch):
    """``check_simulator`` (what a driver runs before its workers build the simulator) accepts the case's spec
    and options and refuses an unknown option, a bad value and a bad argument - with no model loaded."""
    from ns_dspy.simulators.base import check_simulator

    impl = Simulator.registry[simulator_case.kind]
    monkeypatch.setattr(impl, "from_spec", classmethod(lambda cls, *a, **k: pytest.fail("from_spec was called")))
    check_simulator(simulator_case.spec, **_run(simulator_case), **simulator_case.case.known)
    for bad in ({"bogus_option": 1}, simulator_case.case.bad or {"bogus_option": 2}):
        with pytest.raises(ConfigError) as err:
            check_simulator(simulator_case.spec, **bad)
        assert next(iter(bad)) in one_line(err)
    bad_arg = {"keyword": "keyword:x", "finetuned": "finetuned:/no/such/adapter", "endpoint": "endpoint:no-url"}
    if simulator_case.kind in bad_arg:  # prompted:NAME may be any hub id: only loading can tell
        with pytest.raises(ConfigError) as err:
            check_simulator(bad_arg[simulator_case.kind])
        one_line(err)


def test_a_bad_value_of_a_known_option_is_refused_in_one_line(simulator_case, one_line):
    if simulator_case.case.bad is None:
        pytest.skip(f"{simulator_case.kind} takes no option")
    with pytest.raises(ConfigError) as err:
        build_simulator(simulator_case.spec, **simulator_case.case.bad)
    assert next(iter(simulator_case.case.bad)) in one_line(err)


def test_options_are_declared_typed_and_checked_before_loading(simulator_case, one_line):
    """Each kind declares its options as one dataclass; a value of the wrong type is refused in one line, from
    the spec alone (``parse_options`` loads nothing)."""
    import dataclasses

    impl = Simulator.registry[simulator_case.kind]
    assert dataclasses.is_dataclass(impl.Options)
    assert impl.parse_options({}) == impl.Options()
    for name, value in simulator_case.case.known.items():
        assert getattr(impl.parse_options({name: value}), name) == value
    for f in dataclasses.fields(impl.Options):
        wrong = [1] if f.type not in ("list",) else "x"
        with pytest.raises(ConfigError) as err:
            impl.parse_options({f.name: wrong})
        assert f.name in one_line(err)


def test_run_options_mean_what_the_kind_declares(simulator_case, one_line):
    """Every command passes --dtype and --device to every simulator: the defaults work for every kind, a value
    is used, ignored or refused in one line as the kind's ``run_options`` says."""
    assert simulator_case.run_options in ("use", "ignore", "refuse")
    default = build_simulator(simulator_case.spec, dtype="auto", device=None)
    given = dict(dtype="float32", device="cpu")
    if simulator_case.run_options == "refuse":
        with pytest.raises(ConfigError) as err:
            build_simulator(simulator_case.spec, **given)
        assert "leave --dtype out" in one_line(err)
    else:
        sim = build_simulator(simulator_case.spec, **given)
        if simulator_case.run_options == "ignore":
            assert sim.cache_key == default.cache_key
        sim.close()
    default.close()


@pytest.mark.parametrize("options", [dict(dtype="auto", device=None), dict(dtype="float32", device="cpu")],
                         ids=["defaults", "given"])
def test_built_the_way_the_commands_build_it(simulator_case, options, tmp_path, monkeypatch, one_line):
    """``--simulator SPEC`` with the run options every command has, through the one builder."""
    from ns_dspy.build import build_program
    from ns_dspy.config import ExplainConfig, RunConfig, SimulatorConfig

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path))
    config = RunConfig(explain=ExplainConfig(method="stats"), simulator=SimulatorConfig(simulator_case.spec,
                                                                                        **options))
    if simulator_case.run_options == "refuse" and options["dtype"] != "auto":
        with pytest.raises(ConfigError) as err:
            build_program(config)
        one_line(err)
        return
    with build_program(config) as built:
        assert isinstance(built.simulator, CachedSimulator)
        plain = build_simulator(simulator_case.spec, **options)
        assert built.simulator.cache_key == plain.cache_key
        assert built.provenance()["components"]["simulator"] == plain.cache_key
        plain.close()


def test_cache_key_is_stable_and_names_what_changes_predictions(simulator_case):
    case, spec = simulator_case.case, simulator_case.spec

    def key(**options) -> str:
        sim = build_simulator(spec, **{**_run(simulator_case), **options})
        sim.close()
        return sim.cache_key

    first = key(**case.known)
    assert isinstance(first, str) and first and "\n" not in first
    assert key(**case.known) == first  # another build, the same key
    if case.neutral is not None:
        a, b = (key(**options) for options in case.neutral)
        assert a == b, f"{case.neutral} do not change predictions but change the cache key"
        assert not any(str(v) in a for options in case.neutral for v in options.values() if "secret" in str(v))
    if case.changing is not None:
        a, b = (key(**options) for options in case.changing)
        assert a != b, f"{case.changing} change predictions but not the cache key"


def test_is_shared_never_copied(simulator):
    """A simulator is a client: copying it, or a program holding it, shares it."""
    from ns_dspy.agents import build_embedder
    from ns_dspy.program import NeuronScope

    assert copy.deepcopy(simulator) is simulator
    locked = LockedSimulator(simulator)
    assert copy.deepcopy(locked) is locked
    program = NeuronScope(simulator, build_embedder("minilm"))
    assert program.deepcopy().simulator is simulator
    assert program.reset_copy().simulator is simulator


def test_predicts_every_token_of_any_batch(simulator):
    """An empty exemplar and exemplars of another tokenizer: one finite prediction in [0, 10] per token,
    the same on a second call and whatever else is in the batch."""
    preds = simulator.simulate(EXPLANATIONS, BATCH)
    assert len(preds) == len(EXPLANATIONS) and all(len(row) == len(BATCH) for row in preds)
    for row in preds:
        for pred, ex in zip(row, BATCH):
            assert isinstance(pred, np.ndarray) and pred.dtype == np.float32 and pred.shape == (len(ex.tokens),)
            assert np.isfinite(pred).all() and (pred >= 0).all() and (pred <= 10).all()
    again = simulator.simulate(EXPLANATIONS, BATCH)
    alone = simulator.simulate(EXPLANATIONS[:1], [GEMMA])
    for row, row_again in zip(preds, again):
        for pred, pred_again in zip(row, row_again):
            np.testing.assert_allclose(pred, pred_again, atol=1e-5)
    np.testing.assert_allclose(alone[0][0], preds[0][2], atol=1e-3)  # batch shapes may change float kernels


def _table(out: str) -> list[float]:
    return [float(line.split()[-1]) for line in out.split("predicted\n")[1].strip().splitlines()]


def test_scores_through_the_command(simulator_case, score_store, tmp_path, monkeypatch, capsys, one_line):
    """``ns-dspy score`` with this kind: a score and a token table; the cached rerun and an uncached one print
    the same; --dtype/--device are used, ignored or refused in one line as the kind declares."""
    from ns_dspy.cli import main

    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    argv = ["score", str(score_store), "0:0", "the words cat and dog", "--simulator", simulator_case.spec,
            "--table", "1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("unit 0:0, test: score ") and f"simulator {simulator_case.spec}" in out
    table = _table(out)
    assert len(table) == 6 and all(0 <= v <= 10 for v in table)  # one row per token of the first exemplar
    assert main(argv) == 0
    assert capsys.readouterr().out == out  # served from the cache
    assert main([*argv, "--no-cache"]) == 0
    assert capsys.readouterr().out == out  # the cache holds what the simulator computes
    code = main([*argv, "--dtype", "float32", "--device", "cpu"])
    captured = capsys.readouterr()
    if simulator_case.run_options == "refuse":
        assert code == 2
        err = captured.err.strip()
        assert len(err.splitlines()) == 1 and "leave --dtype out" in err
    else:
        assert code == 0 and captured.out.startswith("unit 0:0, test: score ")


def test_importing_the_plug_in_point_imports_no_backend():
    """The base class and the package import neither torch nor openai, and neither does scoring with keyword:
    a backend's module is imported when its kind is built (or its class read from the package)."""
    code = ("import json, sys\n"
            "import ns_dspy.simulators.base\n"
            "from ns_dspy.simulators import CachedSimulator, Simulator, build_simulator\n"
            "heavy = lambda: sorted(m for m in ('torch', 'openai', 'transformers') if m in sys.modules)\n"
            "base = heavy()\n"
            "build_simulator('keyword', dtype='auto', device=None).simulate(['cat'], [])\n"
            "print(json.dumps([base, heavy()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert json.loads(out) == [[], []]


def test_every_public_name_still_imports():
    import ns_dspy.simulators as package

    for name in package.__all__:
        assert getattr(package, name) is not None
    from ns_dspy.simulators import EndpointError, EndpointSimulator, FinetunedSimulator, KeywordSimulator  # noqa: F401
    from ns_dspy.simulators import PromptedSimulator

    assert PromptedSimulator.registry["prompted"] is PromptedSimulator
