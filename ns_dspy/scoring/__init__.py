"""The score: pooled Pearson correlation of simulated and true activations on held-out data."""

from .correlation import Correlation, pearson, pooled
from .heldout import HeldOut, Score, polysemantic, report, score, select
from .metric import FeedbackMetric, SimulatorMetric, feedback_text

__all__ = ["Correlation", "FeedbackMetric", "HeldOut", "Score", "SimulatorMetric", "feedback_text", "pearson",
           "polysemantic", "pooled", "report", "score", "select"]
