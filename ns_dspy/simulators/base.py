"""The simulator contract: predict a unit's per-token activation from an explanation.

A simulator reads an explanation and a text (an exemplar's tokens) and predicts, for every token, the
expected value of the unit's activation on the 0..10 scale of Bills et al. (2023). The score of an
explanation is the correlation of these predictions with the true activations (``ns_dspy.scoring``).

Implementations register by ``kind`` where they are defined; :func:`build_simulator` builds one from a spec
string ``KIND[:ARG]`` such as ``prompted:gemma-3-270m`` or ``endpoint:http://127.0.0.1:8000/v1@my-model``.
The backends shipped here are imported only when first needed: kind ``K`` lives in the module
``ns_dspy.simulators.K``, which :func:`build_simulator` imports for a ``K:...`` spec (and
:func:`simulator_kinds` imports them all). So importing this module or ``ns_dspy.simulators`` imports neither
torch nor openai, and neither does building a ``keyword`` simulator.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
import typing
from typing import ClassVar

import numpy as np

from ..registry import Pluggable, Registry
from ..types import Exemplar

from ..config import DEFAULT_SIMULATOR

__all__ = ["Simulator", "LockedSimulator", "NoOptions", "build_simulator", "check_simulator", "positive", "simulator_kinds",
           "BINS", "DEFAULT_SIMULATOR"]

BINS = 11
"""Activations are predicted as a distribution over the integer bins 0..10."""


class Simulator(Pluggable, ABC):
    """Predicts per-token activations from explanations.

    Contract:
      * :meth:`simulate` returns ``preds[i][j]``: a float32 array with one expected value in [0, 10] per token
        of ``exemplars[j]``, for ``explanations[i]``. Work is batched across both lists.
      * Deterministic: the same inputs give the same predictions (no sampling), so they can be cached under
        :attr:`cache_key`, which names everything that changes predictions (model, adapter, prompt version).
      * Exemplars may carry only token strings (imported from another tool's tokenizer); every simulator must
        handle them, aligning by text where it needs its own tokens.
      * One call at a time per instance unless a subclass documents otherwise (wrap it in
        :class:`LockedSimulator` to share it between threads).
      * A simulator is a client, like an LM: it holds a model, a cache file or a session, and is never
        copied (``copy.deepcopy`` returns it), so copying a program shares its simulator.
    """

    registry: ClassVar[Registry] = Registry("simulator", form="KIND[:ARG]")
    Options: ClassVar[type] = None  # set below: NoOptions
    """The options a spec of this kind takes (``build_simulator(spec, **options)``, ``--simulator-opt``): a
    dataclass, so each option is declared, typed and documented once; :meth:`parse_options` checks them all
    before any model is loaded."""
    run_options: ClassVar[str] = "use"
    """What the run-level ``dtype`` / ``device`` options (every command passes them) mean to this kind: ``use``
    (it runs a model in this process), ``ignore`` (it runs no model) or ``refuse`` (a server runs its model: a
    value other than the default is a mistake, refused in one line)."""

    @property
    @abstractmethod
    def cache_key(self) -> str:
        """A string naming everything that changes this simulator's predictions."""

    @abstractmethod
    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        """Expected activation (0..10) per token, for every (explanation, exemplar) pair."""

    def close(self) -> None:
        """Release resources (servers, sessions); the default does nothing."""

    def __deepcopy__(self, memo) -> "Simulator":
        return self

    @classmethod
    def check_spec(cls, arg: str, **options) -> None:
        """Refuse in one line what :meth:`from_spec` would refuse that can be seen without loading anything
        (the argument, the options); kinds with an argument override it."""
        cls.parse_options(options)

    @classmethod
    def parse_options(cls, options: dict):
        """``options`` as this kind's :attr:`Options` (None means the option's default): an option it does not
        take, a value of the wrong type or out of range is refused in one line, never dropped."""
        from ..config import _check_value
        from ..errors import ConfigError

        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ConfigError(f"unknown {cls.kind} simulator option(s) {', '.join(unknown)}: it takes "
                              f"{', '.join(fields) or 'none'}")
        hints = typing.get_type_hints(cls.Options)
        values = {name: _check_value(value, hints[name], f"{cls.kind} simulator option {name}")
                  for name, value in options.items() if value is not None}
        return cls.Options(**values)


@dataclasses.dataclass
class NoOptions:
    """A kind that takes no option."""


Simulator.Options = NoOptions


def positive(kind: str, name: str, value, minimum=1) -> None:
    """Refuse, in one line, an option below ``minimum``."""
    if value < minimum:
        from ..errors import ConfigError

        raise ConfigError(f"{kind} simulator option {name} must be at least {minimum}, got {value!r}")


class LockedSimulator(Simulator):
    """Serialises calls to a simulator shared by threads (one model, one forward at a time)."""

    def __init__(self, inner: Simulator):
        self.inner, self._lock = inner, threading.Lock()

    @property
    def cache_key(self) -> str:
        return self.inner.cache_key

    def simulate(self, explanations: Sequence[str], exemplars: Sequence[Exemplar]) -> list[list[np.ndarray]]:
        with self._lock:
            return self.inner.simulate(explanations, exemplars)

    def close(self) -> None:
        self.inner.close()


_PACKAGE = __name__.rpartition(".")[0]


def _import_backend(kind: str) -> None:
    """Import this package's module named ``kind`` (where that kind registers itself), if there is one."""
    if kind.isidentifier() and kind not in Simulator.registry:
        name = f"{_PACKAGE}.{kind}"
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def simulator_kinds() -> list[str]:
    """Every registered kind, the shipped backends included (this imports all of them)."""
    package = importlib.import_module(_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        _import_backend(module.name)
    return Simulator.kinds()


RUN_OPTIONS = ("dtype", "device")
"""Options every command passes to every simulator; they set how a *local* model runs."""


def _resolve(spec: str, options: dict) -> tuple[type[Simulator], str, dict]:
    """(the kind's class, ARG, the options it takes) for ``KIND[:ARG]``; the run-level options (``dtype``,
    ``device``) kept, dropped or refused as the kind's ``run_options`` says."""
    kind, _, arg = spec.partition(":")
    _import_backend(kind)
    if kind not in Simulator.registry:
        simulator_kinds()  # an unknown kind: the error lists every kind
    impl = Simulator.registry.lookup(kind, shown=spec)
    options = dict(options)
    if impl.run_options != "use":
        for name in RUN_OPTIONS:
            value = options.pop(name, None)
            if impl.run_options == "refuse" and value not in (None, "auto", ""):
                from ..errors import ConfigError

                raise ConfigError(f"--{name} {value} sets how a local simulator runs, but {impl.kind}: simulators "
                                  f"run on their server: leave --{name} out")
    return impl, arg, options


def build_simulator(spec: str, **options) -> Simulator:
    """``KIND[:ARG]`` -> a simulator, e.g. ``prompted:gemma-3-270m``. The run-level options (``dtype``,
    ``device``) reach a simulator as its kind's ``run_options`` says."""
    impl, arg, options = _resolve(spec, options)
    return impl.from_spec(arg, **options)


def check_simulator(spec: str, **options) -> None:
    """Everything :func:`build_simulator` would refuse that can be seen without loading a model or calling a
    server (the kind, its argument, its options): a one-line ConfigError, e.g. in a driver before its workers
    build the simulator."""
    impl, arg, options = _resolve(spec, options)
    impl.check_spec(arg, **options)
