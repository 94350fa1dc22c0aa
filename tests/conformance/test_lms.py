"""The LM conformance suite: every LM kind ``make_lm`` knows keeps one contract, against local fakes (a fake chat
server, a stand-in for llama.cpp; cases: conftest.py); the scripted test LM keeps the engine part of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dspy
import pytest

from ns_dspy.lms import lm_usage, make_lm
from ns_dspy.lms.assets import LMError

COMMANDS = {  # each command's options, and what it changes in the parsed LMConfig (ns_dspy/api.py, sweep/run.py)
    "explain": (["explain", "--store", "s", "--neurons", "0:0"], {}),
    "explain --no-lm-hedge --lm-timeout 30": (["explain", "--store", "s", "--neurons", "0:0", "--no-lm-hedge",
                                               "--lm-timeout", "30"], {}),
    "compile --temperature 0.3": (["compile", "--store", "s", "--optimizer", "bootstrap", "--out", "c.json",
                                   "--temperature", "0.3"], dict(cache=True)),
    "sweep": (["sweep", "--store", "s"], dict(cache=False)),
    "explain --lm-seed 5": (["explain", "--store", "s", "--neurons", "0:0", "--lm-seed", "5"], {}),
}


@pytest.fixture(autouse=True)
def _dspy(dspy_memory_cache):
    """A private in-memory response cache per test and DSPy's settings reset afterwards (tests/conftest.py)."""


def _ask(lm, question: str = "Capital of France?") -> str:
    with dspy.context(lm=lm):
        return dspy.Predict("question -> answer")(question=question).answer


def test_a_known_option_is_accepted_and_applied(lm_case, lm_world):
    lm = make_lm(lm_case.spec, **lm_case.reach, **lm_case.case.known, cache=False)
    assert isinstance(lm, dspy.LM)
    before = lm_world.calls()
    assert _ask(lm) == "Paris" and lm_world.calls() == before + 1
    engine = lm.engine if not isinstance(lm.engine, str) else None
    for name, value in lm_case.case.known.items():
        if engine is not None and hasattr(engine, "settings"):  # local: options of the llama.cpp engine
            assert getattr(engine.settings, name) == value
        elif name == "num_retries":
            assert lm.retry.retries == value  # ns-dspy retries; DSPy's own are off
        else:
            assert lm.kwargs[name] == value


def test_an_unknown_option_is_refused_or_forwarded(lm_case, lm_world, one_line):
    """An option the kind does not know is refused in one line when the LM is built, or, where the kind says
    its keyword options are request parameters, sent to the server as one."""
    if lm_case.case.unknown == "refused":
        with pytest.raises(LMError) as err:
            make_lm(lm_case.spec, **lm_case.reach, bogus_option=1)
        assert "bogus_option" in one_line(err)
        return
    lm = make_lm(lm_case.spec, **lm_case.reach, num_retries=0, cache=False, bogus_option=1)
    assert _ask(lm) == "Paris"
    assert lm_world.servers[0].bodies[-1].get("bogus_option") == 1  # both kinds reach the first server here


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_builds_it(lm_case, lm_world, command):
    """Each command's options, parsed into its run configuration and built by the one builder, work for every
    kind; the ones a kind declares it ignores are ignored."""
    import dataclasses

    from ns_dspy.build import build_lm
    from ns_dspy.cli import build_parser
    from ns_dspy.config import load_run_config

    argv, override = COMMANDS[command]
    config = dataclasses.replace(load_run_config(build_parser().parse_args([*argv, "--lm", lm_case.spec])).lm,
                                 **override)
    lm = build_lm(config, **lm_case.reach)  # checks an endpoint first, as every command does
    assert _ask(lm) == "Paris"
    assert lm.kwargs["temperature"] == config.temperature
    if "timeout" in lm_case.case.ignores:
        assert "timeout" not in lm.kwargs
    elif config.timeout is not None:
        assert lm.kwargs["timeout"] == config.timeout
    if "hedge" not in lm_case.case.ignores:
        assert lm.retry.hedge is config.hedge
    assert lm.cache is config.cache
    if config.seed is not None:  # the engine's seed in process, the requests' seed over the network
        engine = lm.engine if not isinstance(lm.engine, str) else None
        assert (engine.settings.seed if hasattr(engine, "settings") else lm.kwargs["seed"]) == config.seed


def test_cache_key_is_stable_and_names_what_changes_answers(lm_case, lm_world):
    """DSPy's response cache: another build of the same spec answers from it; another temperature, another
    sampling seed (``--lm-seed``) or another model of the kind does not."""
    def ask(spec: str, temperature: float = 0.0, **kw) -> int:
        before = lm_world.calls()
        assert _ask(make_lm(spec, **lm_case.reach, temperature=temperature, cache=True, **kw)) == "Paris"
        return lm_world.calls() - before

    assert ask(lm_case.spec) == 1
    assert ask(lm_case.spec) == 0  # a second build: the same key
    assert ask(lm_case.spec, seed=None) == 0  # no seed given: the default's answers
    assert ask(lm_case.spec, temperature=0.5) == 1
    assert ask(lm_case.spec, seed=7) == 1, "another seed was answered from the default seed's cache"
    assert ask(lm_case.spec, seed=7) == 0
    assert ask(lm_case.other_spec) == 1, f"{lm_case.other_spec} was answered from {lm_case.spec}'s cache"


def test_copies_share_the_client_not_the_record(lm_case, lm_world):
    """``lm.copy()`` (what the runner makes per neuron): its own history, settings and fault counts, the same
    engine (one model in memory)."""
    lm = make_lm(lm_case.spec, **lm_case.reach, temperature=0.0, cache=False, **lm_case.case.known)
    twin = lm.copy(temperature=1.0)
    assert lm.kwargs["temperature"] == 0.0 and twin.kwargs["temperature"] == 1.0
    assert twin.engine is lm.engine
    assert _ask(twin) == "Paris"
    assert len(twin.history) == 1 and lm.history == []
    assert lm_usage(twin)["calls"] == 1 and lm_usage(lm)["calls"] == 0
    if hasattr(lm, "faults"):
        assert twin.faults is not lm.faults


def test_rollouts_reach_the_backend_as_reproducible_seeds(lm_case, lm_world):
    """DSPy's rollout id ("another sample of this request") reaches a kind that samples by seed as a seed of its
    own: rollouts differ from each other and from the first sample, and the same rollout asked again gets the
    same seed (with the response cache off), so every sample can be drawn again."""
    lm = make_lm(lm_case.spec, **lm_case.reach, temperature=0.7, cache=False)
    predict = dspy.Predict("question -> answer")
    before = len(lm_case.case.seeds(lm_world)) if lm_case.case.seeds else 0
    with dspy.context(lm=lm):
        for rollout in (None, 1, 2, 1, "r-7"):
            config = {} if rollout is None else {"rollout_id": rollout}
            assert predict(question="Capital of France?", config=config).answer == "Paris"
    if lm_case.case.seeds is None:
        assert all("seed" not in body for body in lm_world.servers[0].bodies[-5:])
        return
    first, one, two, one_again, named = lm_case.case.seeds(lm_world)[before:]
    assert None not in (first, one, two, named)
    assert one == one_again
    assert len({first, one, two, named}) == 4
    # another LM seed (--lm-seed): other seeds for every sample, the first one included
    lm = make_lm(lm_case.spec, **lm_case.reach, temperature=0.7, cache=False, seed=11)
    with dspy.context(lm=lm):
        for rollout in (None, 1):
            predict(question="Capital of France?", config={} if rollout is None else {"rollout_id": rollout})
    reseeded = lm_case.case.seeds(lm_world)[-2:]
    assert not set(reseeded) & {first, one, two, named} and len(set(reseeded)) == 2


def test_importing_the_lms_imports_no_backend():
    code = ("import json, sys\nimport ns_dspy.lms\n"
            "print(json.dumps(sorted(m for m in ('torch', 'openai', 'dspy', 'litellm', 'llama_cpp') "
            "if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert json.loads(out) == []


def test_the_scripted_lm_keeps_the_engine_contract():
    """The scripted LM that stands in for the others in tests: answers through DSPy's engine interface,
    records prompts and usage, and copies like the others."""
    from ns_dspy.lms.scripted import scripted_lm

    lm, engine = scripted_lm([{"answer": "Paris"}, {"answer": "Rome"}])
    assert _ask(lm) == "Paris" and "Capital of France?" in engine.prompts[-1]
    twin = lm.copy()
    assert twin.engine is engine and _ask(twin, "Capital of Italy?") == "Rome"
    assert len(lm.history) == 1 and len(twin.history) == 1
    assert lm_usage(lm)["calls"] == 1
