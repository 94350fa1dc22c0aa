"""Sweeps: optuna tunes NeuronScope's clustering and refinement settings on a fixed set of neurons.

``space`` (what varies, from a file or the default), ``storage`` (a SQLite file or a shared RDB URL),
``cache`` and ``cached`` (LM and embedding work reused across trials, workers and studies, kept in the study's
database), ``objective`` (one trial: the program over the sweep neurons, per-neuron intermediate values),
``study`` (create or join, run to ``n_trials``, choose, report on test once), ``report`` (the table) and
``run`` (a worker: :class:`SweepConfig` and :func:`run_sweep`, what ``ns-dspy sweep`` calls).
"""

from .cache import WorkCache, digest
from .cached import CachedDecomposition, CachedEmbedder, CachedHypothesis, CachedRefinement, Ledger
from .run import SweepConfig, run_sweep
from .objective import Evaluator, NeuronResult, Objective, SweepNeuron, TrialError, sweep_neurons
from .space import DEFAULT_SPACE, Param, SearchSpace, apply_params, default_space, load_space
from .storage import open_storage, masked_storage_url, storage_url
from .study import choose, counts, open_study, run_worker, score_on_test

__all__ = ["DEFAULT_SPACE", "CachedDecomposition", "CachedEmbedder", "CachedHypothesis", "CachedRefinement",
           "Evaluator", "Ledger", "NeuronResult", "Objective", "Param", "SearchSpace", "SweepConfig", "SweepNeuron", "TrialError",
           "WorkCache", "apply_params", "choose", "counts", "default_space", "digest", "load_space", "open_storage",
           "open_study", "masked_storage_url", "run_sweep", "run_worker", "storage_url", "sweep_neurons", "score_on_test"]
