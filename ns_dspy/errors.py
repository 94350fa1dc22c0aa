"""User-facing errors.

Every mistake a user can make (a bad path, an unknown model, a malformed file) raises a subclass of
:class:`NsDspyError` whose message is one line saying what to change. The CLI prints that line and exits
non-zero; anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import json

__all__ = ["NsDspyError", "ConfigError", "CorpusError", "ModelError", "StoreError", "RecordingError", "StudyError",
           "json_kind"]


class NsDspyError(Exception):
    """Base class of errors caused by user input; ``str(err)`` is a one-line message naming the fix."""

    exit_code = 2


class ConfigError(NsDspyError, ValueError):
    """An option or configuration value is invalid."""


class CorpusError(NsDspyError):
    """A corpus cannot be opened or read, or it is empty."""


class ModelError(NsDspyError):
    """A subject model, layer, hookpoint or unit index cannot be resolved."""


class StoreError(NsDspyError):
    """An exemplar store is missing, corrupt, foreign or would be overwritten."""


class RecordingError(NsDspyError):
    """Recording met bad data, e.g. NaN activations."""


class StudyError(NsDspyError):
    """An optuna study's storage cannot be opened or reached, or a study holds other settings."""


def json_kind(value) -> str:
    """``value``'s JSON type in words with a short excerpt, for one-line messages about a file's contents."""
    kind = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
    text = json.dumps(value, default=str)
    return kind if value is None else f"{kind} ({text if len(text) <= 30 else text[:30] + '...'})"
