"""``best-steps``: one demonstration per agent, the best step of the compile-train neurons' traces, in format.

DSPy's BootstrapFewShot keeps a whole trace as demos when the program's final score passes a threshold, and an
agent called several times in that trace (the Refinement agent: iterations x candidates per mode) gets one of
those calls at random. With a small offline LM that makes for poor demonstrations: measured with bootstrap-rs
(``experiments/results/compile-bootstrap-rs``), the demo hypothesis had run into its output bound, and with it in
the prompt every later hypothesis ran to the bound too, at ~2,000 more prompt tokens per call, and the program
scored lower on compile-val.

This optimizer picks the steps instead of the traces:

- **Refinement**: over every call the agent made on the compile-train neurons, the answer (as the agent used it:
  cleaned, task talk dropped) cut to the signature's format (the first paragraph's first one or two complete
  sentences: the offline LM seldom stops there itself, and an answer cut off at its output bound keeps the
  sentences before), scored again on that neuron's valid data as cut; among the cut answers that score **higher
  than the best explanation shown to the agent in that call** (a demonstration of an improvement), the one with
  the highest valid score.
- **Hypothesis** (only with ``agents="hypothesis,refinement"``): the raw explanation of the compile-train neuron
  whose program scored best, if it ends at a sentence end (an answer cut at the output bound does not).

``max_demos`` such steps per agent (best first, one per neuron). The compiled program is kept only if its mean
metric on compile-val beats the uncompiled program's (as bootstrap-rs keeps the best candidate); otherwise the
uncompiled program is returned and the log says so. Valid data is what the agents are scored on; test data is
never read here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import dspy
from dspy.teleprompt import Teleprompter

from ..agents.formatting import DOUBLE_QUOTED, HISTORY_DECIMALS, clean_output, drop_task_talk, history_best

__all__ = ["BestSteps", "Step", "in_format"]

log = logging.getLogger(__name__)

_STOP = r"[.!?][\"')\]]*"  # a sentence's last mark, with any closing quotes or brackets
_SENTENCE_END = re.compile(_STOP + r"(?=\s|$)")
_END = re.compile(_STOP + "$")
_PRINTED = 0.5 * 10 ** -HISTORY_DECIMALS  # half the last digit format_history prints


def _ends_sentence(text: str) -> bool:
    return bool(_END.search(text.strip()))


def in_format(text: str, max_sentences: int = 2) -> str:
    """The Refinement signature's format cut out of an answer: the first paragraph's first ``max_sentences``
    complete sentences (a full stop inside quotes ends none), or ``""`` when it has no complete sentence (an
    answer cut off at its output bound mid-sentence keeps the sentences before)."""
    para = text.strip().split("\n", 1)[0].strip()
    masked = DOUBLE_QUOTED.sub(lambda m: '"' + "q" * (len(m.group(0)) - 2) + '"', para)
    ends = [m.end() for m in _SENTENCE_END.finditer(masked)]
    if not ends:
        return ""
    return para[:ends[min(max_sentences, len(ends)) - 1]].strip()


def _fields(predictor, inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if k in predictor.signature.input_fields}


@dataclass
class Step:
    agent: str
    unit: str
    inputs: dict
    output: str
    score: float


class BestSteps(Teleprompter):
    """See the module docstring. ``metric(example, prediction)`` is the simulator metric (the valid score)."""

    AGENTS = ("hypothesis", "refinement")

    def __init__(self, metric, agents: str = "refinement", max_demos: int = 1, max_sentences: int = 2,
                 keep_if_worse: bool = False):
        super().__init__()
        chosen = tuple(a.strip() for a in str(agents).split(",") if a.strip())
        unknown = sorted(set(chosen) - set(self.AGENTS))
        if unknown or not chosen:
            raise ValueError(f"agents must be a comma-separated subset of {','.join(self.AGENTS)}, got {agents!r}")
        if max_demos < 1:
            raise ValueError(f"max_demos must be at least 1, got {max_demos}")
        self.metric, self.agents, self.max_demos = metric, chosen, max_demos
        self.max_sentences, self.keep_if_worse = max_sentences, keep_if_worse
        self.steps: dict[str, list[Step]] = {}
        self.val_scores: dict[str, float] = {}

    def _score(self, example, text: str) -> float:
        return float(self.metric(example, dspy.Prediction(explanation=text)))

    def _collect(self, student, trainset) -> dict[str, list[Step]]:
        names = {id(p): name for name, p in student.named_predictors()}
        found: dict[str, list[Step]] = {agent: [] for agent in self.agents}
        for example in trainset:
            with dspy.context(trace=[]):
                try:
                    prediction = student(**example.inputs())
                except Exception as err:  # a neuron the program fails on gives no demonstration
                    log.warning("best-steps: %s failed on compile-train neuron %s: %s", type(err).__name__,
                                example.unit, str(err).splitlines()[0] if str(err) else "")
                    continue
                trace = list(dspy.settings.trace)
            final = float(self.metric(example, prediction))
            for predictor, inputs, outputs in trace:
                agent = names.get(id(predictor), "").split(".")[0]
                if agent not in self.agents:
                    continue
                text = clean_output(outputs.get("explanation"))
                if agent == "refinement":
                    text = drop_task_talk(text, predictor.signature.instructions)
                    best, cut = history_best(str(inputs.get("history", ""))), in_format(text, self.max_sentences)
                    if not cut or best is None:
                        continue
                    score = self._score(example, cut)  # the answer as the demo shows it, scored again
                    log.debug("best-steps: %s: refinement answer %s %.3f (shown best %.3f): %r", example.unit,
                              "as given" if cut == text.strip() else "cut to format", score, best, cut[:120])
                    if score > best + _PRINTED:  # above what was shown, beyond its rounding
                        found[agent].append(Step(agent, example.unit, _fields(predictor, inputs), cut, score))
                elif _ends_sentence(text):
                    found[agent].append(Step(agent, example.unit, _fields(predictor, inputs), text, final))
            log.info("best-steps: compile-train neuron %s scored %.3f; steps so far: %s", example.unit, final,
                     ", ".join(f"{a} {len(s)}" for a, s in found.items()))
        chosen = {}
        for agent, steps in found.items():
            picked, units = [], set()
            for step in sorted(steps, key=lambda s: -s.score):
                if step.unit not in units:
                    picked.append(step)
                    units.add(step.unit)
                if len(picked) == self.max_demos:
                    break
            chosen[agent] = picked
        return chosen

    def _mean(self, program, valset) -> float:
        """The compile-val mean, a neuron the program fails on scored 0 (``dspy.Evaluate``, as compile's own)."""
        result = dspy.Evaluate(devset=valset, metric=self.metric, num_threads=1, display_progress=False,
                               display_table=False, max_errors=len(valset) + 1, failure_score=0.0)(program)
        scores = [float(score) for _, _, score in result.results]
        return sum(scores) / len(scores) if scores else 0.0

    def compile(self, student, *, trainset, valset=None):
        self.steps = self._collect(student, trainset)
        compiled = student.deepcopy()
        demos = 0
        for name, predictor in compiled.named_predictors():
            agent = name.split(".")[0]
            steps = self.steps.get(agent, [])
            predictor.demos = [dspy.Example(augmented=True, **s.inputs, explanation=s.output) for s in steps]
            demos += len(steps)
            for s in steps:
                log.info("best-steps: %s demo from %s (valid %.3f): %s", agent, s.unit, s.score, s.output[:200])
        if not demos:
            log.warning("best-steps: no well-formed improving step in the compile-train traces; the program is "
                        "returned uncompiled")
            return student
        if not valset:
            return compiled
        self.val_scores = {"uncompiled": self._mean(student, valset), "compiled": self._mean(compiled, valset)}
        log.info("best-steps: compile-val mean %.3f uncompiled, %.3f with the demos", self.val_scores["uncompiled"],
                 self.val_scores["compiled"])
        if self.val_scores["compiled"] > self.val_scores["uncompiled"] or self.keep_if_worse:
            return compiled
        log.warning("best-steps: the demos did not raise the compile-val mean; the program is returned uncompiled")
        return student
