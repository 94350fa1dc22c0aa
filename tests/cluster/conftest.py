"""A real Ray cluster on this machine for the tests in this folder: ``ray_cluster`` is its address, "127.0.0.1:PORT".

Two nodes, as on a real cluster: a head (``ray start --head``) and a second node joining it (``ray start
--address``), one CPU each, no dashboard, usage stats off, their files in a fresh short temporary directory (Ray's
socket paths must stay short). Both run as ``ray start --block`` children of the test session in their own process
groups, so teardown stops exactly these two nodes (SIGTERM, which makes Ray stop every process it started, then
SIGKILL to the groups after a bounded wait); other Ray clusters on the machine are left alone (no ``ray stop``).

A test connects with ``ray.init(address=ray_cluster)`` (or ``ns_dspy.cluster.connect(ray_cluster)``); calling
``ray.shutdown()`` between tests is fine, a later test connects again. Ray starts new worker processes for each
connection (each is a new job), so tests that share one connection save the workers' start-up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='the cluster tests need Ray: pip install -e ".[ray]" '
                                       '(or -r requirements/test.txt)')

START_TIMEOUT = 90.0
"""Seconds a node may take to start before the fixture fails."""
STOP_TIMEOUT = 20.0

ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1", "RAY_DEDUP_LOGS": "0",
       "RAY_AUTH_MODE": "disabled"}  # a token in ~/.ray (left by another local cluster) must not lock the nodes out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_cli() -> list[str]:
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    return [exe] if exe else [sys.executable, "-m", "ray.scripts.scripts"]


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(_ray_cli() + ["start", "--block", *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env, start_new_session=True)


def _wait_started(proc: subprocess.Popen, log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "Ray runtime started" in text:
            return
        if proc.poll() is not None:
            raise RuntimeError(f"the Ray {what} exited ({proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"the Ray {what} did not start within {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:  # whatever of this node is left in its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(5)


@pytest.fixture(scope="session")
def ray_cluster():
    """Address "127.0.0.1:PORT" of a two-node local Ray cluster (one CPU per node), up for the whole session."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None))
    env = {**os.environ, **ENV}
    os.environ.update(ENV)  # drivers started by the tests
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats",
              "--object-store-memory", str(200 * 1024 * 1024)]
    nodes = []
    try:
        head = _start(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", str(temp),
                       "--dashboard-agent-listen-port", str(_free_port()), *common], temp / "head.log", env)
        nodes.append(head)
        _wait_started(head, temp / "head.log", "head node")
        second = _start(["--address", address, "--dashboard-agent-listen-port", str(_free_port()), *common],
                        temp / "node.log", env)
        nodes.append(second)
        _wait_started(second, temp / "node.log", "second node")
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        for proc in reversed(nodes):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
