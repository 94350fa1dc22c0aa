"""The study: created or joined, run to ``n_trials`` by any number of workers, then reported once on test.

**Joining and resuming.** ``open_study`` creates the study or loads it (``load_if_exists``). The sweep's
settings - space, neurons (a digest of their data), base configuration, objectives, LM, simulator and embedder
specs, program state - are stored in the study on creation; a worker or a resumed run with other settings is
refused in one line, so one study never mixes settings.

**How many trials.** ``n_trials`` is the study's total, not each worker's: finished trials (complete or
pruned) count towards it, whoever ran them and however often the sweep was interrupted. A worker starts a
trial only while finished + running trials are fewer than ``n_trials``; should two workers start the last
trial at the same moment, the later trial (by number) is given back unrun: it is marked FAIL with the user
attribute ``surplus`` and ignored everywhere. An interrupted trial (Ctrl-C) is marked FAIL by optuna and does
not count. A Ctrl-C is held back while optuna creates a trial and until the worker's name is in it, and while
optuna finishes it (:class:`InterruptGate`): it is raised inside the trial or right after it, so a Ctrl-C never
leaves a trial RUNNING. A worker killed outright leaves a RUNNING trial: a worker starting on the same machine marks it
FAIL at once (its process is gone), and on other machines heartbeats do so after the grace period.

**Choosing and reporting.** The chosen trial is the best complete one: highest mean valid score (with the
tokens objective, the Pareto-optimal trial with the highest score; fewer LM tokens, then the earlier trial,
break ties). Its
explanations - already in the study, so no LM call - are scored on the test data of the sweep neurons once,
when the study is complete and no trial is running; the result is stored in the study (``test:TRIAL``) and
only read afterwards.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import StudyError
from ..scoring import HeldOut, polysemantic
from ..machine import pid_alive, process_space

__all__ = ["InterruptGate", "SurplusTrial", "is_surplus", "open_study", "run_worker", "choose", "score_on_test", "counts",
           "SETTINGS_ATTR"]

log = logging.getLogger(__name__)

SETTINGS_ATTR = "ns_dspy_sweep"


class SurplusTrial(Exception):
    """A trial given back unrun because the study already has ``n_trials`` trials (a race between workers)."""


def counts(study) -> dict[str, int]:
    """Trials per state, surplus ones left out."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        out[t.state.name.lower()] = out.get(t.state.name.lower(), 0) + 1
    return out


def is_surplus(trial, n_trials: int) -> bool:
    """True when ``n_trials`` trials numbered below this one are finished or running."""
    from optuna.trial import TrialState

    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    before = [t for t in trial.study.get_trials(deepcopy=False, states=live)
              if t.number < trial.number and not t.user_attrs.get("surplus")]
    return len(before) >= n_trials


def open_study(storage, name: str, settings: dict[str, Any], *, sampler, pruner, directions: list[str]):
    """Create the study or join it; refuse one made with other settings (see the module docstring)."""
    import optuna

    from .cache import digest

    canonical = {**settings, "digest": digest(settings)}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, pruner=pruner,
                                    directions=directions, load_if_exists=True)
    finally:
        optuna.logging.set_verbosity(verbosity)
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise StudyError(f"study {name!r} was not made by ns-dspy sweep: choose another --study")
        study.set_user_attr(SETTINGS_ATTR, canonical)
        stored = study.user_attrs.get(SETTINGS_ATTR)  # two workers creating it at once: compare with the winner
    if stored.get("digest") != canonical["digest"]:
        changed = sorted(k for k in set(stored) | set(canonical) if k != "digest" and stored.get(k) != canonical.get(k))
        raise StudyError(f"study {name!r} was made with other settings ({', '.join(changed) or 'version'}): rerun with "
                         "the same options and space to resume or join it, or choose another --study")
    if [d.name.lower() for d in study.directions] != directions:
        raise StudyError(f"study {name!r} has other objectives: choose another --study")
    return study


UNNAMED_GRACE_S = 5.0
"""How long a RUNNING trial may go without its worker's name before it counts as abandoned: a live worker writes
its name into a trial right after creating it (:class:`~ns_dspy.sweep.objective.Objective`)."""


def fail_abandoned(study) -> list[int]:
    """Mark FAIL the RUNNING trials of dead workers of this machine (a worker killed outright, e.g. ``kill -9``),
    so a rerun need not wait for their heartbeats to go stale. Trials of workers elsewhere (another machine,
    container or boot) are left to heartbeats. A trial whose worker died between creating it and writing its
    name into it (a kill that lands as a trial begins) has no name: it is marked FAIL when it still has none
    after :data:`UNNAMED_GRACE_S` seconds, wherever its worker ran."""
    from optuna.trial import TrialState

    here, failed = process_space(), []
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in running:
        pid = str(t.user_attrs.get("worker", "")).rpartition(":")[2]
        if here is None or t.user_attrs.get("process_space") != here or not pid.isdigit() or pid_alive(int(pid)):
            continue
        study.tell(t.number, state=TrialState.FAIL)
        failed.append(t.number)
    if failed:
        log.info("trial(s) %s of a worker that died on this machine marked failed", ", ".join(map(str, failed)))
    unnamed = {t.number for t in running if "worker" not in t.user_attrs}
    if unnamed:
        time.sleep(UNNAMED_GRACE_S)
        still = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                 if t.number in unnamed and "worker" not in t.user_attrs]
        for number in still:
            study.tell(number, state=TrialState.FAIL)
        if still:
            log.info("trial(s) %s of a worker that died as it began them (no worker ever named) marked failed",
                     ", ".join(map(str, still)))
        failed += still
    return failed


class InterruptGate:
    """Ctrl-C (SIGINT) held back inside ``with gate:`` and let through inside ``with gate.open():``.

    A SIGINT that arrives while held is remembered and delivered (to the handler that was installed before,
    which raises ``KeyboardInterrupt``) as soon as the gate opens or the ``with`` block ends. Python's handlers
    can only be changed in the main thread, and only a Python handler can be delayed: elsewhere, or when SIGINT
    is ignored or left to the system, the gate does nothing.
    """

    def __init__(self):
        self.original, self.pending, self.active = None, False, False

    def _defer(self, signum, frame) -> None:
        self.pending = True

    def _deliver(self) -> None:
        signal.signal(signal.SIGINT, self.original)
        if self.pending:
            self.pending = False
            self.original(signal.SIGINT, None)

    def __enter__(self) -> "InterruptGate":
        if threading.current_thread() is threading.main_thread():
            self.original = signal.getsignal(signal.SIGINT)
            self.active = callable(self.original)
        if self.active:
            signal.signal(signal.SIGINT, self._defer)
        return self

    def __exit__(self, kind, value, tb) -> None:
        if not self.active:
            return
        self.active = False
        if kind is None:
            self._deliver()  # a held Ctrl-C is raised now, the block's work done
        else:
            signal.signal(signal.SIGINT, self.original)  # already unwinding: that exception goes on

    @contextmanager
    def open(self):
        """Let Ctrl-C through inside the block (one held back is raised on entry) and hold it again after it."""
        if not self.active:
            yield
            return
        try:
            self._deliver()
            yield
        finally:
            signal.signal(signal.SIGINT, self._defer)


@dataclass
class WorkerSummary:
    ran: int
    seconds: float
    stopped: str  # "done", "others_running" or "timeout"


def run_worker(study, objective, n_trials: int, *, timeout: float | None = None, progress: bool = True) -> WorkerSummary:
    """Run trials until the study has ``n_trials`` finished ones (or ``timeout`` seconds passed).

    Ctrl-C is let through only while a named trial runs (:class:`InterruptGate`): one that lands while optuna
    creates or finishes a trial is raised inside the trial (optuna marks it FAIL) or right after it.
    """
    import optuna
    from tqdm.auto import tqdm

    start, ran, stopped = time.monotonic(), 0, "done"
    fail_abandoned(study)
    c = counts(study)
    finished = c.get("complete", 0) + c.get("pruned", 0)
    if finished:
        log.info("study %r has %d of %d trials finished; running the rest", study.study_name, finished, n_trials)
    bar = tqdm(total=n_trials, initial=min(finished, n_trials), desc="trials", unit="trial", disable=not progress)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # this module reports trials itself, one line each
    gate = InterruptGate()

    def attempt(trial):
        objective.claim(trial)  # held: a trial optuna has created always gets its worker's name
        with gate.open():
            return objective(trial)

    try:
        with gate:
            while True:
                with gate.open():  # a Ctrl-C held back since the last trial stops the worker here, before another
                    pass
                c = counts(study)
                finished = c.get("complete", 0) + c.get("pruned", 0)
                bar.n = min(finished, n_trials)
                bar.refresh()
                if finished >= n_trials:
                    break
                if finished + c.get("running", 0) >= n_trials:
                    stopped = "others_running"
                    break
                study.optimize(attempt, n_trials=1, catch=(SurplusTrial,))
                trial = next((t for t in study.get_trials(deepcopy=False) if t.number == objective.last_number), None)
                if trial is not None:
                    ran += not trial.user_attrs.get("surplus")
                    _log_trial(trial)
                if timeout is not None and time.monotonic() - start >= timeout:  # as optuna's: checked after a trial
                    stopped = "timeout"
                    break
    finally:
        optuna.logging.set_verbosity(verbosity)
        bar.close()
    return WorkerSummary(ran, round(time.monotonic() - start, 2), stopped)


def _log_trial(trial) -> None:
    if trial.user_attrs.get("surplus"):
        log.info("trial %d given back: the study already has its trials", trial.number)
        return
    values = trial.values or ([trial.intermediate_values[max(trial.intermediate_values)]]
                              if trial.intermediate_values else [])
    score = f"valid {values[0]:.3f}" if values else "no value"
    log.info("trial %d %s: %s, %s LM tokens (%s spent now, %s LM calls), %.1f s  %s", trial.number,
             trial.state.name.lower(), score, trial.user_attrs.get("lm_tokens", "?"),
             trial.user_attrs.get("lm_tokens_spent", "?"), trial.user_attrs.get("lm_calls", "?"),
             trial.user_attrs.get("seconds", 0.0), _params_text(trial.params))


def _params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def choose(study):
    """The chosen trial (see the module docstring), or None when no trial is complete."""
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return None
    if len(study.directions) > 1:
        front = {t.number for t in study.best_trials}
        complete = [t for t in complete if t.number in front]
    return max(complete, key=lambda t: (t.values[0], -t.user_attrs.get("lm_tokens", 0), -t.number))


def score_on_test(study, trial, store, simulator, neurons, test_maps: str | None = None) -> dict[str, Any]:
    """The chosen trial's explanations scored on the sweep neurons' test data - once per study, trial and kind of
    maps; a set of several reads its members through maps of ``test_maps`` (``ExplainConfig.test_maps``, default
    ``calibration.FINAL_KIND``) fitted on valid.

    A neuron that failed in that trial scores 0 on test as on valid. Returns ``{"trial", "test", "valid",
    "neurons": {unit: test score}, "test_maps", "scored_now"}``.
    """
    from ..scoring.calibration import FINAL_KIND

    test_maps = test_maps or FINAL_KIND
    key = f"test:{trial.number}" if test_maps == FINAL_KIND else f"test:{trial.number}:{test_maps}"
    stored = study.user_attrs.get(key)
    if stored is not None:
        return {**stored, "scored_now": False}
    explanations = trial.user_attrs.get("explanations", {})
    scores = {}
    for neuron in neurons:
        texts = explanations.get(str(neuron.unit)) or []
        test = HeldOut.from_store(store, neuron.unit, "test")
        valid = HeldOut.from_store(store, neuron.unit, "valid") if len(texts) > 1 else None  # calibrates the union
        scores[str(neuron.unit)] = (polysemantic(simulator, texts, test, calibration=valid, final_kind=test_maps).value
                                    if texts else 0.0)
    report = {"trial": trial.number, "valid": trial.values[0], "test": sum(scores.values()) / len(scores),
              "neurons": scores, "test_maps": test_maps}
    study.set_user_attr(key, report)
    return {**report, "scored_now": True}


def looks_at_test(study) -> list[int]:
    """Trials whose explanations were scored on test in this study (one per chosen configuration, however many
    kinds of maps they were scored with)."""
    return sorted({int(k.split(":")[1]) for k in study.user_attrs if k.startswith("test:")})
