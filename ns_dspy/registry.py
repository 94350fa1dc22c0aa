"""Plug-in points: implementations register by ``kind`` where they are defined, and are built from specs.

A plug-in base class mixes in :class:`Pluggable` and declares its own ``registry = {}``; every subclass with
a ``kind`` is entered there when it is defined. ``Base.build("KIND[:ARG]", **options)`` calls that class's
``from_spec(ARG, **options)``. No list of implementations is kept by hand anywhere.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .errors import ConfigError

__all__ = ["Pluggable"]


class Pluggable:
    """Mixin for plug-in base classes (see the module docstring)."""

    registry: ClassVar[dict[str, type]]
    kind: ClassVar[str] = ""
    plugin: ClassVar[str] = "plug-in"  # what the base is called in messages, e.g. "simulator"

    def __init_subclass__(cls, **kw: Any):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("kind"):
            base = next(b for b in cls.__mro__[1:] if "registry" in b.__dict__)
            base.registry[cls.kind] = cls

    @classmethod
    def kinds(cls) -> list[str]:
        return sorted(cls.registry)

    @classmethod
    def build(cls, spec: str, **options: Any):
        kind, _, arg = spec.partition(":")
        try:
            impl = cls.registry[kind]
        except KeyError:
            raise ConfigError(f"unknown {cls.plugin} {spec!r}: use one of {', '.join(cls.kinds())} "
                              "as KIND[:ARG]") from None
        return impl.from_spec(arg, **options)

    @classmethod
    def from_spec(cls, arg: str, **options: Any):
        """Build from the part of a spec after ``KIND:``; implementations override as needed."""
        raise ConfigError(f"{cls.plugin} kind {cls.kind!r} cannot be built from a spec")
