"""``ns-dspy explain --executor ray`` on a real local Ray cluster (a head and a second node, ``ray_cluster``):
the same run contents as a single-process run, and a worker killed mid-run loses and duplicates nothing."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweep"))  # the toy world: LM server, embedder

from sweep_world import WORDS, ToyServer  # noqa: E402  (registers the sweep-words embedder, in workers too)
from trigger_words import trigger_store  # noqa: E402

from ns_dspy.cli import main  # noqa: E402
from ns_dspy.runs import RunStore  # noqa: E402

TRIGGERS = [{" dog": 5.0, " cat": 3.0}, {" red": 5.0, " big": 3.0}, {" mat": 4.0}, {" sat": 4.0, " ran": 2.0},
            {" today": 5.0}, {" on": 3.0, " a": 1.0}, {" cat": 4.0}, {" big": 5.0, " dog": 2.0}, {}]
UNITS = ",".join(f"0:{u}" for u in range(8))


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))  # handed to the workers (NS_DSPY_*)
    monkeypatch.setenv("DSPY_CACHEDIR", str(tmp_path / "dspy"))
    return trigger_store(tmp_path / "store", WORDS, TRIGGERS)


def _argv(store, server, run, *extra):
    return ["explain", "--store", str(store.path), "--neurons", UNITS, "--lm", server.lm, "--simulator", "keyword",
            "--embedder", "sweep-words", "--iterations", "2", "--candidates", "2", "--run", str(run), "-q",
            "--no-lm-cache", *extra]


def _timeless(value):
    """A record's trace without what depends on timing (seconds, the cost's seconds)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def _contents(run: Path) -> dict:
    return {str(r.unit): (r.status, r.error, r.number, r.score_valid, r.score_test, r.lm_tokens, _timeless(r.trace))
            for r in RunStore(run).records()}


def test_distributed_explain_equals_the_single_process_run(world, ray_cluster, tmp_path, capsys):
    with ToyServer() as server:
        assert main(_argv(world, server, tmp_path / "local.sqlite")) == 0
        local_calls = server.calls
        assert main(_argv(world, server, tmp_path / "ray.sqlite", "--executor", "ray", "--ray-address",
                          ray_cluster, "--workers", "2")) == 0
        assert server.calls == 2 * local_calls  # every LM call made again, by the workers (no shared cache)
    printed = capsys.readouterr().out
    local, remote = _contents(tmp_path / "local.sqlite"), _contents(tmp_path / "ray.sqlite")
    assert sorted(local) == sorted(remote) == [f"0:{u}" for u in range(8)]
    assert all(v[0] == "done" for v in remote.values())
    assert remote == local
    assert RunStore(tmp_path / "ray.sqlite").meta()["config"] == RunStore(tmp_path / "local.sqlite").meta()["config"]
    assert "mean over 8 units" in printed  # the usual summary


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(world, ray_cluster, tmp_path, caplog):
    import ray

    run = tmp_path / "run.sqlite"
    killed = []

    def kill_one_worker():
        from ns_dspy.cluster.explain import ACTOR_PREFIX

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if run.exists() and len(RunStore(run).records()) >= 2 and ray.is_initialized():
                names = sorted(n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX))
                if names:
                    ray.kill(ray.get_actor(names[0]), no_restart=False)  # the process dies; Ray restarts it
                    killed.append(names[0])
            time.sleep(0.1)

    with ToyServer(delay=0.05) as server:
        killer = threading.Thread(target=kill_one_worker, daemon=True)
        killer.start()
        assert main(_argv(world, server, run, "--executor", "ray", "--ray-address", ray_cluster, "--workers",
                          "2")) == 0
        killer.join(5)
    assert killed, "no worker was killed: the run ended before two units were done"
    records = RunStore(run).records()
    assert sorted(str(r.unit) for r in records) == [f"0:{u}" for u in range(8)]  # one row per unit
    assert all(r.status == "done" for r in records)



def test_when_every_worker_dies_for_good_the_run_stops_with_one_line(world, ray_cluster, tmp_path, capsys):
    """Workers killed without restart: the units in flight are handed on until no worker is left, then the run
    ends with a one-line error (it used to wait for a free worker forever); finished units stay done."""
    import ray

    run = tmp_path / "run.sqlite"
    killed = []

    def kill_every_worker():
        from ns_dspy.cluster.explain import ACTOR_PREFIX

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            if run.exists() and len(RunStore(run).records()) >= 1 and ray.is_initialized():
                names = sorted(n for n in ray.util.list_named_actors() if n.startswith(ACTOR_PREFIX))
                if len(names) == 2:
                    for name in names:
                        ray.kill(ray.get_actor(name), no_restart=True)
                    killed.extend(names)
            time.sleep(0.05)

    with ToyServer(delay=0.2) as server:
        killer = threading.Thread(target=kill_every_worker, daemon=True)
        killer.start()
        start = time.monotonic()
        code = main(_argv(world, server, run, "--executor", "ray", "--ray-address", ray_cluster, "--workers", "2"))
        killer.join(5)
    assert killed, "the workers were not killed: the run ended before one unit was done"
    assert code != 0 and time.monotonic() - start < 120
    err = capsys.readouterr().err
    assert "died" in err
    records = RunStore(run).records()
    done = [r for r in records if r.status == "done"]
    assert done and len(done) < 8  # finished work kept; the rest left for a rerun


def test_a_bad_spec_is_one_line_from_the_workers_and_leaves_no_run_file(world, ray_cluster, tmp_path, capsys):
    run = tmp_path / "run.sqlite"
    with ToyServer() as server:
        argv = _argv(world, server, run, "--executor", "ray", "--ray-address", ray_cluster, "--workers", "1")
        argv[argv.index("keyword")] = "keyword:extra"  # the keyword simulator takes no argument
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ns-dspy: error: the keyword simulator takes no argument") and len(err.splitlines()) == 1
    assert not run.exists()


def test_executor_options_are_checked(world, tmp_path, capsys):
    with ToyServer() as server:
        assert main(_argv(world, server, tmp_path / "r.sqlite", "--workers", "2")) == 2
    assert "--ray-address and --workers are for --executor ray" in capsys.readouterr().err


def test_the_paper_driver_explains_its_modes_on_the_cluster(tiny_llama, text_corpus, ray_cluster, tmp_path,
                                                              monkeypatch):
    """``experiments/paper.py run --executor ray``: every mode's units explained by workers into its run file."""
    root = Path(__file__).resolve().parents[2]
    monkeypatch.syspath_prepend(str(root / "experiments"))
    monkeypatch.syspath_prepend(str(root / "tests" / "experiments"))
    monkeypatch.setenv("NS_DSPY_CACHE", str(tmp_path / "cache"))
    from paper import main as paper_main
    from test_paper import write_config

    from ns_dspy.runs.read import read_run

    with ToyServer() as server:
        config = write_config(tmp_path / "tiny.toml", tiny_llama, text_corpus, modes='["refine", "norefine"]')
        config.write_text(config.read_text().replace("endpoint:http://127.0.0.1:9/v1@scripted", server.lm))
        work = tmp_path / "work"
        assert paper_main(["run", str(config), "--work", str(work), "--results", str(tmp_path / "results"), "-q",
                           "--executor", "ray", "--ray-address", ray_cluster, "--workers", "2"]) == 0
        assert server.calls > 0
    for mode in ("refine", "norefine"):
        run = read_run(work / f"{mode}.sqlite")
        assert len(run.records) == 4 and all(r.status == "done" for r in run.records), [r.error for r in run.records]
        assert run.mode == mode and run.config["simulator"] == "keyword"
