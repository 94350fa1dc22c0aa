"""One compilation end to end: compile, score the uncompiled and the compiled program on the test neurons,
save the compiled one with its manifest.

The LM is copied for each part, so the tokens the optimizer spent are counted apart from the two test
evaluations; every LM call made while compiling (LM copies made inside optimizers and the reflection LM
included) is counted by a shared DSPy usage tracker. Build the LM with DSPy's cache on (``make_lm`` does by
default) and a re-run of the same compilation makes no LM call at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from ..errors import ConfigError
from ..lms import lm_usage
from ..scoring import SimulatorMetric
from .artifact import save_compiled
from .compile import Evaluation, SharedUsage, compile_program, evaluate_program, trainable_modules
from .data import NeuronSets

__all__ = ["CompileReport", "compile_neurons"]

log = logging.getLogger(__name__)


@dataclass
class CompileReport:
    """What a compilation did: where it was saved, test scores before and after, LM tokens spent compiling."""

    path: Path
    manifest_path: Path
    before: Evaluation
    after: Evaluation
    usage: dict[str, Any]
    seconds: float

    @property
    def tokens(self) -> int:
        return self.usage["tokens"]

    def table(self) -> str:
        """Test neurons side by side, uncompiled and compiled (the metric on their valid data, and the same
        explanations on their test data), then the means and the tokens spent."""
        b, a = self.before, self.after
        lines = [f"{'':>10} {'valid (metric)':^21}   {'test':^21}",
                 f"{'test unit':>10} {'uncompiled':>10} {'compiled':>10}   {'uncompiled':>10} {'compiled':>10}"]
        for unit in b.scores:
            failed = [name for name, ev in (("uncompiled", b), ("compiled", a)) if unit in ev.failed]
            lines.append(f"{unit:>10} {b.scores[unit]:>10.3f} {a.scores.get(unit, 0.0):>10.3f}   "
                         f"{b.test_scores.get(unit, 0.0):>10.3f} {a.test_scores.get(unit, 0.0):>10.3f}"
                         + (f"  ({' and '.join(failed)} failed)" if failed else ""))
        lines.append(f"{'mean':>10} {b.mean:>10.3f} {a.mean:>10.3f}   {b.test_mean or 0.0:>10.3f} "
                     f"{a.test_mean or 0.0:>10.3f}")
        calls = self.usage["compile_lm"]
        lines.append(f"LM tokens spent compiling: {self.tokens:,} ({calls['calls']} LM calls, "
                     f"{calls['cached_calls']} answered from the cache)")
        return "\n".join(lines)


def compile_neurons(program, sets: NeuronSets, lm, *, optimizer: str, out: str | Path,
                    options: dict[str, Any] | None = None, reflection_lm=None, optimize_decomposition: bool = False,
                    num_threads: int = 1, provenance: dict[str, Any] | None = None):
    """Compile ``program`` on ``sets.train`` / ``sets.val`` with ``optimizer``, score the uncompiled and the
    compiled program on ``sets.test``, save to ``out`` (see :mod:`ns_dspy.optimize.artifact`) and return
    ``(compiled, report)``. ``provenance`` adds to the manifest what objects cannot tell: the ``lm``,
    ``reflection_lm``, ``simulator`` and ``embedder`` specs, the ``store`` path and the ``run`` provenance
    (:meth:`ns_dspy.build.Built.provenance`)."""
    start = time.perf_counter()
    if Path(out).suffix != ".json":
        raise ConfigError(f"--out {out}: a compiled program is saved as DSPy JSON state; name it *.json")
    if getattr(lm, "cache", True) is False:
        log.warning("the LM is built without DSPy's cache: rerunning this compilation will call it again")
    provenance = dict(provenance or {})
    metric = SimulatorMetric(program.simulator)
    compile_lm, reflection = lm.copy(), (reflection_lm.copy() if reflection_lm is not None else None)
    tracker = SharedUsage()
    with dspy.context(lm=compile_lm, usage_tracker=tracker):  # compile first: a bad option costs no LM call
        compiled = compile_program(program, optimizer=optimizer, trainset=sets.train, valset=sets.val,
                                   metric=metric, options=options, reflection_lm=reflection,
                                   optimize_decomposition=optimize_decomposition, num_threads=num_threads)
    eval_lm = lm.copy()
    with dspy.context(lm=eval_lm):
        before = evaluate_program(program, sets.test, metric, num_threads=num_threads)
        after = evaluate_program(compiled, sets.test, metric, num_threads=num_threads)
    log.info("mean test-neuron score: %.3f uncompiled, %.3f compiled (%d neurons)", before.mean, after.mean,
             len(sets.test))
    usage = {"tokens": tracker.tokens(), "by_lm": tracker.get_total_tokens(), "compile_lm": lm_usage(compile_lm),
             "reflection_lm": lm_usage(reflection) if reflection is not None else None}
    seconds = round(time.perf_counter() - start, 2)
    manifest = {
        "optimizer": optimizer,
        "options": dict(options or {}),
        "optimized": list(trainable_modules(optimize_decomposition)),
        "lm": provenance.get("lm", getattr(lm, "model", None)),
        "reflection_lm": provenance.get("reflection_lm", getattr(reflection_lm, "model", None)),
        "simulator": {"spec": provenance.get("simulator"), "cache_key": program.simulator.cache_key},
        "embedder": provenance.get("embedder", program.clustering.embedder.name),
        "store": provenance.get("store"),
        "run": provenance.get("run"),  # the run configuration and components' cache keys (ns_dspy.build)
        "seed": sets.seed,
        "units": sets.ids(),
        "scores": {"neurons": "test", "mean": "SimulatorMetric on their valid data",
                   "test_mean": "the same explanations on their test data",
                   "uncompiled": before.to_dict(), "compiled": after.to_dict()},
        "lm_usage": usage,
        "threads": num_threads,
        "seconds": seconds,
    }
    mpath = save_compiled(compiled, out, manifest)
    return compiled, CompileReport(Path(out), mpath, before, after, usage, seconds)
