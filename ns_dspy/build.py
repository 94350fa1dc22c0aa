"""The one place a program, its LM, simulator and embedder are made from a :class:`~ns_dspy.config.RunConfig`.

``build_program(run_config)`` returns a :class:`Built`: the :class:`~ns_dspy.program.NeuronScope` program
(with its simulator and embedder, and a compiled program's state loaded when ``run_config.program`` names
one) and the explainer LM (``None`` for the statistical method, which calls no LM). Everything a user can get
wrong is checked before any model is loaded: the compiled program's manifest, the LM spec, the simulator's
and embedder's options. :meth:`Built.provenance` is what a run file, a compiled program or a sweep records:
``run_config.to_dict(provenance=True)`` plus each component's cache key, which names what changes its output
(a retrained adapter at the same path has another key).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .config import EmbedderConfig, LMConfig, RunConfig, SimulatorConfig

__all__ = ["Built", "build_program", "check_run_config", "legacy_provenance", "build_lm", "build_simulator",
           "build_embedder", "PROVENANCE_VERSION", "ADDED_OPTIONS", "naming_forms"]

PROVENANCE_VERSION = 2
"""Version of :meth:`Built.provenance`; run files made before it (version 1) still resume, see
:func:`legacy_provenance`."""

ADDED_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("explain.tiers", False), ("explain.stats_modes", False), ("explain.negative", False),
    ("explain.list_edits", False), ("explain.test_maps", "guarded"), ("explain.whitespace", False),
    ("explain.word_classes", False), ("explain.context", False), ("explain.spelling", False),
    ("explain.concepts", False), ("explain.concepts_k", 3), ("explain.mode_stop", False), ("lm.seed", None))
"""Options added to the recorded run configuration since provenance version 2, oldest first: the dotted path in
``to_dict(provenance=True)`` and the value that does what ns-dspy did before the option existed. A run file made
then lacks the key, and resumes when every option added since is at that value now (otherwise the refusal
names the option, e.g. ``run.explain.whitespace``, so the user can set it back). Add a row with every new
option of the recorded configuration."""


def build_lm(config: LMConfig, **extra: Any):
    """The ``dspy.LM`` of ``config`` (an endpoint is checked to answer first); ``extra`` goes to
    :func:`ns_dspy.lms.make_lm` (e.g. ``n_threads`` of a local model)."""
    from .lms import check_endpoint, make_lm

    check_endpoint(config.spec)
    return make_lm(config.spec, temperature=config.temperature, max_tokens=config.max_tokens,
                   timeout=config.timeout, hedge=config.hedge, cache=config.cache, seed=config.seed, **extra)


def build_simulator(config: SimulatorConfig):
    """The simulator of ``config``, behind the simulation cache unless ``config.cache`` is off."""
    from .simulators import CachedSimulator
    from .simulators import build_simulator as build

    simulator = build(config.spec, **config.build_options())
    return CachedSimulator(simulator) if config.cache else simulator


def build_embedder(config: EmbedderConfig):
    from .agents import build_embedder as build

    return build(config.spec, **config.options)


@dataclasses.dataclass
class Built:
    """A built run: the program (simulator and embedder inside) and its LM. Close it (or use ``with``) to
    release the simulator's model or session."""

    config: RunConfig
    program: Any  # NeuronScope
    lm: Any | None  # dspy.LM, None for the statistical method

    @property
    def simulator(self):
        return self.program.simulator

    def provenance(self, **extra: Any) -> dict[str, Any]:
        """What a run records: the run configuration (less execution-only fields), each component's cache
        key, the compiled program's state digest and ``extra`` (e.g. the exemplar store)."""
        components = {"simulator": self.simulator.cache_key, "embedder": _embedder_key(self.program)}
        if self.lm is not None:
            components["lm"] = _lm_key(self.lm)
        run = self.config.to_dict(provenance=True)
        program = self.config.program_path()
        if program is None:
            run["program"] = None  # "default" with no packaged program for this LM is no program, as before
        out = {"version": PROVENANCE_VERSION, "run": run, "components": components}
        if program is not None:
            from .optimize import read_manifest

            out["program_state"] = read_manifest(program)["state_sha256"]
        return {**out, **extra}

    def program_for(self, explain) -> Any:
        """Another program with this build's simulator and embedder and the settings ``explain`` (an
        :class:`~ns_dspy.config.ExplainConfig`), e.g. the paper's modes over one loaded simulator. A compiled
        program's state is loaded into it too."""
        from .program import NeuronScope

        program = NeuronScope(self.simulator, self.program.clustering.embedder, explain)
        path = self.config.replace(explain=explain).program_path()
        if path is not None:
            from .optimize import load_compiled

            load_compiled(path, program)
        return program

    def close(self) -> None:
        self.simulator.close()

    def __enter__(self) -> "Built":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _without_old(run: dict[str, Any], options: tuple[tuple[str, Any], ...]) -> tuple[dict[str, Any], bool]:
    """``run`` without those of ``options`` (dotted path, old value) that are at their old value, and whether all
    of them were (the form an ns-dspy made before the first of them recorded)."""
    every = True
    for path, old in options:
        section, key = path.split(".")
        recorded = run.get(section, {})
        if not isinstance(recorded, dict):
            continue  # a form that records the section otherwise (version 1: the LM as its spec): never had it
        if recorded.get(key, object()) == old:
            run = {**run, section: {k: v for k, v in recorded.items() if k != key}}
        else:
            every = False
    return run, every


def _before_added(run: dict[str, Any]) -> list[dict[str, Any]]:
    """``run`` (a dict with an ``explain`` key) as ns-dspy recorded it before each of :data:`ADDED_OPTIONS`
    existed, newest first: each form lacks an option and every later one, as long as those are at their old
    value in ``run``."""
    forms = []
    for start in reversed(range(len(ADDED_OPTIONS))):
        form, every = _without_old(run, ADDED_OPTIONS[start:])
        if not every:
            break
        forms.append(form)
    return forms


def naming_forms(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """Forms of ``provenance`` (the current form, :meth:`Built.provenance`) against which a refused run file's
    stored configuration is compared to name what differs (``RunStore``'s ``near``), never accepted: for each of
    :data:`ADDED_OPTIONS`, the form without it and every later option that is at its old value. An older run file
    then differs from one of them exactly in the options added since it was made that are not at their old value
    now (what the user must set back to resume it), and in whatever else changed."""
    return [{**provenance, "run": _without_old(provenance["run"], ADDED_OPTIONS[start:])[0]}
            for start in range(len(ADDED_OPTIONS))]


def legacy_provenance(config: RunConfig, provenance: dict[str, Any] | None = None,
                      **extra: Any) -> list[dict[str, Any]]:
    """The forms in which older ns-dspy recorded this run's provenance, so that such a run resumes unchanged:
    ``provenance`` (the current form, :meth:`Built.provenance`) before each of :data:`ADDED_OPTIONS` existed,
    and the form of run files made before version 2."""
    forms = [] if provenance is None else [{**provenance, "run": run} for run in _before_added(provenance["run"])]
    out = {"explain": config.explain.to_dict(), "lm": config.lm.spec, "temperature": config.lm.temperature,
           "simulator": config.simulator.spec, "embedder": config.embedder.spec}
    program = config.program_path()
    if program is not None:
        from .optimize import read_manifest

        out["program"] = {"path": str(program.resolve()), "state_sha256": read_manifest(program)["state_sha256"]}
    if config.lm.seed is not None:  # version 1 recorded no LM seed: such a run file was made without one
        return forms
    return forms + [{**form, **extra} for form in [out, *_before_added(out)]]


def _lm_key(lm) -> str:
    """The LM's model id, plus the model file's size and modification time for a local GGUF."""
    model = str(getattr(lm, "model", lm))
    path = getattr(lm, "gguf_path", None)
    if path is not None:
        try:
            st = Path(path).stat()
            model += f"|{st.st_size}|{int(st.st_mtime)}"
        except OSError:
            pass
    return model


def _embedder_key(program) -> str:
    embedder = getattr(getattr(program, "clustering", None), "embedder", None)
    return getattr(embedder, "name", "none") if embedder is not None else "none"


def check_run_config(config: RunConfig) -> None:
    """What :func:`build_program` would refuse that can be seen without loading a model: the compiled
    program's manifest, the LM (an endpoint must answer), the simulator's kind, argument and options, the
    embedder. A driver calls it before its workers build the program."""
    from .simulators.base import check_simulator

    program = config.program_path()
    if program is not None:
        from .optimize import read_manifest

        read_manifest(program)
    if config.explain.method != "stats":
        build_lm(config.lm)  # a dspy.LM client: nothing is loaded until the first call
    check_simulator(config.simulator.spec, **config.simulator.build_options())
    build_embedder(config.embedder)  # loads its model on first use


def build_program(config: RunConfig, *, with_lm: bool = True, lm_extra: dict[str, Any] | None = None) -> Built:
    """Build ``config``'s program and LM (see the module docstring). ``with_lm=False``: no LM (a caller that
    scores only). A compiled program is checked (its manifest) before any model is loaded, and loaded last."""
    from .program import NeuronScope

    path = config.program_path()
    if path is not None:
        from .optimize import read_manifest

        read_manifest(path)  # a missing or foreign file is refused before any model is loaded
    lm = build_lm(config.lm, **(lm_extra or {})) if with_lm and config.explain.method != "stats" else None
    embedder = build_embedder(config.embedder)  # loads its model on first use; a bad spec is refused here
    simulator = build_simulator(config.simulator)
    try:
        program = NeuronScope(simulator, embedder, config.explain)
        if path is not None:
            from .optimize import load_compiled

            load_compiled(path, program)
    except BaseException:
        simulator.close()
        raise
    return Built(config, program, lm)
