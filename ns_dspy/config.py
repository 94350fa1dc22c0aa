"""Configuration dataclasses and the CLI options generated from them.

Each field carries its help text in ``metadata["help"]``, so an option is documented once: the same text
shows in ``--help`` and in the code. ``__post_init__`` validates with :class:`~ns_dspy.errors.ConfigError`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

__all__ = ["opt", "add_options", "from_options"]

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
