"""One trial: a configuration run over the fixed sweep neurons, scored on their valid data.

:func:`sweep_neurons` fixes the neurons (given, or drawn with a seed; neurons with no activation in their
train exemplars are skipped), the same in every worker. :class:`Evaluator` runs the real NeuronScope program
with one configuration on one neuron, with the cached agents of :mod:`ns_dspy.sweep.cached` swapped in.
:class:`Objective` is what optuna calls: it draws a configuration from the space, evaluates the neurons in
order and after each one reports the running mean of their valid scores (step ``k`` = the first ``k``
neurons), so a pruner compares trials on the same neurons and stops a bad one early. It returns the mean
valid score, and with the tokens objective also the LM tokens the configuration costs.

A neuron whose agents fail on their own output (:class:`~ns_dspy.agents.AgentError`, e.g. an LM answer that
could not be parsed) scores 0 for that configuration and is listed in the trial; any other failure (the LM
server down) fails the trial with one line, since its scores would say nothing about the configuration.
Test data is never read here.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import dspy

from ..agents import AgentError
from ..errors import ConfigError, NsDspyError
from ..program import ExplainConfig, NeuronScope
from ..scoring import HeldOut
from ..types import Exemplar, UnitId
from .cache import WorkCache
from .cached import (CachedDecomposition, CachedEmbedder, CachedHypothesis, CachedRefinement, Ledger,
                     exemplars_digest, lm_identity)
from .space import SearchSpace, apply_params
from ..machine import process_space
from .study import SurplusTrial, is_surplus

__all__ = ["SweepNeuron", "NeuronResult", "TrialError", "sweep_neurons", "Evaluator", "Objective"]

log = logging.getLogger(__name__)


class TrialError(NsDspyError):
    """A trial could not be evaluated for a reason outside its configuration (e.g. the LM server is down)."""


@dataclass
class SweepNeuron:
    """One sweep neuron: all its top train exemplars, its valid data and a digest of both."""

    unit: UnitId
    train: list[Exemplar]
    valid: HeldOut
    key: str


@dataclass
class NeuronResult:
    unit: UnitId
    valid: float
    explanations: list[str]
    error: str | None
    ledger: Ledger = field(default_factory=Ledger)
    seconds: float = 0.0


def sweep_neurons(store, units: list[UnitId] | None, *, n_neurons: int = 8, seed: int = 0) -> list[SweepNeuron]:
    """The fixed neurons of a sweep: ``units`` in the order given, or ``n_neurons`` usable units of the store in
    seeded random order. Unrecorded units are refused before any work."""
    if units is not None:
        candidates, wanted = list(dict.fromkeys(units)), None
        for unit in candidates:
            store.stats(unit)
    else:
        if n_neurons < 1:
            raise ConfigError(f"--n-neurons must be at least 1, got {n_neurons}")
        candidates, wanted = store.units(), n_neurons
        random.Random(seed).shuffle(candidates)
    neurons, skipped = [], []
    for unit in candidates:
        if wanted is not None and len(neurons) == wanted:
            break
        top = store.exemplars(unit, "train", "top")
        train = top + store.exemplars(unit, "train", "random")  # the agents' evidence: top and quiet windows
        if not any(ex.max_activation > 0 for ex in top):
            skipped.append(str(unit))
            continue
        valid = HeldOut.from_store(store, unit, "valid")
        neurons.append(SweepNeuron(unit, train, valid, exemplars_digest(list(train) + list(valid.exemplars))))
    if skipped:
        log.info("skipping %d unit(s) with no activation in their train exemplars: %s", len(skipped),
                 ", ".join(skipped[:10]))
    if not neurons:
        raise ConfigError("no usable sweep neuron: every unit given has no activation in its train exemplars")
    return neurons


class Evaluator:
    """Runs NeuronScope with a given configuration on one sweep neuron, through the work cache.

    ``program`` is the base program (its simulator, embedder and predictor states - a compiled program's
    included - are used; its configuration is not). ``lm`` is the explainer LM built without DSPy's own
    cache (the work cache is the reuse layer, so every LM call is a real one and counted); ``lm_spec`` is
    the user's spec, part of cache keys.
    """

    def __init__(self, program: NeuronScope, cache: WorkCache, lm, lm_spec: str):
        self.simulator, self.cache, self.lm, self.lm_spec = program.simulator, cache, lm, lm_spec
        self.embedder = CachedEmbedder(program.clustering.embedder, cache)
        self.state = program.dump_state()

    def program_for(self, config: ExplainConfig, neuron: SweepNeuron, ledger: Ledger, lm) -> NeuronScope:
        program = NeuronScope(self.simulator, self.embedder, config)
        program.load_state(self.state)
        key = lm_identity(self.lm_spec, lm)
        program.hypothesis = CachedHypothesis(program.hypothesis, self.cache, ledger, key)
        program.decomposition = CachedDecomposition(program.decomposition, self.cache, ledger, key)
        program.refinement = CachedRefinement(program.refinement, self.cache, ledger, key,
                                              {"valid": neuron.key, "simulator": self.simulator.cache_key})
        return program

    def evaluate(self, config: ExplainConfig, temperature: float, neuron: SweepNeuron) -> NeuronResult:
        start = time.perf_counter()
        lm = self.lm.copy(temperature=temperature)
        ledger = Ledger()
        program = self.program_for(config, neuron, ledger, lm)
        train = neuron.train  # the Hypothesis agent shows the strongest config.max_exemplars of the top ones
        try:
            with dspy.context(lm=lm):
                pred = program(train=train, valid=neuron.valid)
            result = NeuronResult(neuron.unit, float(pred.polysemantic), list(pred.explanations), None, ledger)
        except AgentError as err:
            result = NeuronResult(neuron.unit, 0.0, [], str(err), ledger)
        except NsDspyError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise TrialError(f"unit {neuron.unit} could not be evaluated: {type(err).__name__}: {first}") from err
        result.seconds = round(time.perf_counter() - start, 3)
        return result


def config_record(config: ExplainConfig, temperature: float) -> dict[str, Any]:
    """A trial's full configuration as stored in the study (what ``best.json`` is written from)."""
    return {"explain": config.to_dict(), "temperature": temperature}


class Objective:
    """``objective(trial) -> mean valid score`` (or ``(score, LM tokens)`` with ``tokens=True``).

    ``prune``: report the running mean after each neuron and stop when the study's pruner says so (optuna
    prunes single-objective studies only; with ``tokens`` the per-neuron scores are still stored in the
    trial's user attributes). ``n_trials`` bounds the study: a trial that another worker's trial would push
    past it is given back unrun (see :mod:`ns_dspy.sweep.study`).
    """

    def __init__(self, evaluator: Evaluator, space: SearchSpace, base: ExplainConfig, temperature: float,
                 neurons: list[SweepNeuron], *, tokens: bool = False, prune: bool = True, n_trials: int | None = None):
        self.evaluator, self.space, self.base, self.temperature = evaluator, space, base, temperature
        self.neurons, self.tokens, self.prune, self.n_trials = neurons, tokens, prune and not tokens, n_trials
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.process = process_space()
        self.last_number: int | None = None  # the trial begun last (logged by run_worker)
        self._claimed: int | None = None  # the trial this worker's name was last written into

    def claim(self, trial) -> None:
        """Write this worker's name into ``trial`` (once; :func:`~ns_dspy.sweep.study.run_worker` does it while
        Ctrl-C is held back, so that a trial optuna has created is never left nameless by one)."""
        if self._claimed == trial.number:
            return
        self.last_number = trial.number
        # the name last: a trial is "named" only once both are written, so a kill -9 between the two writes
        # leaves a nameless trial (failed after the grace), never a named one no machine can claim
        trial.set_user_attr("process_space", self.process)
        trial.set_user_attr("worker", self.worker)
        self._claimed = trial.number

    def __call__(self, trial):
        import optuna

        self.claim(trial)
        if self.n_trials is not None and is_surplus(trial, self.n_trials):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number} not run: the study already has {self.n_trials} trials")
        config, temperature = apply_params(self.base, self.temperature, self.space.suggest(trial))
        trial.set_user_attr("config", config_record(config, temperature))
        start = time.perf_counter()
        results: list[NeuronResult] = []
        total = Ledger()
        for k, neuron in enumerate(self.neurons, 1):
            result = self.evaluator.evaluate(config, temperature, neuron)
            results.append(result)
            total.add(result.ledger)
            mean = sum(r.valid for r in results) / k
            log.info("trial %d [%d/%d] %s: valid %.3f%s (%d LM calls, %d of %d stages cached)", trial.number, k,
                     len(self.neurons), neuron.unit, result.valid, f" FAILED: {result.error}" if result.error else "",
                     result.ledger.calls, result.ledger.hits, result.ledger.hits + result.ledger.misses)
            if self.prune:
                trial.report(mean, step=k)
                if k < len(self.neurons) and trial.should_prune():
                    self._record(trial, results, total, start)
                    raise optuna.TrialPruned(f"mean valid {mean:.3f} after {k} of {len(self.neurons)} neurons")
        self._record(trial, results, total, start)
        mean = sum(r.valid for r in results) / len(results)
        return (mean, float(total.cost_tokens)) if self.tokens else mean

    def _record(self, trial, results: list[NeuronResult], total: Ledger, start: float) -> None:
        trial.set_user_attr("neurons", {str(r.unit): {"valid": r.valid, "number": len(r.explanations),
                                                      "lm_tokens": r.ledger.cost_tokens, "error": r.error,
                                                      "seconds": r.seconds} for r in results})
        trial.set_user_attr("explanations", {str(r.unit): r.explanations for r in results})
        done = [r for r in results if r.error is None]
        trial.set_user_attr("number", sum(len(r.explanations) for r in done) / len(done) if done else 0.0)
        trial.set_user_attr("failed", len(results) - len(done))
        trial.set_user_attr("lm_tokens", total.cost_tokens)
        trial.set_user_attr("lm_tokens_spent", total.spent_tokens)
        trial.set_user_attr("lm_calls", total.calls)
        trial.set_user_attr("cache_hits", total.hits)
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
