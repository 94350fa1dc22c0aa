"""A compiled program on disk: DSPy's JSON state plus a manifest beside it, and the check made on loading.

``compiled.json`` is exactly what ``program.save("compiled.json")`` writes (no pickle), so ``program.load``
reads it too; ``compiled.manifest.json`` records how it was made (optimizer, options, LM, simulator, neuron
sets, scores before and after on the test neurons, tokens spent), the program's fingerprint and a digest of
the state file. Both are written atomically. :func:`load_compiled` refuses, in one line, a program built
with another configuration: other predictors or signature fields, or other values of the ``ExplainConfig``
keys that decide which agents run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import orjson

from .. import __version__
from ..atomic import atomic_write_bytes, atomic_write_json
from ..errors import ConfigError

__all__ = ["FORMAT", "STRUCTURAL_KEYS", "fingerprint", "manifest_path", "read_manifest", "save_compiled",
           "load_compiled"]

log = logging.getLogger(__name__)

FORMAT = "ns-dspy-compiled/1"
STRUCTURAL_KEYS = ("refine", "baseline")
"""``ExplainConfig`` keys that decide which agents run, so a compiled program only fits the same values."""


def fingerprint(program) -> dict[str, Any]:
    """Names and input/output fields of the program's predictors, and a digest of them (instructions and
    demos are what compiling changes, so they are left out)."""
    predictors = {name: {"inputs": list(p.signature.input_fields), "outputs": list(p.signature.output_fields)}
                  for name, p in program.named_predictors()}
    digest = hashlib.sha256(json.dumps(predictors, sort_keys=True).encode()).hexdigest()[:16]
    return {"predictors": predictors, "sha256": digest}


def manifest_path(path: str | Path) -> Path:
    """``compiled.json`` -> ``compiled.manifest.json``."""
    path = Path(path)
    return path.with_name(path.stem + ".manifest.json")


def _state_bytes(program) -> bytes:
    from dspy.utils.saving import get_dependency_versions

    state = program.dump_state()
    state["metadata"] = {"dependency_versions": get_dependency_versions()}  # as program.save writes it
    return orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def save_compiled(program, path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``program``'s DSPy JSON state to ``path`` and ``manifest`` (completed with the format, versions,
    ``ExplainConfig``, fingerprint and state digest) to :func:`manifest_path`; returns the manifest's path."""
    import dspy

    path = Path(path)
    if path.suffix != ".json":
        raise ConfigError(f"--out {path}: a compiled program is saved as DSPy JSON state; name it *.json")
    data = _state_bytes(program)
    full = {**manifest, "format": FORMAT, "ns_dspy_version": __version__, "dspy_version": dspy.__version__,
            "explain_config": program.config.to_dict(), "fingerprint": fingerprint(program),
            "state_file": path.name, "state_sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(path, data)
    atomic_write_json(manifest_path(path), full)
    return manifest_path(path)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the compiled program at ``path`` (a ConfigError naming the fix if it is missing)."""
    path, mpath = Path(path), manifest_path(path)
    if not path.is_file():
        raise ConfigError(f"no compiled program at {path}: make one with ns-dspy compile --out {path}")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} has no manifest {mpath.name} beside it: load programs saved by ns-dspy compile")
    except (OSError, ValueError) as err:
        raise ConfigError(f"{mpath} is not a readable manifest ({err}): recompile") from None
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{mpath} is not an ns-dspy compiled-program manifest ({FORMAT}): recompile")
    return manifest


def _mismatches(manifest: dict, program) -> list[str]:
    problems = []
    was, now = manifest["fingerprint"]["predictors"], fingerprint(program)["predictors"]
    if set(was) != set(now):
        problems.append(f"predictors {', '.join(sorted(set(was) - set(now))) or 'none'} only there, "
                        f"{', '.join(sorted(set(now) - set(was))) or 'none'} only here")
    else:
        for name in sorted(was):
            if was[name] != now[name]:
                fields = lambda d: f"{','.join(d['inputs'])} -> {','.join(d['outputs'])}"  # noqa: E731
                problems.append(f"{name} is {fields(was[name])} there, {fields(now[name])} here")
    config = manifest.get("explain_config", {})
    for key in STRUCTURAL_KEYS:
        if key in config and config[key] != getattr(program.config, key):
            problems.append(f"{key}={config[key]} there, {key}={getattr(program.config, key)} here")
    return problems


def load_compiled(path: str | Path, program):
    """Load the compiled state at ``path`` into ``program`` (a freshly built ``NeuronScope``) and return it.

    Refuses with a one-line :class:`ConfigError` when the manifest is missing, the state file is not the one
    the manifest describes, or the program was compiled for another configuration.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if hashlib.sha256(path.read_bytes()).hexdigest() != manifest.get("state_sha256"):
        raise ConfigError(f"{path} is not the state its manifest {manifest_path(path).name} describes: recompile")
    problems = _mismatches(manifest, program)
    if problems:
        raise ConfigError(f"compiled for another configuration: {'; '.join(problems)} - build the program as "
                          f"recorded in {manifest_path(path).name} or recompile")
    other = {k: v for k, v in manifest.get("explain_config", {}).items()
             if k not in STRUCTURAL_KEYS and v != program.config.to_dict().get(k)}
    if other:
        from .packaged import PROGRAMS_DIR

        # a program that ships was compiled once, on its manifest's settings: no news for the user of a default run
        shipped = path.resolve().parent == PROGRAMS_DIR
        log.log(logging.DEBUG if shipped else logging.INFO, "%s was compiled with other settings (%s); they do not "
                "change the program's structure", path.name, ", ".join(f"{k}={v}" for k, v in sorted(other.items())))
    program.load(str(path))
    log.info("loaded %s (compiled with %s)", path, manifest.get("optimizer", "?"))
    return program
