"""Neuron-level datasets for DSPy optimizers, built from an exemplar store.

One neuron is one ``dspy.Example``: ``train`` (its top train exemplars, what the agents read), ``valid`` (a
:class:`~ns_dspy.scoring.HeldOut` of its valid split, what the metric scores on) and ``unit`` (its id), with
``train`` and ``valid`` as inputs - exactly the arguments of ``NeuronScope.forward``. Neurons, not exemplars,
are split into compile-train, compile-val and test sets, with a seeded shuffle, so a neuron is in one set
only; the test neurons are never given to an optimizer and only report the before/after score. Test-neuron
examples also carry ``test`` (their test split, not an input), so that score can be read on test data too.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import dspy

from ..errors import ConfigError
from ..scoring import HeldOut
from ..types import UnitId

__all__ = ["NeuronSets", "neuron_example", "neuron_sets", "split_sizes", "DEFAULT_FRACTIONS"]

log = logging.getLogger(__name__)

DEFAULT_FRACTIONS = (0.5, 0.25, 0.25)
"""Shares of the neurons for compile-train, compile-val and test."""


class Shown(list):
    """A neuron's train exemplars; its repr is one line, as DSPy writes examples into its logs."""

    def __repr__(self) -> str:
        return f"<{len(self)} train exemplars>"


def neuron_example(store, unit: UnitId, *, max_exemplars: int = 20) -> dspy.Example | None:
    """The example of one neuron, or None (logged) when it has no activation in its train exemplars."""
    top = store.exemplars(unit, "train", "top")[:max_exemplars]
    train = Shown(top + store.exemplars(unit, "train", "random"))  # top and quiet windows, as explain shows them
    if not any(ex.max_activation > 0 for ex in top):
        log.info("skipping unit %s: no activation in its train exemplars", unit)
        return None
    valid = HeldOut.from_store(store, unit, "valid")
    return dspy.Example(train=train, valid=valid, unit=str(unit)).with_inputs("train", "valid")


def split_sizes(n: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """(train, val, test) counts for ``n`` neurons: val and test get at least one each, train the rest."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not sum(fractions) > 0:
        raise ConfigError(f"--split takes three non-negative shares TRAIN,VAL,TEST, got {list(fractions)}")
    total = sum(fractions)
    n_val = max(1, round(n * fractions[1] / total))
    n_test = max(1, round(n * fractions[2] / total))
    if n - n_val - n_test < 1:
        raise ConfigError(f"{n} usable neurons cannot be split into compile-train, compile-val and test sets: "
                          "give at least 3 (--n-neurons or --neurons)")
    return n - n_val - n_test, n_val, n_test


@dataclass
class NeuronSets:
    """Compile-train, compile-val and test examples, the seed that split them and the units skipped."""

    train: list[dspy.Example]
    val: list[dspy.Example]
    test: list[dspy.Example]
    seed: int
    skipped: list[str] = field(default_factory=list)

    def ids(self) -> dict[str, list[str]]:
        """Unit ids per set, as recorded in a compiled program's manifest."""
        return {"train": [ex.unit for ex in self.train], "val": [ex.unit for ex in self.val],
                "test": [ex.unit for ex in self.test], "skipped": list(self.skipped)}


def neuron_sets(store, units: Sequence[UnitId] | None = None, *, n_neurons: int = 12,
                fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                max_exemplars: int = 20) -> NeuronSets:
    """Split neurons into compile-train / compile-val / test sets, deterministically for a given ``seed``.

    ``units`` given: exactly those (units without activation are skipped). Otherwise ``n_neurons`` usable
    units drawn from the whole store in seeded random order. The usable units are shuffled with ``seed`` and
    cut by ``fractions`` (see :func:`split_sizes`).
    """
    rng = random.Random(seed)
    if units is not None:
        candidates, wanted = list(dict.fromkeys(units)), None
        for unit in candidates:
            store.stats(unit)  # an unrecorded unit is a user mistake: say so before any work
    else:
        if n_neurons < 3:
            raise ConfigError(f"--n-neurons must be at least 3 (train, val and test), got {n_neurons}")
        candidates, wanted = store.units(), n_neurons
        rng.shuffle(candidates)
    examples, skipped = [], []
    for unit in candidates:
        if wanted is not None and len(examples) == wanted:
            break
        example = neuron_example(store, unit, max_exemplars=max_exemplars)
        if example is None:
            skipped.append(str(unit))
        else:
            examples.append(example)
    if wanted is not None and len(examples) < wanted:
        log.warning("--n-neurons %d: the store has only %d usable units (with activation); compiling on those",
                    wanted, len(examples))
    n_train, n_val, _ = split_sizes(len(examples), fractions)
    rng.shuffle(examples)
    sets = NeuronSets(train=examples[:n_train], val=examples[n_train:n_train + n_val],
                      test=examples[n_train + n_val:], seed=seed, skipped=skipped)
    for example in sets.test:  # test data for reporting, on the test neurons only (never inputs)
        example["test"] = HeldOut.from_store(store, UnitId.parse(example.unit), "test")
    log.info("neurons: %d compile-train, %d compile-val, %d test (seed %d, %d skipped)", len(sets.train),
             len(sets.val), len(sets.test), seed, len(skipped))
    return sets
