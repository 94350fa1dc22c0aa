"""Shard tasks that fail on purpose, for the distributed-recording tests.

Each factory returns a closure (pickled by value, so Ray workers need not import this file) that stands in for
``ns_dspy.cluster.record.record_shard`` (the driver hands it to each worker) and calls the real one unless it is to
fail.
"""

from __future__ import annotations


def raising_on(chunk: int):
    """A shard task that raises for the shard holding ``chunk``, every time."""

    def record_shard(config, subject, items):
        from ns_dspy.cluster import record

        if any(item[0] == chunk for item in items):
            raise RuntimeError(f"injected failure in chunk {chunk}")
        return record.record_shard(config, subject, items)

    return record_shard


def crashing_once_on(chunk: int, marker: str):
    """A shard task whose worker process dies (os._exit) on the first attempt at the shard holding ``chunk``;
    ``marker`` (a file path) records that it did, so the shard succeeds when Ray runs it again on the restarted
    worker."""

    def record_shard(config, subject, items):
        import os

        from ns_dspy.cluster import record

        if any(item[0] == chunk for item in items):
            try:
                with open(marker, "x"):
                    pass
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return record.record_shard(config, subject, items)

    return record_shard
