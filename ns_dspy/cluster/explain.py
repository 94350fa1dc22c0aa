"""Explaining on a Ray cluster: workers are Ray actors that each build the program once from the run
configuration and explain the units they are handed; this process stays the run's only writer.

Layout. ``explain(..., executor="ray")`` (``ns-dspy explain --executor ray``) connects to the cluster
(:func:`ns_dspy.cluster.connect`), starts ``workers`` actors - each reserving ``worker_cpus`` CPUs and
``worker_gpus`` GPUs, so a local fine-tuned simulator lands on a GPU node - and waits until every one has
built its LM client, simulator and embedder from the serialised :class:`~ns_dspy.config.RunConfig` (a bad spec
is one line here, before the run file is created). The runner (:func:`ns_dspy.runs.runner.explain_units`) then
claims each unit in the run store, hands it to a free actor and writes the record the actor returns: results
stream back as they complete, progress and the summary are the usual ones, and the run store (SQLite on the
driver's disk) is the single source of truth - no worker writes to it.

Faults. Actors are restarted by Ray when their process dies (``max_restarts``) and the unit in flight is
retried on the restarted actor (``max_task_retries``); if an actor stays dead the unit is handed to another
one. Whatever happens, a unit's row is written once by this process, and a ``done`` row is never replaced
(:meth:`~ns_dspy.runs.store.RunStore.put`), so a killed worker loses and duplicates nothing. A unit that fails
in the program (LM down, unusable answers) is a ``failed`` row, as in a local run.

Plug-ins registered outside ns-dspy (a simulator or embedder kind defined in your own module) are imported by
each worker from the module that defines them; that module must be importable on every node (installed, or on
a path every node shares). Environment variables named ``NS_DSPY_*``, ``DSPY_*``, ``HF_*`` and
``TRANSFORMERS_*`` are passed to the workers; secrets (``OPENAI_API_KEY``) are not: set them in the workers'
environment.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from ..config import ExecutorConfig, RunConfig
from ..errors import ConfigError, NsDspyError
from ..types import UnitId

__all__ = ["RayWorkers", "ClusterError", "PASSED_ENV"]

log = logging.getLogger(__name__)

PASSED_ENV = ("NS_DSPY_", "DSPY_", "HF_", "TRANSFORMERS_", "LITELLM_")
"""Prefixes of the environment variables handed to the workers."""

ACTOR_PREFIX = "ns-dspy-explain-"
"""Workers are named actors ``ns-dspy-explain-TAG-I`` in the driver's namespace (``ray list actors`` shows them)."""

HANDOFFS = 3
"""How many actors a unit is tried on when the one it was given stays dead."""


class ClusterError(NsDspyError):
    """The cluster could not run the work (every worker dead, workers that cannot start)."""


def _plugin_modules(config: RunConfig) -> list[tuple[str, str | None]]:
    """(module, folder to put on sys.path) of the plug-ins this run uses that are defined outside ns-dspy."""
    from ..agents.embedders import Embedder
    from ..simulators.base import Simulator, _import_backend

    kinds = []
    sim_kind = config.simulator.spec.partition(":")[0]
    _import_backend(sim_kind)
    kinds.append(Simulator.registry.get(sim_kind))
    kinds.append(Embedder.registry.get(config.embedder.spec.partition(":")[0]))
    out = []
    for impl in kinds:
        module = getattr(impl, "__module__", "") or ""
        if not module or module.split(".")[0] == "ns_dspy":
            continue
        file = getattr(sys.modules.get(module), "__file__", None)
        out.append((module, str(Path(file).resolve().parent) if file else None))
    return out


def _cause(err: BaseException) -> BaseException:
    """The exception raised inside a worker, unwrapped from Ray's wrappers."""
    seen = err
    for _ in range(5):
        inner = getattr(seen, "cause", None)
        if inner is None or inner is seen:
            break
        seen = inner
    return seen


def _worker_class(ray):
    @ray.remote(max_restarts=-1, max_task_retries=-1)
    class ExplainWorker:
        """Builds the program once; explains one unit per call."""

        def __init__(self, config: dict, store: str, plugins: list, env: dict):
            os.environ.update(env)
            import importlib

            for module, folder in plugins:
                if folder and folder not in sys.path:
                    sys.path.insert(0, folder)
                importlib.import_module(module)
            from ..build import build_program
            from ..exemplars import ExemplarStore

            self.built = build_program(RunConfig.from_dict(config))
            self.store = ExemplarStore.open(store)

        def ready(self) -> str:
            return f"{os.uname().nodename}:{os.getpid()}"

        def provenance(self, extra: dict) -> dict:
            return self.built.provenance(**extra)

        def explain(self, unit: str, attempt: int, budget_s: float | None):
            from ..runs.runner import explain_unit

            return explain_unit(self.built.program, self.store, UnitId.parse(unit), self.built.lm, attempt=attempt,
                                budget_s=budget_s)

    return ExplainWorker


@dataclasses.dataclass
class RayWorkers:
    """A pool of explain actors on the connected cluster (see the module docstring); ``explain`` is called by
    the runner's threads, one unit per free actor."""

    ray: Any
    config: RunConfig
    actors: list
    nodes: list[str]

    @classmethod
    def start(cls, config: RunConfig, store: str | Path, *, workers: int, worker_cpus: float = 1.0,
              worker_gpus: float = 0.0, timeout_s: float = 600.0) -> "RayWorkers":
        """Start ``workers`` actors and wait until each has built its program (or fail in one line)."""
        from . import ray_module

        ray = ray_module()
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        from ..build import check_run_config

        check_run_config(config)  # a bad spec: one line here, before any worker starts
        env = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ENV)}
        plugins = _plugin_modules(config)
        worker = _worker_class(ray)
        tag = secrets.token_hex(4)
        actors = [worker.options(num_cpus=worker_cpus, num_gpus=worker_gpus, name=f"{ACTOR_PREFIX}{tag}-{i}")
                  .remote(config.to_dict(), str(Path(store).resolve()), plugins, env) for i in range(workers)]
        try:
            nodes = ray.get([a.ready.remote() for a in actors], timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            for a in actors:
                ray.kill(a)
            raise ClusterError(f"{workers} explain worker(s) were not ready after {timeout_s:.0f} s: the cluster has "
                               f"fewer free resources than {worker_cpus:g} CPU / {worker_gpus:g} GPU per worker, "
                               "or building the program is slow; give fewer --workers") from None
        except ray.exceptions.RayError as err:
            for a in actors:
                ray.kill(a)
            cause = _cause(err)
            if isinstance(cause, NsDspyError):
                raise cause from None
            text = str(cause)
            ours = re.findall(r"ns_dspy\.errors\.\w+: (.+)", text)  # our one-line error, raised in the worker
            last = ours[-1] if ours else (text.strip().splitlines() or [type(cause).__name__])[-1]
            raise ClusterError(f"an explain worker could not start: {last.strip()}") from None
        log.info("%d explain worker(s) ready on %s", workers, ", ".join(sorted(set(n.split(":")[0] for n in nodes))))
        return cls(ray, config, actors, list(nodes))

    def __post_init__(self) -> None:
        self._free: queue.Queue = queue.Queue()
        for actor in self.actors:
            self._free.put(actor)
        self._alive = len(self.actors)  # actors not known to be dead for good
        self._lock = threading.Lock()

    def _take(self):
        """A free actor; ClusterError once every actor has died for good (instead of waiting forever)."""
        while True:
            try:
                return self._free.get(timeout=0.5)
            except queue.Empty:
                with self._lock:
                    if self._alive == 0:
                        raise ClusterError("every explain worker died for good (restarts exhausted or killed "
                                           "without restart): check the cluster, then rerun the same command to "
                                           "resume") from None

    @property
    def slots(self) -> int:
        return len(self.actors)

    def provenance(self, **extra: Any) -> dict:
        """What a run records, as :meth:`ns_dspy.build.Built.provenance` (from a worker's build)."""
        return self.ray.get(self.actors[0].provenance.remote(extra))

    def explain(self, unit: UnitId, attempt: int, budget_s: float | None):
        """The unit's record from a free actor; handed to another actor if its actor stays dead."""
        ray = self.ray
        last: BaseException | None = None
        for _ in range(HANDOFFS):
            actor = self._take()
            try:
                return ray.get(actor.explain.remote(str(unit), attempt, budget_s))
            except ray.exceptions.RayActorError as err:  # died for good (restarts exhausted or killed for good)
                last = err
                log.warning("explain worker died on unit %s: %s; handing it to another worker", unit,
                            str(_cause(err)).splitlines()[0] if str(_cause(err)) else type(err).__name__)
                actor = None
                with self._lock:
                    self._alive -= 1
            finally:
                if actor is not None:
                    self._free.put(actor)
        raise ClusterError(f"unit {unit}: {HANDOFFS} explain workers died on it ({type(last).__name__}); rerun the "
                           "same command to resume")

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # already gone
                pass


def start_workers(config: RunConfig, store: str | Path, executor: ExecutorConfig) -> RayWorkers:
    """Connect to ``executor``'s cluster and start its workers (``workers`` None: one per free CPU-slot of the
    cluster, at least 1)."""
    from . import connect

    ray = connect(executor.ray_address)
    workers = executor.workers
    if workers is None:
        cpus = float(ray.available_resources().get("CPU", 1.0))
        workers = max(1, int(cpus // max(executor.worker_cpus, 1e-9)))
    return RayWorkers.start(config, store, workers=workers, worker_cpus=executor.worker_cpus,
                            worker_gpus=executor.worker_gpus or 0.0)
