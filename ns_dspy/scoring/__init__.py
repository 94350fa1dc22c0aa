"""The score: pooled Pearson correlation of simulated and true activations on held-out data."""

from .correlation import Correlation, pearson, pooled
from .calibration import Calibration, calibrate
from .heldout import HeldOut, Score, fit_calibration, polysemantic, report, score, select
from .metric import FeedbackMetric, SimulatorMetric, feedback_text

__all__ = ["Calibration", "Correlation", "FeedbackMetric", "HeldOut", "Score", "SimulatorMetric", "calibrate",
           "feedback_text", "fit_calibration", "pearson", "polysemantic", "pooled", "report", "score", "select"]
