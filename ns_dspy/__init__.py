"""ns-dspy: NeuronScope on DSPy - multi-facet, simulator-scored explanations of language-model neurons.

The pipeline reads top to bottom in ``ls ns_dspy/``: ``corpus`` (text sources) -> ``models`` (subject model,
hookpoints) -> ``recording`` (streaming top-k activations) -> ``exemplars`` (the split, on-disk store).
"""

__version__ = "0.1.0"
