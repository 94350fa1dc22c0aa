"""Plug-in points: one mechanism, :class:`Registry`, for every place where implementations register by name.

A :class:`Registry` maps names to entries (functions, classes or instances). Implementations register where
they are defined, with ``@REG.register("name")`` on a function or ``REG.add("name", entry)``; a name already
taken by another entry is refused. ``REG.lookup(name)`` raises a one-line error listing the known names;
``REG.names()`` lists them sorted. No list of implementations is kept by hand anywhere: ``grep -rn
"Registry("`` finds every plug-in point of the package.

:class:`Pluggable` is the class-based front end: a plug-in base class mixes it in and declares its own
``registry = Registry("WHAT", form="KIND[:ARG]")`` (a plain ``registry = {}`` is turned into one, named by the
base's ``plugin``); every subclass with a ``kind`` is entered there when it is defined, and
``Base.build("KIND[:ARG]", **options)`` calls that class's ``from_spec(ARG, **options)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, ClassVar, Generic, TypeVar

from .errors import ConfigError

__all__ = ["Registry", "Pluggable"]

T = TypeVar("T")
F = TypeVar("F")


def _definition(entry: Any) -> tuple[str, str] | None:
    """Where a function or class was defined (None for other objects)."""
    qualname = getattr(entry, "__qualname__", None)
    return None if qualname is None else (getattr(entry, "__module__", ""), qualname)


class Registry(MutableMapping[str, T], Generic[T]):
    """Name -> entry, filled by the implementations themselves (see the module docstring).

    ``what`` names an entry in messages ("optimizer", "LM kind"); ``form`` (e.g. ``"KIND[:ARG]"``) is how a
    user writes one, added to the unknown-name message; ``error`` is the one-line user error that
    :meth:`lookup` raises. Iteration follows registration order; :meth:`names` is sorted.

    Registering a name twice is refused, except that a function or class defined again at the same place (a
    reloaded module) replaces its earlier self. Item assignment (``REG[name] = entry``) replaces an entry
    outright; it is meant for tests (``monkeypatch.setitem``), not for registering.
    """

    def __init__(self, what: str, *, form: str = "", error: type[Exception] = ConfigError):
        self.what, self.form, self.error = what, form, error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` and return it; a name taken by another entry is refused."""
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.what} needs a non-empty string name, got {name!r}")
        old = self._entries.get(name, entry)
        if old is not entry and (_definition(old) is None or _definition(old) != _definition(entry)):
            raise ValueError(f"{self.what} {name!r} is already registered ({_describe(old)}): "
                             f"give {_describe(entry)} another name")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[F], F]:
        """A decorator registering the function (or class) it decorates under ``name``; it returns it unchanged."""

        def register(entry: F) -> F:
            return self.add(name, entry)

        return register

    def lookup(self, name: str, *, shown: str | None = None) -> T:
        """The entry of ``name``, or the one-line :attr:`error` "unknown WHAT 'SHOWN': use one of ..." (``shown``,
        default ``name``, is what the user wrote)."""
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(self.unknown(name if shown is None else shown)) from None

    def unknown(self, shown: str) -> str:
        """The message for an unknown name: what was written and every registered name."""
        if not self._entries:
            return f"unknown {self.what} {shown!r}: none is registered"
        return (f"unknown {self.what} {shown!r}: use one of {', '.join(self.names())}"
                + (f" as {self.form}" if self.form else ""))

    def names(self) -> list[str]:
        return sorted(self._entries)

    # Mapping protocol: registries are read like dicts (``name in REG``, ``REG[name]``, ``REG.get(name)``).
    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"


def _describe(entry: Any) -> str:
    where = _definition(entry)
    return f"{where[0]}.{where[1]}" if where else f"a {type(entry).__name__}"


class Pluggable:
    """Mixin for plug-in base classes (see the module docstring)."""

    registry: ClassVar[Registry[type]]
    kind: ClassVar[str] = ""
    plugin: ClassVar[str] = "plug-in"  # what the base is called in messages, e.g. "simulator"

    def __init_subclass__(cls, **kw: Any):
        super().__init_subclass__(**kw)
        declared = cls.__dict__.get("registry")
        if declared is not None:  # a plug-in base
            if isinstance(declared, Registry):
                if "plugin" not in cls.__dict__:
                    cls.plugin = declared.what
            else:
                registry = Registry(cls.plugin, form="KIND[:ARG]")
                for name, impl in dict(declared).items():
                    registry.add(name, impl)
                cls.registry = registry
        if cls.__dict__.get("kind"):
            base = next(b for b in cls.__mro__[1:] if "registry" in b.__dict__)
            base.registry.add(cls.kind, cls)

    @classmethod
    def kinds(cls) -> list[str]:
        return cls.registry.names()

    @classmethod
    def build(cls, spec: str, **options: Any):
        kind, _, arg = spec.partition(":")
        return cls.registry.lookup(kind, shown=spec).from_spec(arg, **options)

    @classmethod
    def from_spec(cls, arg: str, **options: Any):
        """Build from the part of a spec after ``KIND:``; implementations override as needed."""
        raise ConfigError(f"{cls.plugin} kind {cls.kind!r} cannot be built from a spec")
