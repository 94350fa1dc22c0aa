"""The run configuration: one nested, typed, serialisable object, and the command-line options made from it.

:class:`RunConfig` is everything that decides what a run computes::

    RunConfig
      explain:   ExplainConfig   the method and its settings (refinement, racing, ...)
        cluster: ClusterConfig   HDBSCAN settings
      lm:        LMConfig        the explainer LM: spec, temperature, max tokens, timeout, hedging
      simulator: SimulatorConfig the simulator: spec, dtype, device, backend options
      embedder:  EmbedderConfig  the clustering embedder: spec, options
      program:   str | None      the compiled program: ``default`` (the one packaged for the LM, if any), ``none``
                                 or a file written by ``ns-dspy compile --out``

Every field carries its help text and flag in its metadata, so an option is documented once: the same text
shows in ``--help`` (:func:`add_options` makes the options) and in the code. :func:`load_run_config` is the one
loader: a configuration file (JSON, TOML or YAML; e.g. a sweep's ``best.json``) under the options given on the
command line, every value type-checked whichever way it came (:meth:`RunConfig.from_dict`). The one place
that builds a program from a ``RunConfig`` is :func:`ns_dspy.build.build_program`.

Precedence: options given on the command line > the file > the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError, json_kind

__all__ = ["opt", "add_options", "from_options", "track_explicit", "explicit", "parse_key_values",
           "ClusterConfig", "ExplainConfig", "ExecutorConfig", "LMConfig", "SimulatorConfig", "EmbedderConfig",
           "RunConfig", "add_run_options", "load_run_config", "configure_logging", "read_mapping", "read_config_file",
           "write_config_file", "DEFAULT_LM", "DEFAULT_SIMULATOR", "DEFAULT_EMBEDDER", "DEFAULT_TEMPERATURE", "FORMAT",
           "VERSION"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_LM = "local:qwen2.5-coder-1.5b-instruct"
"""The offline explainer LM: Qwen2.5-Coder-1.5B-Instruct (GGUF from PyPI) in process (``ns_dspy.lms``)."""
DEFAULT_SIMULATOR = "finetuned:gemma-3-270m"
"""The offline default simulator: gemma-3-270m with the LoRA adapter and bin head trained by
``simulator_training/`` and shipped in the package (``ns_dspy/simulators/trained/gemma-3-270m``)."""
DEFAULT_EMBEDDER = "minilm"
"""The offline clustering embedder (all-MiniLM-L6-v2 from a registry package)."""
DEFAULT_TEMPERATURE = 0.7
"""The explainer LM's temperature when neither a file nor ``--temperature`` sets it."""


# --- fields and options ---------------------------------------------------------------------------------------
def opt(default: Any, help: str, *, flag: str | None = None, provenance: bool = True, **kw) -> Any:
    """A dataclass field with a default and its ``--help`` text.

    ``flag``: the option's name when it is not ``--FIELD-NAME``. ``provenance=False``: the field changes how a
    run executes, not what it computes (a timeout, a device), so it is left out of a run's provenance and a
    run may be resumed with another value."""
    meta = {"help": help, "provenance": provenance, **kw}
    if flag:
        meta["flag"] = flag
    if isinstance(default, (dict, list)):
        factory = type(default)
        value = dict(default) if isinstance(default, dict) else list(default)
        return dataclasses.field(default_factory=lambda: factory(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of a field annotation such as ``float | None``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return (args[0] if len(args) == 1 else Any), True
    return (origin or hint), False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_key_values(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["batch_size=8", "merge=false"]`` -> ``{"batch_size": 8, "merge": False}`` (int, float, bool, None or
    text); a malformed item is a one-line ConfigError naming ``flag``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"bad {flag} {item!r}: write KEY=VALUE, e.g. {flag} batch_size=8")
        out[key.strip()] = _value(value)
    return out


class _KeyValues(argparse.Action):
    """``--X KEY=VALUE``, repeatable, into one dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = dict(getattr(namespace, self.dest, None) or {})
        try:
            current.update(parse_key_values([values], option_string))
        except ConfigError as err:
            parser.error(str(err))
        setattr(namespace, self.dest, current)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose every mistake is one line, ``PROG: error: MESSAGE (see PROG --help)``, and exit 2,
    without argparse's usage block. Its subparsers are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


OUR_LOGGERS = ("ns_dspy", "simulator_training")
"""The packages whose INFO records a command line shows (:func:`configure_logging`)."""


def configure_logging(verbose: bool = False, ours: tuple[str, ...] = OUR_LOGGERS, *, timestamps: bool = False) -> None:
    """The command lines' logging: one stderr line per record, ``LEVEL logger: message``; our loggers (``ours``)
    from INFO, everything else's (sentence-transformers, httpx, LiteLLM, ...) from WARNING only, so a run's
    terminal shows its own progress, not each library's loading chatter. ``verbose``: every logger from DEBUG.
    ``timestamps``: each line starts with the time (``HH:MM:SS``), for the long experiment drivers.
    Does nothing where the root logger already has a handler (an embedding application, pytest)."""
    import sys

    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    line = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter("%(asctime)s " + line if timestamps else line, datefmt="%H:%M:%S"))
    if not verbose:
        handler.addFilter(lambda r: r.levelno >= logging.WARNING or r.name.split(".", 1)[0] in ours)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """Add one ``--option`` per field of dataclass ``cls`` (types and defaults from the field). Nested dataclass
    fields add their own fields' options. With ``prefix`` the options' ``dest`` is ``PREFIX.FIELD`` (see
    :func:`load_run_config`)."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        kind, optional = _base_type(hints[f.name])
        dest = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, prefix=f"{dest}." if prefix else "")
            continue
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        flags = [f.metadata.get("flag") or _flag(f.name), *f.metadata.get("aliases", ())]
        default = _default(f)
        if kind is bool:
            parser.add_argument(*flags, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        elif kind is dict:
            parser.add_argument(*flags, dest=dest, action=_KeyValues, default=default, metavar="KEY=VALUE",
                                help=f"{help_text} (repeatable)")
        elif f.metadata.get("required"):
            parser.add_argument(*flags, dest=dest, type=kind, required=True,
                                metavar=f.metadata.get("metavar") or f.name.upper(), help=help_text)
        else:
            metavar = f.metadata.get("metavar") or flags[0].lstrip("-").replace("-", "_").upper()
            shown = "none" if default is None else repr(default)
            parser.add_argument(*flags, dest=dest, type=kind if kind in (int, float, str) else str, default=default,
                                metavar=metavar, help=f"{help_text} (default: {shown})")


def from_options(cls: type[T], ns: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed options (fields absent from ``ns`` keep their defaults)."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if f.init and hasattr(ns, f.name)}
    values.update(overrides)
    return cls(**values)


_EXPLICIT = "ns_dspy_explicit"
_TRACKING: dict[type, type] = {}


class _Tracking:
    """Mixed into an argparse action: records its ``dest`` as given on the command line."""

    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        given = set(getattr(namespace, _EXPLICIT, ()))
        given.add(self.dest)
        setattr(namespace, _EXPLICIT, given)


def track_explicit(parser: argparse.ArgumentParser) -> None:
    """Make every option already added to ``parser`` record, when given, that it was given (see :func:`explicit`)."""
    for action in parser._actions:
        if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        cls = type(action)
        if not issubclass(cls, _Tracking):
            if cls not in _TRACKING:
                _TRACKING[cls] = type(f"Tracking{cls.__name__}", (_Tracking, cls), {})
            action.__class__ = _TRACKING[cls]


def explicit(ns: argparse.Namespace) -> set[str]:
    """The ``dest`` names of options given on the command line (needs :func:`track_explicit` on the parser)."""
    return set(getattr(ns, _EXPLICIT, ()))


# --- typed construction from mappings ---------------------------------------------------------------------------
def _check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against a field's annotation (ints accepted as floats, never bools as numbers)."""
    kind, optional = _base_type(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where} must be {getattr(kind, '__name__', kind)}, got null")
    if kind is Any:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    if kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where} must be a mapping of names to values, got {json_kind(value)}")
        return dict(value)
    if not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {value!r}")
    return value


def _typed_values(cls: type, data: Any, where: str) -> dict[str, Any]:
    """``data`` (a possibly partial mapping) checked against dataclass ``cls``: unknown keys and wrongly typed
    values are one-line ConfigErrors naming the key. Nested dataclasses stay nested mappings."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the configuration'} must be a mapping, got {json_kind(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown setting {name}; known: {', '.join(sorted(fields))}")
        kind, _ = _base_type(hints[key])
        if dataclasses.is_dataclass(kind):
            out[key] = _typed_values(kind, value, name)
        else:
            out[key] = _check_value(value, hints[key], name)
    return out


def _build(cls: type[T], values: dict[str, Any]) -> T:
    """``cls`` from a checked nested mapping (missing fields keep their defaults)."""
    hints = _hints(cls)
    kwargs = {}
    for key, value in values.items():
        kind, _ = _base_type(hints[key])
        kwargs[key] = _build(kind, value) if dataclasses.is_dataclass(kind) else value
    return cls(**kwargs)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            and key not in ("options",) else value
    return out


class _Config:
    """Mixed into the configuration dataclasses: typed dict round trip."""

    def to_dict(self, *, provenance: bool = False) -> dict[str, Any]:
        """As plain JSON-able data. ``provenance=True`` leaves out the fields that change only how a run
        executes (``opt(..., provenance=False)``), so a run can be resumed with other such values."""
        out = {}
        for f in dataclasses.fields(self):
            if provenance and not f.metadata.get("provenance", True):
                continue
            value = getattr(self, f.name)
            out[f.name] = value.to_dict(provenance=provenance) if isinstance(value, _Config) else (
                dict(value) if isinstance(value, dict) else value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
        """From a (possibly partial) mapping; every value is type-checked and validated, any problem is one line."""
        return _build(cls, _typed_values(cls, data, where))


# --- the configuration --------------------------------------------------------------------------------------------
NOISE_POLICIES = ("nearest", "singleton", "drop")
METRICS = ("euclidean", "cosine")
SELECTION_METHODS = ("eom", "leaf")
METHODS = ("neuronscope", "stats")


@dataclasses.dataclass
class ClusterConfig(_Config):
    """HDBSCAN settings and what becomes of the conditions it leaves out."""

    min_cluster_size: int = opt(2, "fewest conditions that make a semantic mode (HDBSCAN min_cluster_size)")
    min_samples: int = opt(1, "HDBSCAN min_samples; larger values mark more conditions as noise")
    cluster_selection_epsilon: float = opt(0.0, "HDBSCAN cluster_selection_epsilon: merge clusters closer than this")
    cluster_selection_method: str = opt("eom", "HDBSCAN cluster selection: eom (excess of mass) or leaf")
    metric: str = opt("euclidean", "distance between unit-norm embeddings: euclidean or cosine")
    noise: str = opt("nearest", "conditions HDBSCAN leaves out: nearest (join the most similar cluster), "
                                "singleton (a mode each) or drop")

    def __post_init__(self) -> None:
        if self.min_cluster_size < 2:
            raise ConfigError(f"min_cluster_size must be at least 2, got {self.min_cluster_size}")
        if self.min_samples < 1:
            raise ConfigError(f"min_samples must be at least 1, got {self.min_samples}")
        if self.cluster_selection_epsilon < 0:
            raise ConfigError(f"cluster_selection_epsilon must be >= 0, got {self.cluster_selection_epsilon}")
        for name, value, allowed in (("cluster_selection_method", self.cluster_selection_method, SELECTION_METHODS),
                                     ("metric", self.metric, METRICS),
                                     ("noise", self.noise, NOISE_POLICIES)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclasses.dataclass
class ExplainConfig(_Config):
    """The method and its settings (:class:`ns_dspy.program.NeuronScope`)."""

    method: str = opt("neuronscope", "neuronscope (the agents), or stats: no LM, an explanation written from the "
                                     "train exemplars' token statistics, the best of its candidates on valid")
    max_exemplars: int = opt(20, "top train exemplars shown to the Hypothesis agent")
    refine: bool = opt(True, "run the Refinement agent (--no-refine: the paper's ablation)")
    baseline: bool = opt(False, "single-pass baseline instead: one explanation, best of --baseline-k on valid")
    baseline_k: int = opt(8, "hypotheses drawn for the single-pass baseline")
    candidates: int = opt(8, "refinement candidates proposed per iteration")
    iterations: int = opt(5, "refinement iterations at most")
    patience: int = opt(1, "iterations without improvement before refinement stops")
    min_delta: float = opt(1e-3, "improvement of the valid score that counts")
    statistics: bool = opt(True, "show the agents the train exemplars' token statistics (--no-statistics: "
                                 "excerpts only, as in the paper)")
    feedback: bool = opt(True, "show the Refinement agent the tokens its best explanations miss and over-predict "
                                "on valid (--no-feedback: scores only, as in the paper)")
    tiers: bool = opt(True, "the statistical explainer also tries sets of word lists, one per activation tier, "
                            "scored as a union calibrated on valid (a graded word list); --no-tiers: single lists "
                            "only")
    negative: bool = opt(True, "the statistical explainer also tries adding a list of the tokens where the activation "
                               "is lowest, as a negative mode (\"(negative) the words ...\": gated MLP neurons are "
                               "signed), kept when it raises the valid score; --no-negative: positive lists only")
    whitespace: bool = opt(True, "the statistical explainer also tries adding an explanation of a whitespace class "
                                 "(line breaks, blank lines, indentation, lone spaces: a quoted word list cannot "
                                 "name them) where the unit's train activation is above its mean, kept when it "
                                 "raises the valid score (the default simulator reads them since 2026-12-05; "
                                 "experiments/whitespace.py); --no-whitespace: word lists only")
    word_classes: bool = opt(True, "the statistical explainer also tries adding an explanation of a word class "
                                   "(plural nouns, forms of be, ...: ns_dspy/agents/word_classes.py) that the unit's "
                                   "train activation follows, kept when it raises the valid score (on since "
                                   "2026-12-05: experiments/word_classes.py); --no-word-classes: not tried")
    spelling: bool = opt(False, "the statistical explainer also tries adding an explanation of a spelling class "
                                "(words written in all capital letters, words ending in -ing, numbers written with "
                                "digits, ...: ns_dspy/agents/word_classes.py) that the unit's train activation "
                                "follows, kept when it raises the valid score; --no-spelling: not tried")
    context: bool = opt(False, "the statistical explainer also tries adding an explanation of a token in the context "
                               "of the token before it ('the word \"to\" only right after \"up\"'), where the "
                               "unit's train activation there is furthest above what its word lists give the token, "
                               "kept when it raises the valid score (experiments/context_pairs.py); --no-context: "
                               "not tried")
    concepts: bool = opt(False, "the offline-friendly concept step: the LM names what the unit's highest-ranked "
                                "train tokens share (ns_dspy/agents/concept.py), and a concept with examples, or "
                                "alone, joins or replaces the statistical word lists when that scores higher on "
                                "valid (experiments/concepts.py); --no-concepts: not tried")
    concepts_k: int = opt(3, "category names the concept step asks the LM for (one call each)")
    seed_stats: bool = opt(False, "start each mode's refinement history with the statistical explanation too "
                                  "(refinement then never ends below it on valid, but modes may converge on it)")
    stats_modes: bool = opt(True, "add the statistical explainer's word lists to the modes when that raises the "
                                  "neuron's valid score (the best on valid of the LM's modes, both together, and "
                                  "the word lists alone); --no-stats-modes: the LM's modes only")
    list_edits: bool = opt(True, "with refinement, edit the statistical word lists (--stats-modes) from their "
                                 "errors on valid before they join the modes: add the most missed tokens, drop the "
                                 "worst false alarms, each edit kept only if it also holds on the train windows "
                                 "(--no-list-edits: the lists as the statistical explainer chose them)")
    mode_stop: bool = opt(True, "with refinement and --stats-modes, stop refining an LM mode after an iteration "
                                "(not the last) whose best explanation adds nothing to the statistical word lists "
                                "on valid (not kept in their calibrated union, or the union no higher): such a mode "
                                "would not be kept beside the lists (--no-mode-stop: each mode runs until it "
                                "converges or its iterations end)")
    racing: bool = opt(True, "race refinement's and the statistical explainer's candidates: score them on an "
                             "eighth, a quarter, half, then three quarters of the valid excerpts first (highest peaks "
                             "first; stages of at least 5) and drop the clear losers (--no-racing: every candidate on "
                             "all of them)")
    racing_delta: float = opt(0.1, "racing drops a refinement candidate when its bootstrap chance of beating the "
                                   "leader by more than 0.005 is below this (per stage); a statistical candidate when "
                                   "its chance of beating it at all is below half of this")
    test_maps: str = opt("guarded", "how a set of explanations (modes, tier lists) reads its members on test: each "
                                    "member's predictions through a map fitted on valid, then their per-token maximum; "
                                    "guarded: monotone maps where a 2-fold out-of-fold score on valid favours them, "
                                    "else straight lines; monotone; linear: straight lines, as Bills et al. (the "
                                    "scores before 2026-12-04). Selection on valid uses lines either way")
    cluster: ClusterConfig = dataclasses.field(default_factory=ClusterConfig, metadata={"help": "HDBSCAN settings"})

    def __post_init__(self) -> None:
        from .scoring.calibration import KINDS

        if self.test_maps not in KINDS:
            raise ConfigError(f"unknown --test-maps {self.test_maps!r}: use one of {', '.join(KINDS)}")
        for name in ("max_exemplars", "baseline_k", "candidates", "iterations", "patience", "concepts_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 < self.racing_delta < 0.5:
            raise ConfigError(f"--racing-delta must be in (0, 0.5), got {self.racing_delta}")
        if self.method not in METHODS:
            raise ConfigError(f"unknown --method {self.method!r}: use one of {', '.join(METHODS)}")

    @property
    def mode(self) -> str:
        """stats, baseline, norefine or explain: what kind of run this configuration makes (run file names)."""
        if self.method == "stats":
            return "stats"
        return "baseline" if self.baseline else ("explain" if self.refine else "norefine")


@dataclasses.dataclass
class LMConfig(_Config):
    """The explainer LM (:func:`ns_dspy.lms.make_lm`)."""

    spec: str = opt(DEFAULT_LM, "LM: local:NAME|PATH.gguf, openai:MODEL, endpoint:URL@MODEL", flag="--lm",
                    metavar="SPEC")
    temperature: float = opt(DEFAULT_TEMPERATURE, "LM temperature")
    max_tokens: int = opt(1024, "longest answer of one LM call, in tokens (each agent also bounds its own)",
                          flag="--lm-max-tokens")
    timeout: float | None = opt(None, "per-call timeout of openai: and endpoint: LMs in seconds; a call that times "
                                      "out or fails transiently (429, 5xx, a dropped connection) is retried 3 "
                                      "times, waiting at most 4 s before a retry (none: 120)",
                                flag="--lm-timeout", metavar="SECONDS", provenance=False)
    hedge: bool = opt(True, "hedge slow openai:/endpoint: LM calls: a call without an answer for 2x the 90th "
                            "percentile of recent answer times, at least 1 s, is sent once more and the first "
                            "answer wins; at most 10% of calls (--no-lm-hedge: never)", flag="--lm-hedge",
                      provenance=False)
    cache: bool = opt(True, "reuse cached LM answers for identical requests (--no-lm-cache: always call the LM)",
                      flag="--lm-cache", provenance=False)
    seed: int | None = opt(None, "sampling seed of the LM: another seed draws other samples of every answer, e.g. "
                                 "to measure how much a result owes to the LM's sampling (local: the engine's "
                                 "seed; endpoint: sent with every request; openai: sent too, best effort); none: "
                                 "the LM's default, the answers of every run before", flag="--lm-seed", metavar="N")

    def __post_init__(self) -> None:
        if self.seed is not None and (isinstance(self.seed, bool) or not 0 <= self.seed < 2**31):
            raise ConfigError(f"--lm-seed must be a whole number in [0, 2**31), got {self.seed}")
        if not 0 <= self.temperature <= 2:
            raise ConfigError(f"--temperature must be in [0, 2], got {self.temperature}")
        if self.max_tokens < 1:
            raise ConfigError(f"--lm-max-tokens must be at least 1, got {self.max_tokens}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"--lm-timeout must be a positive number of seconds, got {self.timeout}")


@dataclasses.dataclass
class SimulatorConfig(_Config):
    """The simulator (:func:`ns_dspy.simulators.build_simulator`). ``dtype`` and ``device`` set how a local
    model runs (a server's simulator refuses them); ``options`` are the backend's own options, each declared
    and checked by the backend before any model is loaded."""

    spec: str = opt(DEFAULT_SIMULATOR, "KIND[:ARG]: prompted:MODEL, finetuned:ADAPTER_DIR, endpoint:URL@MODEL, "
                                       "keyword", flag="--simulator", metavar="SPEC")
    dtype: str = opt("auto", "dtype of a local simulator model: auto (bfloat16 where the device runs it natively, "
                             "else float32), bfloat16, float16 or float32")
    device: str | None = opt(None, "device of a local simulator model (none: cuda if any)", provenance=False)
    options: dict = opt({}, "an option of the simulator backend, declared by its Options dataclass, e.g. "
                            "batch_size=8 (prompted, finetuned), merge=false (finetuned), timeout=120 (endpoint)",
                        flag="--simulator-opt")
    cache: bool = opt(True, "read and write the simulation cache (--no-simulator-cache or --no-cache: simulate "
                            "everything)", flag="--simulator-cache", aliases=("--cache",), provenance=False)

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise ConfigError(f"--dtype must be auto, bfloat16, float16 or float32, got {self.dtype!r}")
        if self.device:
            from .models.subject import check_device

            check_device(self.device, present=False)  # the name; presence where it loads

    def build_options(self) -> dict[str, Any]:
        """The keyword options :func:`~ns_dspy.simulators.build_simulator` takes for this configuration."""
        return {"dtype": self.dtype, "device": self.device or None, **self.options}


@dataclasses.dataclass
class EmbedderConfig(_Config):
    """The embedder of the Clustering agent (:func:`ns_dspy.agents.build_embedder`)."""

    spec: str = opt(DEFAULT_EMBEDDER, "minilm (offline) or openai[:MODEL]", flag="--embedder", metavar="SPEC")
    options: dict = opt({}, "an option of the embedder, e.g. batch_size=64", flag="--embedder-opt")


@dataclasses.dataclass
class RunConfig(_Config):
    """Everything that decides what a run computes (see the module docstring)."""

    explain: ExplainConfig = dataclasses.field(default_factory=ExplainConfig)
    lm: LMConfig = dataclasses.field(default_factory=LMConfig)
    simulator: SimulatorConfig = dataclasses.field(default_factory=SimulatorConfig)
    embedder: EmbedderConfig = dataclasses.field(default_factory=EmbedderConfig)
    program: str | None = opt("default", "the agents' compiled program: default (the program packaged for the LM, "
                                         "when there is one), none, or a file written by ns-dspy compile --out",
                              flag="--program", metavar="PATH")

    def program_path(self) -> Path | None:
        """The compiled program file this run loads, or None (:func:`ns_dspy.optimize.resolve_program`)."""
        from .optimize.packaged import resolve_program

        return resolve_program(self.program, self.lm.spec, self.explain)

    def replace(self, **sections: Any) -> "RunConfig":
        """A copy with some sections or fields replaced, e.g. ``replace(explain=dict(refine=False))``: a dict
        updates that section's fields, anything else replaces the section."""
        values = {}
        for name, value in sections.items():
            current = getattr(self, name)
            values[name] = dataclasses.replace(current, **value) if isinstance(value, dict) and isinstance(
                current, _Config) else value
        return dataclasses.replace(self, **values)


@dataclasses.dataclass
class ExecutorConfig(_Config):
    """Where a command's work runs: in this process (threads) or on a Ray cluster. It changes how a run executes,
    never what it computes, so it is not part of a run's provenance."""

    executor: str = opt("local", "local (this process) or ray (Ray actors on a cluster; pip install -e \".[ray]\")")
    ray_address: str | None = opt(None, "the Ray cluster: HOST:PORT of its head, ray://HOST:PORT or auto (none: "
                                        "$RAY_ADDRESS, else a new single-machine cluster)", metavar="ADDRESS")
    workers: int | None = opt(None, "Ray workers (none: one per free CPU of the cluster)", metavar="N")
    worker_cpus: float = opt(1.0, "CPUs each Ray worker reserves")
    worker_gpus: float | None = opt(None, "GPUs each Ray worker reserves (none: record takes one per worker where "
                                          "the cluster has GPUs, explain none; give 1 to put a local simulator on "
                                          "a GPU)")

    def __post_init__(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"--executor must be local or ray, got {self.executor!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.worker_cpus < 0 or (self.worker_gpus or 0) < 0:
            raise ConfigError("--worker-cpus and --worker-gpus must be >= 0")
        if self.executor == "local" and (self.ray_address or self.workers is not None):
            raise ConfigError("--ray-address and --workers are for --executor ray: add it, or leave them out")


SECTIONS = ("explain", "lm", "simulator", "embedder", "program")


def add_run_options(parser: argparse.ArgumentParser, sections: Sequence[str] = SECTIONS, *,
                    config_file: bool = True) -> None:
    """Add the options of these :class:`RunConfig` sections (dest ``SECTION.FIELD``) and, with ``config_file``,
    ``--config FILE``. Call after every other option of the command is added: it makes them all remember
    whether they were given (:func:`explicit`), so a file fills only what the command line leaves out."""
    hints = _hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name not in sections:
            continue
        kind, _ = _base_type(hints[f.name])
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, prefix=f"{f.name}.")
        else:  # program
            parser.add_argument(f.metadata["flag"], dest=f.name, default=f.default, metavar=f.metadata["metavar"],
                                help=f.metadata["help"].replace("%", "%%"))
    if config_file:
        parser.add_argument("--config", default=None,
                            help="run configuration file (.json/.toml/.yaml, e.g. the best.json of ns-dspy sweep); "
                                 "options given on the command line override it")
    track_explicit(parser)


def _from_namespace(args: argparse.Namespace, only: set[str] | None = None) -> dict[str, Any]:
    """The nested mapping of the run options in ``args`` (dest ``SECTION.FIELD[.SUB]`` or ``program``); with
    ``only``, just those dests (e.g. the ones given on the command line, :func:`explicit`)."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        head = dest.split(".", 1)[0]
        if head not in SECTIONS or (head == dest and head != "program") or (only is not None and dest not in only):
            continue
        node = out
        parts = dest.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


# --- configuration files --------------------------------------------------------------------------------------
FORMAT = "ns-dspy-explain-config"
VERSION = 2
"""Version 2 holds a whole :class:`RunConfig`; version 1 (explain settings and ``lm.temperature``) still reads."""


@dataclasses.dataclass
class ConfigFile:
    """A parsed configuration file: the (checked, possibly partial) run settings and its provenance."""

    path: Path
    values: dict[str, Any]
    tuned: dict[str, Any]


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """A JSON, TOML or YAML file (by suffix) holding one mapping; any problem is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {what} at {path}: give an existing .json, .toml or .yaml file")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml  # a dependency of optuna

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{what} {path}: unknown file type {suffix or '(none)'}: use .json, .toml or .yaml")
    except ConfigError:
        raise
    except Exception as err:  # JSONDecodeError, TOMLDecodeError, YAMLError, UnicodeDecodeError
        message = " ".join(str(err).split())
        raise ConfigError(f"{what} {path} is malformed: {message}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold a mapping at the top level, got {type(data).__name__}")
    return data


def read_config_file(path: str | Path) -> ConfigFile:
    """A run configuration file: its settings checked against :class:`RunConfig` (version 2, or version 1 with
    only ``explain`` and ``lm.temperature``); unknown keys and wrong types are refused in one line."""
    data = read_mapping(path, "configuration file")
    version = data.get("version", VERSION)
    if data.get("format", FORMAT) != FORMAT or version not in (1, VERSION):
        raise ConfigError(f"{path} is not an ns-dspy run configuration (format {data.get('format')!r}, version "
                          f"{data.get('version')!r}; this ns-dspy reads {FORMAT!r} versions 1 and {VERSION})")
    known = ("format", "version", "tuned") + (SECTIONS if version == VERSION else ("explain", "lm"))
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a configuration file holds "
                          f"{', '.join(k for k in known if k not in ('format', 'version'))}")
    tuned = data.get("tuned", {})
    if not isinstance(tuned, dict):
        raise ConfigError(f"{path}: tuned must be a mapping, got {json_kind(tuned)}")
    settings = {k: v for k, v in data.items() if k in SECTIONS}
    if version == 1:
        lm = settings.get("lm", {})
        if isinstance(lm, dict) and set(lm) - {"temperature"}:
            raise ConfigError(f"{path}: unknown setting lm.{sorted(set(lm) - {'temperature'})[0]}; a version 1 file "
                              "sets only lm.temperature (the LM itself is chosen with --lm)")
    try:
        values = _typed_values(RunConfig, settings, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return ConfigFile(Path(path), values, dict(tuned))


def write_config_file(path: str | Path, config: RunConfig, tuned: dict[str, Any] | None = None) -> Path:
    """Write ``config`` (all of it; execution-only fields too) and provenance atomically as JSON."""
    from .atomic import atomic_write_json

    atomic_write_json(path, {"format": FORMAT, "version": VERSION, **config.to_dict(), "tuned": dict(tuned or {})})
    return Path(path)


def load_run_config(args: argparse.Namespace) -> RunConfig:
    """The one loader: the run options in ``args`` (added by :func:`add_run_options`) over ``args.config``, a
    configuration file, over the defaults. Every value is type-checked and validated, from the file also those
    the command line overrides: a broken file is never half-used."""
    path = getattr(args, "config", None)
    cli = _from_namespace(args)
    if not path:
        return RunConfig.from_dict(cli)
    file = read_config_file(path)
    merged = _merge(_merge(cli, file.values), _from_namespace(args, explicit(args)))
    try:
        config = RunConfig.from_dict(merged)
    except ConfigError as err:
        raise ConfigError(f"{err} (settings from {path} and the command line)") from None
    _warn_tuned(path, file.tuned, config)
    return config


def _warn_tuned(path, tuned: dict[str, Any], config: RunConfig) -> None:
    """Warn when the file was tuned with another LM, simulator, embedder or compiled program than this run's."""
    here = {"lm": config.lm.spec, "simulator": config.simulator.spec, "embedder": config.embedder.spec}
    for option, value in here.items():
        was = tuned.get(option)
        if was is not None and was != value:
            log.warning("%s was tuned with --%s %s; this run uses %s", path, option, was, value)
    if "program" in tuned:
        was, now = tuned.get("program"), config.program_path()
        if (was or now) and (not was or not now or Path(was).resolve() != Path(now).resolve()):
            log.warning("%s was tuned with %s; this run uses %s", path,
                        f"--program {was}" if was else "no compiled program",
                        f"--program {now}" if now else "none")
