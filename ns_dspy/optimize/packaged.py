"""Compiled programs that ship with ns-dspy, and which program a run uses.

``RunConfig.program`` is ``"default"`` (the default), ``"none"`` (or ``None``) or the path of a program made by
``ns-dspy compile --out``. ``"default"`` means: the program compiled for this run's LM that ships in
``ns_dspy/programs/`` (a state file and its manifest, as ``ns-dspy compile`` writes them), when there is one
and it fits the run (the NeuronScope method with the structure it was compiled for: refinement on or off,
the single-pass baseline); otherwise no program. A packaged program is chosen by the LM its manifest names
(``lm``), so an LM with no packaged program runs uncompiled, exactly as before. An explicit path is always
loaded, and refused in one line when it does not fit (:func:`ns_dspy.optimize.load_compiled`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .artifact import STRUCTURAL_KEYS, manifest_path

__all__ = ["DEFAULT", "NONE", "PROGRAMS_DIR", "packaged_programs", "packaged_program", "resolve_program"]

log = logging.getLogger(__name__)

DEFAULT = "default"
NONE = "none"
PROGRAMS_DIR = Path(__file__).resolve().parent.parent / "programs"
"""Where the packaged compiled programs live (package data)."""


def packaged_programs(directory: Path | None = None) -> dict[str, Path]:
    """LM spec -> the packaged program compiled for it (the first by file name where two name one LM), from
    ``directory`` (default :data:`PROGRAMS_DIR`)."""
    return {lm: path for lm, (path, _) in _packaged(directory).items()}


def _packaged(directory: Path | None) -> dict[str, tuple[Path, dict]]:
    """LM spec -> (state file, manifest) of the packaged programs (see :func:`packaged_programs`)."""
    found: dict[str, tuple[Path, dict]] = {}
    for mpath in sorted(Path(directory or PROGRAMS_DIR).glob("*.manifest.json")):
        try:
            manifest = json.loads(mpath.read_text())
        except (OSError, ValueError):  # package data: a broken file is a packaging bug, not the user's
            log.warning("packaged program manifest %s is unreadable; skipped", mpath)
            continue
        state = mpath.with_name(manifest.get("state_file") or mpath.name.replace(".manifest.json", ".json"))
        lm = manifest.get("lm")
        if isinstance(lm, str) and state.is_file() and manifest_path(state) == mpath:
            found.setdefault(lm, (state, manifest))
    return found


def packaged_program(lm_spec: str, explain, directory: Path | None = None) -> Path | None:
    """The packaged program for ``lm_spec`` that fits ``explain`` (an ``ExplainConfig``), or None."""
    found = _packaged(directory).get(lm_spec)
    if found is None or getattr(explain, "method", "neuronscope") != "neuronscope":
        return None
    path, manifest = found
    compiled_with = manifest.get("explain_config", {})
    misfits = [k for k in STRUCTURAL_KEYS if k in compiled_with and compiled_with[k] != getattr(explain, k)]
    if misfits:
        log.info("the packaged program for %s was compiled with %s; this run has %s: running without it", lm_spec,
                 ", ".join(f"{k}={compiled_with[k]}" for k in misfits),
                 ", ".join(f"{k}={getattr(explain, k)}" for k in misfits))
        return None
    return path


def resolve_program(program: str | None, lm_spec: str, explain) -> Path | None:
    """The compiled program file a run loads for ``RunConfig.program`` (see the module docstring)."""
    if program is None or program == NONE:
        return None
    if program == DEFAULT:
        return packaged_program(lm_spec, explain)
    return Path(program)
