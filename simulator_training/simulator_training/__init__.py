"""Fine-tuning ns-dspy's simulator: synthetic and recorded training data, LoRA training, evaluation, export.

The model input and read-out are ``ns_dspy.simulators.finetuned_format``'s; this package only adds data, the
training loop and its evaluation. Run ``python -m simulator_training --help``.
"""
