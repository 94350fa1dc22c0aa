"""Compile NeuronScope with DSPy's optimizers against the simulator score.

``data`` builds neuron-level train / val / test sets from an exemplar store, ``compile`` drives DSPy's
optimizers (``mipro``, ``gepa``, ``bootstrap``, ``bootstrap-rs``) over the agents' predictors, ``artifact``
saves and loads a compiled program (DSPy JSON state plus a manifest) and ``run`` does one compilation end to
end, as ``ns-dspy compile`` does.
"""

from .artifact import fingerprint, load_compiled, manifest_path, read_manifest, save_compiled
from .compile import (OPTIMIZERS, Evaluation, OptimizerSpec, check_options, compile_program, evaluate_program,
                      optimizer_names, parse_options, register, trainable_modules)
from .data import DEFAULT_FRACTIONS, NeuronSets, neuron_example, neuron_sets, split_sizes
from .run import CompileReport, compile_neurons

__all__ = ["DEFAULT_FRACTIONS", "OPTIMIZERS", "CompileReport", "Evaluation", "NeuronSets", "OptimizerSpec",
           "check_options", "compile_neurons", "compile_program", "evaluate_program", "fingerprint", "load_compiled",
           "manifest_path", "neuron_example", "neuron_sets", "optimizer_names", "parse_options",
           "read_manifest", "register", "save_compiled", "split_sizes", "trainable_modules"]
