"""Sweeps across processes: two real worker processes (``ns-dspy sweep`` each) share one study on a real
PostgreSQL server, and a worker interrupted with Ctrl-C leaves a study that the same command finishes.

Workers are separate Python processes running the CLI's ``main``; the bootstrap only imports the toy world
first, so that they know its embedder. They reach the toy LM server of the test process on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest
from pg_server import PostgresServer, Unavailable
from sweep_world import UNITS, ToyServer

from ns_dspy.cli import main

HERE = Path(__file__).resolve().parent
BOOT = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import sweep_world; from ns_dspy.cli import main; "
        "sys.exit(main(sys.argv[1:]))")
# temperature as a range: every trial asks the LM again, so trials last (the server sleeps per answer)
SLOW_SPACE = {"cluster": {"min_cluster_size": {"low": 2, "high": 4}, "metric": ["euclidean", "cosine"]},
              "temperature": {"low": 0.1, "high": 0.9}}


def _argv(store, server, space: Path, *extra: str) -> list[str]:
    return ["sweep", "--store", str(store.path), "--lm", server.lm, "--simulator", "keyword", "--embedder",
            "sweep-words", "--neurons", UNITS, "--no-refine", "--space", str(space), "-q", *extra]


def _worker(argv: list[str], tmp_path: Path, key: str = "none") -> subprocess.Popen:
    """A worker process; its output goes to files (``proc.out`` / ``proc.err``), never to a pipe that could fill."""
    env = {**os.environ, "NS_DSPY_CACHE": str(tmp_path / "cache"), "OPENAI_API_KEY": key}
    out, err = tempfile.mkstemp(dir=tmp_path, suffix=".out")[1], tempfile.mkstemp(dir=tmp_path, suffix=".err")[1]
    with open(out, "w") as stdout, open(err, "w") as stderr:
        # a user's terminal delivers Ctrl-C; a test run started in the background (nohup, `cmd &`) inherits
        # SIGINT ignored, and Python then keeps ignoring it: give the worker the default disposition back
        proc = subprocess.Popen([sys.executable, "-c", BOOT, *argv], stdout=stdout, stderr=stderr, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.out, proc.err = Path(out), Path(err)
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.out.read_text(), proc.err.read_text()


@pytest.fixture(scope="module")
def postgres():
    try:
        server = PostgresServer()
    except Unavailable as why:
        pytest.skip(f"no PostgreSQL server for this test: {why}")
    try:
        yield server
    finally:
        server.stop()


def _open_together(url: str, n: int = 4) -> list[Exception]:
    from ns_dspy.sweep import WorkCache, open_storage

    errors = []

    def open_one():
        try:
            WorkCache(open_storage(url).engine).counts()
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def test_workers_opening_a_new_database_together_do_not_collide(postgres):
    """Workers starting at once on a new database race to create optuna's tables and the work cache's; the loser's
    duplicate-key error is retried (without the retry, 4 openers failed in every round here, on PostgreSQL and
    on SQLite alike)."""
    errors = _open_together(postgres.create_database("race"))
    assert not errors, errors[0]


def test_workers_opening_a_new_sqlite_file_together_do_not_collide(tmp_path):
    for k in range(3):
        errors = _open_together(str(tmp_path / f"new{k}.sqlite"))
        assert not errors, errors[0]


def test_two_workers_share_one_study_on_postgresql(postgres, store, tmp_path):
    url = postgres.create_database("sweeps")
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SLOW_SPACE))
    n_trials = 8
    start = time.perf_counter()
    with ToyServer(delay=0.05, clients=2) as server:  # both workers are inside a trial before any trial ends
        argv = _argv(store, server, space, "--storage", url, "--study", "shared", "--n-trials", str(n_trials),
                     "--pruner", "none")
        workers = [_worker([*argv, "--seed", str(seed)], tmp_path, key=f"worker-{seed}") for seed in (1, 2)]
        outputs = [_finish(w) for w in workers]
    assert set(server.auth) == {"Bearer worker-1", "Bearer worker-2"}
    seconds = time.perf_counter() - start
    for w, (out, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="shared", storage=url)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == n_trials  # the study's total, not each worker's
    others = [t for t in study.trials if t.state != optuna.trial.TrialState.COMPLETE]
    assert all(t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("surplus") for t in others)
    pids = {int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in finished}
    assert pids == {w.pid for w in workers}, "both worker processes ran trials of the one study"
    printed = [out for out, _ in outputs]
    assert any("chosen: trial" in out for out in printed)  # the last worker to finish reported
    assert all(f"study 'shared' in {url}" in out for out in printed)
    best = json.loads((tmp_path / "store.sweep.shared" / "best.json").read_text())["tuned"]
    assert best["storage"] == url and best["trial"] in {t.number for t in finished}
    assert [k for k in study.user_attrs if k.startswith("test:")] == [f"test:{best['trial']}"]
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        kinds = dict(conn.execute(sa.text("SELECT kind, count(*) FROM ns_dspy_sweep_cache GROUP BY kind")).all())
    engine.dispose()
    assert kinds["hypothesis"] >= 3 and kinds["embedding"] > 0  # the work cache lives in the shared database
    print(f"two workers, {n_trials} trials on PostgreSQL: {seconds:.1f} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_an_interrupted_sweep_resumes(store, tmp_path, capsys, caplog, sig):
    space = tmp_path / "space.json"
    space.write_text(json.dumps(SLOW_SPACE))
    storage = f"sqlite:///{store.path}.sweep.sqlite"
    n_trials = 6
    # ~3 s per trial (6 LM answers of 0.5 s): the signal lands inside a trial even on a loaded machine (with
    # 0.05 s the worker could finish every trial before the signal arrived)
    with ToyServer(delay=0.5) as server:
        argv = _argv(store, server, space, "--n-trials", str(n_trials), "--pruner", "none", "--seed", "3")
        worker = _worker(argv, tmp_path)
        deadline = time.monotonic() + 120
        complete, inside = [], []
        # signal once a trial is complete and the worker is inside the next one (its name written): not while
        # optuna is still creating that trial, which under load can take longer than the polling interval
        while not (complete and inside) and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
            try:
                trials = optuna.load_study(study_name="sweep", storage=storage).get_trials()
            except Exception:  # the study does not exist yet
                continue
            complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            inside = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs]
        assert complete and inside and worker.poll() is None, "the worker finished a trial and is still running"
        worker.send_signal(sig)
        out, err = _finish(worker, timeout=60)
        if sig == signal.SIGINT:
            assert worker.returncode == 130 and "interrupted; finished work is kept" in err, err[-2000:]
        else:
            assert worker.returncode == -signal.SIGKILL
        states = [t.state for t in optuna.load_study(study_name="sweep", storage=storage).trials]
        kept, left_running = states.count(optuna.trial.TrialState.COMPLETE), states.count(optuna.trial.TrialState.RUNNING)
        assert 1 <= kept < n_trials and left_running <= (sig == signal.SIGKILL)  # Ctrl-C: optuna marks it FAIL
        caplog.set_level("INFO", logger="ns_dspy.sweep.study")
        assert main(argv) == 0  # the same command again: a killed worker's RUNNING trial is marked failed first
        # a kill-9 that lands as the next trial begins leaves it without the worker's name: marked failed too
        assert ("of a worker that died" in caplog.text and "marked failed" in caplog.text) == bool(left_running)
    printed = capsys.readouterr().out
    assert f"this worker ran {n_trials - kept} trial(s)" in printed and "chosen: trial" in printed
    states = [t.state for t in optuna.load_study(study_name="sweep", storage=storage).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == n_trials and optuna.trial.TrialState.RUNNING not in states


def test_a_trial_whose_worker_died_before_naming_itself_is_failed_after_a_grace(tmp_path, monkeypatch, caplog):
    """kill -9 between creating a trial and writing the worker's name into it (the name is written last) leaves a
    nameless RUNNING trial: the next worker marks it failed once it has stayed nameless for the grace; a live worker's trial is kept."""
    import os

    from ns_dspy.machine import process_space
    from ns_dspy.sweep import study as study_mod

    monkeypatch.setattr(study_mod, "UNNAMED_GRACE_S", 0.05)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.sqlite", study_name="s")
    orphan = study.ask()  # its worker died before naming itself: after writing its process space, before its name
    orphan.set_user_attr("process_space", process_space())
    alive = study.ask()
    alive.set_user_attr("worker", f"host:{os.getpid()}")
    alive.set_user_attr("process_space", process_space())
    caplog.set_level("INFO", logger="ns_dspy.sweep.study")
    assert study_mod.fail_abandoned(study) == [orphan.number]
    states = {t.number: t.state for t in study.trials}
    assert states == {orphan.number: optuna.trial.TrialState.FAIL, alive.number: optuna.trial.TrialState.RUNNING}
    assert "died as it began them" in caplog.text
