"""Configuration dataclasses and the CLI options generated from them.

Each field carries its help text in ``metadata["help"]``, so an option is documented once: the same text
shows in ``--help`` and in the code. ``__post_init__`` validates with :class:`~ns_dspy.errors.ConfigError`.

:func:`track_explicit` makes a parser remember which options were given on the command line, so values from a
configuration file can fill the rest (:func:`explicit`): command line > file > defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

__all__ = ["opt", "add_options", "from_options", "track_explicit", "explicit"]

T = TypeVar("T")


def opt(default: Any, help: str, **kw) -> Any:
    """A dataclass field with a default and its ``--help`` text."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per field of dataclass ``cls`` (types and defaults from the field)."""
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        if name in skip or not f.init:
            continue
        help_text = f.metadata.get("help", "")
        default = f.default
        kind = type(default) if default is not None else str
        if kind is bool:
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, type=kind, default=default, metavar=name.upper(),
                                help=f"{help_text} (default: {default!r})")


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
