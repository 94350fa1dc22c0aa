"""Explain configuration files: what ``ns-dspy sweep`` exports and ``ns-dspy explain --config`` reads.

A JSON (or TOML / YAML) document::

    {
      "format": "ns-dspy-explain-config",
      "version": 1,
      "explain": {"candidates": 4, "iterations": 3, ..., "cluster": {"min_cluster_size": 3, "metric": "cosine"}},
      "lm": {"temperature": 0.9},
      "tuned": {"study": "...", "trial": 12, "valid": 0.41, "test": 0.38, "lm": "...", ...}
    }

``explain`` holds :class:`~ns_dspy.program.ExplainConfig` fields with ``cluster`` holding
:class:`~ns_dspy.agents.ClusterConfig` fields; any field may be left out (it keeps its default). ``lm`` holds
the explainer LM's ``temperature``. ``tuned`` is provenance (which sweep, trial, scores, LM, simulator,
embedder and compiled program produced it): it changes nothing, but explain warns when it is run with another
LM, simulator, embedder or program than the configuration was tuned with. ``format`` and ``version`` may be left out of a hand-written
file. Unknown keys are refused, so a typo never passes silently.

Precedence when a command reads a file: options given on the command line > the file > the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tomllib
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_json
from ..config import explicit, from_options
from ..errors import ConfigError

__all__ = ["FORMAT", "VERSION", "ConfigFile", "read_mapping", "read_config_file", "write_config_file",
           "program_config", "DEFAULT_TEMPERATURE"]

log = logging.getLogger(__name__)

FORMAT = "ns-dspy-explain-config"
VERSION = 1
DEFAULT_TEMPERATURE = 0.7
"""The explainer LM's temperature when neither a file nor ``--temperature`` sets it (the CLI's default)."""


@dataclasses.dataclass
class ConfigFile:
    """A parsed configuration file: the explain settings given (possibly partial), the temperature, provenance."""

    path: Path
    explain: dict[str, Any]
    temperature: float | None
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


def _field_names(cls) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def read_config_file(path: str | Path) -> ConfigFile:
    from ..agents import ClusterConfig
    from ..program import ExplainConfig

    data = read_mapping(path, "configuration file")
    unknown = sorted(set(data) - {"format", "version", "explain", "lm", "tuned"})
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; a configuration file holds explain, lm and tuned")
    if data.get("format", FORMAT) != FORMAT or data.get("version", VERSION) != VERSION:
        raise ConfigError(f"{path} is not an ns-dspy explain configuration (format {data.get('format')!r}, version "
                          f"{data.get('version')!r}; this ns-dspy reads {FORMAT!r} version {VERSION})")
    explain = data.get("explain", {})
    lm = data.get("lm", {})
    tuned = data.get("tuned", {})
    for name, value in (("explain", explain), ("lm", lm), ("tuned", tuned)):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {name} must be a mapping, got {type(value).__name__}")
    cluster = explain.get("cluster", {})
    if not isinstance(cluster, dict):
        raise ConfigError(f"{path}: explain.cluster must be a mapping, got {type(cluster).__name__}")
    for where, given, cls in (("explain", explain, ExplainConfig), ("explain.cluster", cluster, ClusterConfig)):
        bad = sorted(set(given) - _field_names(cls))
        if bad:
            raise ConfigError(f"{path}: unknown setting {where}.{bad[0]}; known: {', '.join(sorted(_field_names(cls)))}")
    bad = sorted(set(lm) - {"temperature"})
    if bad:
        raise ConfigError(f"{path}: unknown setting lm.{bad[0]}; the file sets only lm.temperature (the LM itself "
                          "is chosen with --lm)")
    temperature = lm.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))):
        raise ConfigError(f"{path}: lm.temperature must be a number, got {temperature!r}")
    return ConfigFile(Path(path), dict(explain), None if temperature is None else float(temperature), dict(tuned))


def _check_types(cls, values: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` with each value's type checked against the field's default (ints accepted as floats)."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.default is not dataclasses.MISSING}
    for name, value in values.items():
        kind = type(defaults.get(name))
        ok = (isinstance(value, kind) and not (kind is int and isinstance(value, bool))) or (
            kind is float and isinstance(value, int) and not isinstance(value, bool))
        if name in defaults and not ok:
            raise ConfigError(f"{where}.{name} must be {kind.__name__}, got {value!r}")
    return values


def _typed(cls, values: dict[str, Any], where: str):
    """``cls(**values)`` after :func:`_check_types`."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.init and f.default is not dataclasses.MISSING}
    _check_types(cls, values, where)
    return cls(**{k: (float(v) if isinstance(defaults.get(k), float) else v) for k, v in values.items()})


def program_config(args: argparse.Namespace):
    """``(ExplainConfig, temperature)`` from parsed options and ``args.config`` (a file, or None).

    Options given on the command line win over the file, the file over the defaults. Warns when the file
    was tuned with another LM, simulator or embedder than ``args`` names.
    """
    from ..agents import ClusterConfig
    from ..program import ExplainConfig

    given = explicit(args)
    path = getattr(args, "config", None)
    if not path:
        return (from_options(ExplainConfig, args, cluster=from_options(ClusterConfig, args)),
                getattr(args, "temperature", DEFAULT_TEMPERATURE))
    file = read_config_file(path)
    cluster_values = dict(file.explain.get("cluster", {}))
    explain_values = {k: v for k, v in file.explain.items() if k != "cluster"}
    # every value of the file is checked, also those the command line overrides: a broken file is never half-used
    _check_types(ClusterConfig, cluster_values, f"{path}: explain.cluster")
    _check_types(ExplainConfig, explain_values, f"{path}: explain")
    for cls, values in ((ClusterConfig, cluster_values), (ExplainConfig, explain_values)):
        for name in _field_names(cls) - {"cluster"}:
            if (name in given or name not in values) and hasattr(args, name):
                values[name] = getattr(args, name)
    try:
        cluster = _typed(ClusterConfig, cluster_values, "explain.cluster")
        config = _typed(ExplainConfig, {**explain_values, "cluster": cluster}, "explain")
    except ConfigError as err:
        raise ConfigError(f"{err} (settings from {path} and the command line)") from None
    temperature = getattr(args, "temperature", DEFAULT_TEMPERATURE)
    if "temperature" not in given and file.temperature is not None:
        temperature = file.temperature
    for option in ("lm", "simulator", "embedder"):
        tuned, here = file.tuned.get(option), getattr(args, option, None)
        if tuned is not None and here is not None and tuned != here:
            log.warning("%s was tuned with --%s %s; this run uses %s", path, option, tuned, here)
    tuned, here = file.tuned.get("program"), getattr(args, "program", None)
    if "program" in file.tuned and (tuned or here) and (not tuned or not here
                                                        or Path(tuned).resolve() != Path(here).resolve()):
        log.warning("%s was tuned with %s; this run uses %s", path,
                    f"--program {tuned}" if tuned else "no compiled program",
                    f"--program {here}" if here else "none")
    return config, temperature


def write_config_file(path: str | Path, config, temperature: float, tuned: dict[str, Any] | None = None) -> Path:
    """Write ``config`` (an ExplainConfig), ``temperature`` and provenance atomically as JSON."""
    atomic_write_json(path, {"format": FORMAT, "version": VERSION, "explain": config.to_dict(),
                             "lm": {"temperature": temperature}, "tuned": dict(tuned or {})})
    return Path(path)
