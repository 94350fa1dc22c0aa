"""Connecting to a Ray cluster, and the errors a user can meet doing it: one line each, quickly."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
import ray

from ns_dspy.cluster import connect
from ns_dspy.errors import ConfigError
from ns_dspy.recording import RecordConfig, record


def test_a_dead_address_and_a_missing_ray_are_one_line_errors(monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"no Ray cluster answers at 127\.0\.0\.1:{port} .*ray start --head"):
        connect(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 5 and not ray.is_initialized()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r'Ray is not installed: pip install -e "\.\[ray\]"'):
        connect("127.0.0.1:1")


def test_executor_options_are_checked(tmp_path):
    config = RecordConfig(model="gpt2", layers="0", tokens=64, window=8)
    with pytest.raises(ConfigError, match="unknown executor 'dask'"):
        record(config, tmp_path / "s", executor="dask")
    with pytest.raises(ConfigError, match="need --executor ray"):
        record(config, tmp_path / "s", workers=2)


def test_recording_does_not_import_ray():
    code = "import sys, ns_dspy.recording, ns_dspy.cluster; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fixture_cluster_takes_drivers_again_and_again(ray_cluster):
    for _ in range(2):
        connect(ray_cluster)
        assert sum(node["Alive"] for node in ray.nodes()) == 2
        assert ray.cluster_resources()["CPU"] == 2
        ray.shutdown()
    ray.init(address=ray_cluster)
    assert ray.get(ray.remote(lambda: 1 + 1).remote()) == 2
    ray.shutdown()
