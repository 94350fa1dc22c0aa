"""A run file made before an option of the recorded configuration existed resumes when the option is at the
value that does what ns-dspy did then (``build.ADDED_OPTIONS``), and is refused, naming the option, otherwise."""

import pytest

from ns_dspy.build import ADDED_OPTIONS, PROVENANCE_VERSION, legacy_provenance, naming_forms
from ns_dspy.config import ExplainConfig, RunConfig, SimulatorConfig
from ns_dspy.errors import StoreError
from ns_dspy.runs import RunStore


def _provenance(config: RunConfig) -> dict:
    # the shape of Built.provenance, without loading a model
    return {"version": PROVENANCE_VERSION, "run": config.to_dict(provenance=True),
            "components": {"simulator": "keyword", "embedder": "minilm"}, "store": "s"}


def _older(config: RunConfig, since: str) -> dict:
    """The provenance ns-dspy recorded before the option ``since`` (and every later one) existed."""
    names = [path for path, _ in ADDED_OPTIONS]
    old = _provenance(config)
    for path in names[names.index(since):]:
        section, key = path.split(".")
        old["run"][section].pop(key)
    return old


def _open(path, config: RunConfig) -> RunStore:
    return RunStore(path, _provenance(config), legacy=legacy_provenance(config, _provenance(config), store="s"),
                    near=naming_forms(_provenance(config)))


def test_every_added_option_is_recorded():
    recorded = RunConfig().to_dict(provenance=True)
    for path, old in ADDED_OPTIONS:
        section, key = path.split(".")
        assert key in recorded[section] and isinstance(old, type(recorded[section][key]))


def test_a_run_made_before_an_option_resumes_when_the_option_does_what_it_did_then(tmp_path):
    at_old = RunConfig(explain=ExplainConfig(tiers=False, stats_modes=False, negative=False, list_edits=False,
                                             whitespace=False, word_classes=False, mode_stop=False),
                       simulator=SimulatorConfig("keyword"))
    for since, _ in ADDED_OPTIONS:
        path = tmp_path / f"{since}.sqlite"
        RunStore(path, _older(at_old, since)).close()
        _open(path, at_old).close()  # resumes
    # the current form resumes too, and a run made before whitespace existed (on by default since, as word classes
    # are) resumes with today's other defaults, --no-whitespace and --no-word-classes
    RunStore(tmp_path / "now.sqlite", _provenance(RunConfig())).close()
    _open(tmp_path / "now.sqlite", RunConfig()).close()
    no_whitespace = RunConfig(explain=ExplainConfig(whitespace=False, word_classes=False, mode_stop=False))
    RunStore(tmp_path / "ws.sqlite", _older(no_whitespace, "explain.whitespace")).close()
    _open(tmp_path / "ws.sqlite", no_whitespace).close()


def test_a_run_made_before_an_option_is_refused_when_the_option_changes_what_it_does(tmp_path):
    no_whitespace = RunConfig(explain=ExplainConfig(whitespace=False, word_classes=False, mode_stop=False))
    RunStore(tmp_path / "ws.sqlite", _older(no_whitespace, "explain.whitespace")).close()
    with pytest.raises(StoreError, match=r"other settings \(run\.explain\.whitespace, run\.explain\.word_classes\)"):
        _open(tmp_path / "ws.sqlite", RunConfig(explain=ExplainConfig(mode_stop=False)))  # whitespace, word classes
    # with --no-word-classes, only whitespace is named: against the nearest form this ns-dspy would accept
    with pytest.raises(StoreError, match=r"other settings \(run\.explain\.whitespace\)"):
        _open(tmp_path / "ws.sqlite", RunConfig(explain=ExplainConfig(word_classes=False, mode_stop=False)))
    # made before tiers: today's defaults differ in every option added since that is not at its old value
    RunStore(tmp_path / "tiers.sqlite", _older(RunConfig(), "explain.tiers")).close()
    with pytest.raises(StoreError, match=r"other settings \(run\.explain\.list_edits, run\.explain\.mode_stop, "
                                         r"run\.explain\.negative, run\.explain\.stats_modes, run\.explain\.tiers, "
                                         r"run\.explain\.whitespace, run\.explain\.word_classes\)"):
        _open(tmp_path / "tiers.sqlite", RunConfig())
    # made before modes stopped when they add nothing to the word lists: today's default stops them
    RunStore(tmp_path / "stop.sqlite", _older(RunConfig(), "explain.mode_stop")).close()
    with pytest.raises(StoreError, match=r"other settings \(run\.explain\.mode_stop\)"):
        _open(tmp_path / "stop.sqlite", RunConfig())
    _open(tmp_path / "stop.sqlite", RunConfig(explain=ExplainConfig(mode_stop=False))).close()
    # a stored form that lacks an option but holds a later one is no form ns-dspy ever wrote
    odd = _provenance(no_whitespace)
    odd["run"]["explain"].pop("test_maps")
    RunStore(tmp_path / "odd.sqlite", odd).close()
    with pytest.raises(StoreError, match=r"run\.explain\.test_maps"):
        _open(tmp_path / "odd.sqlite", no_whitespace)


def test_a_run_made_before_a_default_program_shipped_names_program_none(tmp_path):
    """A run made when no compiled program shipped for its LM (recorded as no program) is refused once one ships as
    the default, and the refusal says to add --program none, which resumes it."""
    from types import SimpleNamespace

    from ns_dspy.api import open_run

    def source(program: str) -> SimpleNamespace:
        config = RunConfig(simulator=SimulatorConfig("keyword"), program=program)
        form = _provenance(config)
        form["run"]["program"] = None if program == "none" else "/site-packages/ns_dspy/programs/lm.json"
        if program != "none":
            form["program_state"] = "0" * 64
        return SimpleNamespace(config=config, provenance=lambda **where: {**form, **where})

    store = tmp_path / "store"
    open_run(tmp_path / "run.sqlite", source("none"), store).close()  # made before: no program
    with pytest.raises(StoreError, match=r"\(program_state, run\.program\).*it was made without a compiled program "
                                         r"and one now ships as the default for .*: add --program none to resume it"):
        open_run(tmp_path / "run.sqlite", source("default"), store)
    open_run(tmp_path / "run.sqlite", source("none"), store).close()  # resumes
    # a run made with the default program and refused for another reason gets no such advice
    open_run(tmp_path / "other.sqlite", source("default"), store).close()
    changed = source("default")
    changed.config = changed.config.replace(explain=dict(iterations=2))
    form = changed.provenance()
    form["run"]["explain"]["iterations"] = 2
    changed.provenance = lambda **where: {**form, **where}
    with pytest.raises(StoreError) as err:
        open_run(tmp_path / "other.sqlite", changed, store)
    assert "run.explain.iterations" in str(err.value) and "--program none" not in str(err.value)


def test_a_run_made_before_lm_seeds_resumes_without_one_and_is_refused_with_one(tmp_path):
    config = RunConfig(simulator=SimulatorConfig("keyword"))
    RunStore(tmp_path / "run.sqlite", _older(config, "lm.seed")).close()  # the LM's section has no seed
    _open(tmp_path / "run.sqlite", config).close()  # resumes: no seed is the same answers as then
    with pytest.raises(StoreError, match=r"other settings \(run\.lm\.seed\)"):
        _open(tmp_path / "run.sqlite", config.replace(lm=dict(seed=3)))
