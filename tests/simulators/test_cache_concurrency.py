"""Several processes opening one new simulation cache file at once (Ray actors building their programs together)
must all get a working cache: switching a new file to WAL fails at once with "database is locked" for the loser
of that race unless it is retried."""

import multiprocessing as mp

import numpy as np

from ns_dspy.simulators.cache import SimulationCache


def _open_and_write(path: str, barrier, index: int, queue) -> None:
    try:
        barrier.wait()
        cache = SimulationCache(path)
        cache.put_many({f"key-{index}": np.full(3, index, dtype=np.float32)})
        cache.close()
        queue.put((index, None))
    except Exception as err:  # reported to the parent, which fails the test with it
        queue.put((index, repr(err)))


def test_many_processes_open_a_new_cache_file_at_once(tmp_path):
    ctx = mp.get_context("fork")
    # a fresh file each time: the race is on creation. Without the retry, 12 of 360 openers (6 processes x 60
    # files) failed on the CPU this was written on, so 30 files fail with high probability
    for attempt in range(30):
        path = str(tmp_path / f"sim-{attempt}.sqlite")
        n = 6
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier, i, queue)) for i in range(n)]
        for p in procs:
            p.start()
        results = dict(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(timeout=60)
        assert {i: err for i, err in results.items() if err} == {}
        cache = SimulationCache(path)
        got = cache.get_many([f"key-{i}" for i in range(n)])
        assert sorted(got) == sorted(f"key-{i}" for i in range(n))
        assert all(np.array_equal(got[f"key-{i}"], np.full(3, i, dtype=np.float32)) for i in range(n))
        cache.close()
