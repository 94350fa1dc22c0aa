"""Recording on a real two-node Ray cluster gives the same store, byte for byte, as recording in one process:
whatever the number of workers and the shard size, and after a failed shard, a crashed worker or an interrupted
driver (rerun: only the unfinished chunks are recorded), the checkpoint resumed by either executor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import ray_faults
from sample_texts import SAMPLE_TEXTS

from ns_dspy.cluster import connect
from ns_dspy.cluster import record as cluster_record
from ns_dspy.errors import RecordingError
from ns_dspy.recording import RecordConfig, Recorder, record
from ns_dspy.recording.state import TIMING_FIELDS, chunk_windows

# 256 windows of 8 tokens in batches of 2: 8 chunks of 32 windows (16 batches each)
SETTINGS = dict(layers="0,2", tokens=2048, window=8, top_k=10, random_k=6, negative_k=3, batch_size=2,
                dtype="float32", device="cpu")
N_CHUNKS = 8
TEXTS = SAMPLE_TEXTS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """~100 short documents: more than the 256 windows recorded."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    with path.open("w") as f:
        for i in range(100):
            f.write(json.dumps({"text": f"{TEXTS[i % len(TEXTS)]} Item {i} of the list."}) + "\n")
    return path


def _config(model, corpus, **kw) -> RecordConfig:
    return RecordConfig(model=str(model), corpus=str(corpus), **{**SETTINGS, **kw})


@pytest.fixture(scope="module")
def connected(ray_cluster):
    """One connection for the module: the workers (and the model each loaded) serve every test."""
    connect(ray_cluster)
    yield ray_cluster
    ray.shutdown()


@pytest.fixture(scope="module", autouse=True)
def workers_threads():
    """This process records with as many threads as each worker has (one CPU each: Ray sets OMP_NUM_THREADS=1):
    on some CPUs a float32 forward's bits depend on the thread count (measured on an AMD EPYC with MKL: the tiny
    model's MLP activations differ by ~4e-9 between 1 and 2 threads), and byte equality holds for equal
    activations only (README: the workers must compute what one machine would)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def single(workers_threads, tiny_llama, corpus, tmp_path_factory) -> Path:
    """The reference: the same recording in one process."""
    return record(_config(tiny_llama, corpus), tmp_path_factory.mktemp("single") / "store", progress=False)


def assert_same_store(a: Path, b: Path) -> None:
    """Every file equal byte for byte, except manifest.json's timing fields (TIMING_FIELDS)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert any(f.suffix == ".npz" for f in files) and any(f.name.endswith("_acts.npy") for f in files)
    for rel in files:
        if rel.name == "manifest.json":
            ma, mb = (json.loads((root / rel).read_text()) for root in (a, b))
            assert set(ma) == set(mb) and set(TIMING_FIELDS) <= set(ma)
            assert {k: v for k, v in ma.items() if k not in TIMING_FIELDS} == \
                {k: v for k, v in mb.items() if k not in TIMING_FIELDS}
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def _merged_chunks(monkeypatch, fail_after: int | None = None) -> list[int]:
    """Record which chunks the driver merges; with ``fail_after``, interrupt the driver after that many shards."""
    seen: list[int] = []
    original = cluster_record.merge_result

    def merge(state, result):
        original(state, result)
        seen.extend(result["chunks"])
        if fail_after is not None and len(seen) >= fail_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(cluster_record, "merge_result", merge)
    return seen


def _checkpointed(partial: Path) -> set[int]:
    """The chunks a checkpoint holds as done."""
    from safetensors import safe_open

    with safe_open(str(partial / "state.safetensors"), framework="pt") as f:
        progress = json.loads(f.metadata()["progress"])
    assert progress["current"] is None
    return set(range(progress["folded"])) | set(progress["complete"])


def test_two_workers_record_the_single_process_store(connected, tiny_llama, corpus, single, tmp_path):
    assert chunk_windows(_config(tiny_llama, corpus)) * N_CHUNKS == 2048 // 8
    assert len(ray.nodes()) == 2
    out = record(_config(tiny_llama, corpus), tmp_path / "s", progress=False, executor="ray", workers=2)
    assert_same_store(single, out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["windows_recorded"] == 256 and manifest["chunk_windows"] == 32


def test_another_worker_count_and_shard_size_give_the_same_bytes(connected, tiny_llama, corpus, single, tmp_path,
                                                                 caplog):
    # three workers on a cluster with room for two: the third waits, the others record 3 chunks a shard
    out = cluster_record.record_on_ray(_config(tiny_llama, corpus), tmp_path / "s", progress=False, workers=3,
                                       shard_chunks=3)
    assert "holds 2 of the 3 workers" in caplog.text
    assert_same_store(single, out)


def test_a_failed_shard_stops_the_run_and_a_rerun_records_only_it(connected, tiny_llama, corpus, single, tmp_path,
                                                                  monkeypatch):
    out = tmp_path / "s"
    monkeypatch.setattr(cluster_record, "record_shard", ray_faults.raising_on(5))
    with pytest.raises(RecordingError, match=r"failed on chunks 5-5 \(RuntimeError: .*injected failure.*rerun"):
        record(_config(tiny_llama, corpus), out, progress=False, executor="ray", workers=2)
    assert not out.exists()
    saved = _checkpointed(tmp_path / "s.partial")
    assert set(range(5)) <= saved and 5 not in saved  # shards running beside the failed one were finished and kept
    monkeypatch.undo()
    merged = _merged_chunks(monkeypatch)
    record(_config(tiny_llama, corpus), out, progress=False, executor="ray", workers=2)
    assert sorted(merged) == sorted(set(range(N_CHUNKS)) - saved)  # the failed shard and those never started
    assert not (tmp_path / "s.partial").exists()
    assert_same_store(single, out)


def test_a_crashed_worker_is_retried(connected, tiny_llama, corpus, single, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setattr(cluster_record, "record_shard", ray_faults.crashing_once_on(2, str(marker)))
    out = cluster_record.record_on_ray(_config(tiny_llama, corpus), tmp_path / "s", progress=False, workers=2,
                                       shard_chunks=2)
    assert marker.exists()  # a worker process died on shard [2, 3]; Ray ran it again
    assert_same_store(single, out)


def test_an_interrupted_driver_resumes_in_one_process(connected, tiny_llama, corpus, single, tmp_path, monkeypatch):
    out = tmp_path / "s"
    _merged_chunks(monkeypatch, fail_after=3)
    with pytest.raises(KeyboardInterrupt):  # a checkpoint after every merged shard; stopped merging the third
        cluster_record.record_on_ray(_config(tiny_llama, corpus, checkpoint_every=1e-9), out, progress=False,
                                     workers=2, shard_chunks=1)
    monkeypatch.undo()
    assert not out.exists() and len(_checkpointed(tmp_path / "s.partial")) == 2
    batches = {"n": 0}
    original = Recorder.process
    monkeypatch.setattr(Recorder, "process", lambda self, i, t: (
        batches.__setitem__("n", batches["n"] + 1), original(self, i, t))[1])
    record(_config(tiny_llama, corpus), out, progress=False)  # chunks done on the cluster, holes too, are skipped
    assert batches["n"] == (N_CHUNKS - 2) * 16
    assert_same_store(single, out)


def test_a_single_process_checkpoint_resumes_on_ray(connected, tiny_llama, corpus, single, tmp_path, monkeypatch):
    out = tmp_path / "s"
    calls = {"n": 0}
    original = Recorder.process

    def stop_in_chunk_one(self, ids, tokens):
        calls["n"] += 1
        if calls["n"] == 16 + 5:  # the 5th batch of chunk 1: 4 of its batches are checkpointed
            raise KeyboardInterrupt
        return original(self, ids, tokens)

    monkeypatch.setattr(Recorder, "process", stop_in_chunk_one)
    with pytest.raises(KeyboardInterrupt):
        record(_config(tiny_llama, corpus, checkpoint_every=1e-9), out, progress=False)
    monkeypatch.undo()
    merged = _merged_chunks(monkeypatch)
    record(_config(tiny_llama, corpus), out, progress=False, executor="ray", workers=2)
    assert sorted(merged) == list(range(1, N_CHUNKS))  # chunk 1 from its 9th window on
    assert_same_store(single, out)


def test_the_record_command_runs_on_the_cluster(tiny_llama, corpus, single, connected, tmp_path, capsys):
    """``ns-dspy record --executor ray``: the same store as the single-process recording."""
    from ns_dspy.cli import main

    out = tmp_path / "cli-store"
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in {**SETTINGS, "model": str(tiny_llama),
                                                       "corpus": str(corpus)}.items()]
    assert main(["record", *flags, "--out", str(out), "-q", "--executor", "ray", "--ray-address", connected,
                 "--workers", "2"]) == 0
    assert "recorded 2,048 tokens" in capsys.readouterr().out
    assert_same_store(single, out)
