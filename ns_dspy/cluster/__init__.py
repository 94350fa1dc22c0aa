"""Running ns-dspy on a Ray cluster (``pip install -e ".[ray]"``).

:func:`connect` attaches this process to a cluster; :mod:`ns_dspy.cluster.record` records an exemplar store with
Ray workers (``record(..., executor="ray")``). Nothing here is imported by ``ns_dspy.recording`` itself: Ray is
only needed when it is used. Every node needs ns-dspy installed and the subject model reachable (a hub id, or a
folder at the same path on every node); the corpus is read by the driver only.
"""

from __future__ import annotations

import logging
import socket

from ..errors import ConfigError

__all__ = ["connect", "ray_module"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a cluster's address to answer before giving up."""


def ray_module():
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError('Ray is not installed: pip install -e ".[ray]" (or pip install "ray>=2.40")') from None
    return ray


def _answers(address: str, timeout: float) -> str | None:
    """None if ``host:port`` accepts a TCP connection within ``timeout`` seconds, else why not."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None  # not host:port (e.g. "auto"): let Ray resolve it
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as err:
        return err.strerror or type(err).__name__


def connect(address: str | None = None, **init_kwargs):
    """Connect this process to the Ray cluster at ``address`` and return the ``ray`` module.

    ``address``: ``HOST:PORT`` of the head node (``ray start --head --port PORT``), ``ray://HOST:PORT`` (Ray
    client), ``auto``, or None: the ``RAY_ADDRESS`` environment variable, else a new single-machine cluster. A
    process already connected stays on its cluster. An address that does not answer within
    :data:`CONNECT_TIMEOUT` seconds is a one-line :class:`ConfigError`, as is a missing Ray."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    if address and not address.startswith("ray://"):
        problem = _answers(address, CONNECT_TIMEOUT)
        if problem:
            raise ConfigError(f"no Ray cluster answers at {address} ({problem}): start one with `ray start --head "
                              "--port PORT` and give its HOST:PORT")
    init_kwargs.setdefault("logging_level", logging.WARNING)
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: {first}") from None
    log.info("connected to Ray: %s", ray.get_runtime_context().gcs_address)
    return ray
