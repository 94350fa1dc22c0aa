"""DSPy-facing metrics: thin wrappers that score a prediction's explanation on the example's valid data.

``example.valid`` is a :class:`~ns_dspy.scoring.heldout.HeldOut` of split ``valid`` (optimizers select with
it; test data never reaches a metric). The prediction carries ``explanation`` (one string) or
``explanations`` (several, one per semantic mode: scored with the per-token max of their predictions, each
calibrated on the valid data, see ``polysemantic``).
"""

from __future__ import annotations

from collections.abc import Sequence


from ..simulators.base import Simulator
from ..types import Exemplar
from .heldout import HeldOut, Score, polysemantic, select

__all__ = ["SimulatorMetric", "FeedbackMetric", "feedback_text", "error_tokens"]


class SimulatorMetric:
    """``metric(example, prediction, trace=None) -> float``: the valid score of the prediction."""

    def __init__(self, simulator: Simulator):
        self.simulator = simulator

    def score(self, example, prediction) -> Score:
        valid: HeldOut = example.valid
        many = getattr(prediction, "explanations", None)
        if many:
            return polysemantic(self.simulator, list(many), valid, calibration=valid)
        return select(self.simulator, [str(prediction.explanation)], valid)[0]

    def __call__(self, example, prediction, trace=None) -> float:
        return self.score(example, prediction).value


class FeedbackMetric(SimulatorMetric):
    """GEPA's metric: ``dspy.Prediction(score=..., feedback=...)``; the feedback names the tokens the
    explanation most under- and over-predicts, so a reflection LM knows what to change."""

    def __init__(self, simulator: Simulator, n_tokens: int = 5):
        super().__init__(simulator)
        self.n_tokens = n_tokens

    def __call__(self, gold, pred, trace=None, pred_name=None, pred_trace=None):
        import dspy

        result = self.score(gold, pred)
        return dspy.Prediction(score=result.value,
                               feedback=feedback_text(result, gold.valid.exemplars, self.n_tokens))


def _context(ex: Exemplar, i: int, width: int = 4) -> str:
    left = "".join(ex.tokens[max(0, i - width):i])
    return f"{left}[[{ex.tokens[i]}]]".replace("\n", " ").strip()


def _errors(result: Score, exemplars: Sequence[Exemplar]) -> list[tuple[float, int, int]]:
    """(truth - prediction, exemplar, token) for every token, most over-predicted first. Both sides are scaled to
    [0, 1] (truth by its maximum, predictions by the 0..10 scale) before comparing."""
    truth_max = max((float(ex.activations.max()) for ex in exemplars if len(ex.activations)), default=0.0) or 1.0
    rows = []
    for j, (ex, pred) in enumerate(zip(exemplars, result.predictions)):
        for i in range(len(ex.tokens)):
            rows.append((float(ex.activations[i]) / truth_max - float(pred[i]) / 10.0, j, i))
    rows.sort()
    return rows


def error_tokens(result: Score, exemplars: Sequence[Exemplar], n: int = 3,
                 least: float = 0.25) -> tuple[list[str], list[str]]:
    """The ``n`` most under-predicted and ``n`` most over-predicted tokens, each as a few tokens of context with
    the token in ``[[ ]]``; only errors of at least ``least`` (on the [0, 1] scales of :func:`_errors`), and each
    context once."""
    rows = _errors(result, exemplars)

    def pick(items):
        out: list[str] = []
        for err, j, i in items:
            text = _context(exemplars[j], i)
            if abs(err) >= least and text not in out:
                out.append(text)
            if len(out) == n:
                break
        return out

    return pick(reversed(rows)), pick(rows)


def feedback_text(result: Score, exemplars: Sequence[Exemplar], n: int = 5) -> str:
    """A short report: the score and parts, then the most under-predicted and over-predicted tokens.

    Both sides are scaled to [0, 1] (truth by its maximum, predictions by the 0..10 scale) before comparing.
    """
    rows = _errors(result, exemplars)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in result.parts.items())
    lines = [f"Score {result.value:.3f} (pooled Pearson r over {result.correlation.n} tokens; {parts})."]
    if result.constant:
        lines.append("The simulator predicted the same activation everywhere: the explanation names nothing it "
                     "can recognise in these texts. Be concrete about which tokens activate the neuron.")

    def describe(items):
        return "; ".join(f"'{_context(exemplars[j], i)}' (true {exemplars[j].activations[i]:.2f}, "
                         f"predicted {result.predictions[j][i]:.1f}/10)" for _, j, i in items)

    under = [r for r in reversed(rows[-n:]) if r[0] > 0]
    over = [r for r in rows[:n] if r[0] < 0]
    if under:
        lines.append("Under-predicted (the neuron fires here but the explanation does not cover it): " + describe(under))
    if over:
        lines.append("Over-predicted (the explanation predicts activity the neuron does not show): " + describe(over))
    return "\n".join(lines)
