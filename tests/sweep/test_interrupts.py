"""Ctrl-C at every moment of a sweep worker's loop leaves no trial RUNNING (:class:`ns_dspy.sweep.study.InterruptGate`).

The signal is raised from inside optuna's own storage calls - as the trial is created, and as it is finished - which
is where a user's Ctrl-C used to leave a RUNNING trial behind; and inside the objective, where optuna marks it FAIL.
"""

from __future__ import annotations

import signal
import threading

import optuna
import pytest

from ns_dspy.sweep.study import InterruptGate, run_worker

RUNNING, COMPLETE, FAIL = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE,
                           optuna.trial.TrialState.FAIL)


class Counting:
    """A stand-in objective with the interface ``run_worker`` needs: ``claim`` names the trial, the call scores it."""

    def __init__(self, interrupt_inside: int | None = None):
        self.last_number, self.calls, self.interrupt_inside = None, 0, interrupt_inside

    def claim(self, trial) -> None:
        trial.set_user_attr("worker", "here:1")
        self.last_number = trial.number

    def __call__(self, trial) -> float:
        self.calls += 1
        if trial.number == self.interrupt_inside:
            signal.raise_signal(signal.SIGINT)
        return float(trial.number)


def _study(monkeypatch, method: str | None = None, when: int = 1):
    """A study whose storage raises SIGINT on the ``when``-th call of ``method`` (after creating a trial, before
    finishing one)."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    if method is not None:
        original, seen = getattr(storage, method), []

        def interrupted(*args, **kwargs):
            seen.append(1)
            if method == "create_new_trial":
                out = original(*args, **kwargs)
                if len(seen) == when:
                    signal.raise_signal(signal.SIGINT)
                return out
            if len(seen) == when:
                signal.raise_signal(signal.SIGINT)
            return original(*args, **kwargs)

        monkeypatch.setattr(storage, method, interrupted)
    return study


@pytest.fixture(autouse=True)
def default_sigint():
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the worker put the handler back
    signal.signal(signal.SIGINT, before)


def _states(study):
    return [(t.state, t.user_attrs.get("worker")) for t in study.get_trials(deepcopy=False)]


def test_a_ctrl_c_while_optuna_creates_the_trial_fails_that_trial_named(monkeypatch):
    study, objective = _study(monkeypatch, "create_new_trial", when=2), Counting()
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, 5, progress=False)
    # the second trial is created, named and failed by optuna: its objective never ran
    assert _states(study) == [(COMPLETE, "here:1"), (FAIL, "here:1")] and objective.calls == 1


def test_a_ctrl_c_while_optuna_finishes_the_trial_keeps_it_complete_and_stops(monkeypatch):
    study, objective = _study(monkeypatch, "set_trial_state_values", when=1), Counting()
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, 5, progress=False)
    assert _states(study) == [(COMPLETE, "here:1")] and objective.calls == 1  # no next trial was begun


def test_a_ctrl_c_inside_the_trial_fails_it(monkeypatch):
    study, objective = _study(monkeypatch), Counting(interrupt_inside=1)
    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, 5, progress=False)
    assert _states(study) == [(COMPLETE, "here:1"), (FAIL, "here:1")]


def test_without_a_ctrl_c_the_worker_runs_every_trial(monkeypatch):
    study = _study(monkeypatch)
    summary = run_worker(study, Counting(), 3, progress=False)
    assert summary.ran == 3 and [s for s, _ in _states(study)] == [COMPLETE] * 3


def test_the_gate_holds_a_ctrl_c_until_it_opens():
    with InterruptGate() as gate:
        signal.raise_signal(signal.SIGINT)  # held: nothing raised here
        assert gate.pending
        with pytest.raises(KeyboardInterrupt):
            with gate.open():
                pytest.fail("the held Ctrl-C is raised as the gate opens")
        assert not gate.pending and signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # held again


def test_a_ctrl_c_held_to_the_end_of_the_block_is_raised_there():
    with pytest.raises(KeyboardInterrupt):
        with InterruptGate():
            signal.raise_signal(signal.SIGINT)
    with InterruptGate():  # nothing held: nothing raised
        pass


def test_outside_the_main_thread_the_gate_does_nothing():
    seen = []

    def work():
        with InterruptGate() as gate:
            seen.append(gate.active)
            with gate.open():
                seen.append(signal.getsignal(signal.SIGINT) is signal.default_int_handler)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [False, True]
