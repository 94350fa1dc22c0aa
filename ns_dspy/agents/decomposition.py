"""Stage 2a: split a raw explanation into atomic, falsifiable activation conditions.

Small local LMs answer a ``list[str]`` field in many shapes (a JSON array in a code fence, an object such as
``{"claims": [...]}``, numbered lines, leaked ``[[ ## completed ## ]]`` markers) and sometimes loop on the
list. :func:`parse_conditions` accepts all of these and always returns clean, deduplicated sentences that
start with "This neuron ..."; :class:`DecompositionAgent` parses the raw LM text when DSPy's adapter cannot,
retries once with a fresh sample (a rollout id of this attempt of the neuron, see
:mod:`ns_dspy.agents.reliability`), and only then gives up on the neuron.
"""

from __future__ import annotations

import ast
import json
import logging
import re

import dspy
from dspy.utils.exceptions import AdapterParseError

from ..parsing import PARSE_LOCK
from .errors import AgentError
from .formatting import clean_output, leaked_instructions
from .reliability import UnusableAnswer, bounded_answer, check_budget, fresh_rollout
from .signatures import Decompose

__all__ = ["DecompositionAgent", "parse_conditions", "normalise_condition", "MAX_CONDITIONS"]

log = logging.getLogger(__name__)

MAX_CONDITIONS = 12
"""Conditions kept per explanation: a guard against an LM looping on the list (the paper's example has 16
conditions from three raw explanations, about 5 per explanation)."""

_MARKER = re.compile(r"\[\[\s*##[^\]]*?##\s*\]\]")
_FENCE_LINE = re.compile(r"^\s*```[\w-]*\s*$")
_BULLET = re.compile(r"^\s*(?:[-*\u2022+]|\(?\d{1,3}[.):\]]|\[\d{1,3}\])\s+(.*)$")
_SUBJECT = re.compile(r"^(?:this|the|that)\s+(?:neuron|unit|feature)(?=\s|['\u2019]s\b)", re.I)
_VERB = re.compile(r"^(?:it\s+)?(?=(?:activates|fires|responds|is\s+activ|becomes\s+activ)\w*\b)", re.I)
_WHEN = re.compile(r"^(?:when|whenever|if)\b", re.I)
_LOWER_STARTERS = {"a", "an", "the", "it", "its", "there", "this", "that", "these", "those", "any", "some",
                   "tokens", "token", "words", "word", "text", "one"}


def _strip(text: str) -> str:
    """Markers, enclosing quotes/commas and extra whitespace off one item."""
    s = " ".join(_MARKER.sub(" ", text).split())
    s = s.rstrip(",;").strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'`":
        s = s[1:-1].strip()
    return s


def normalise_condition(text: str) -> str:
    """One condition as a standalone sentence starting with "This neuron ..." ("" when nothing is left)."""
    s = _strip(text)
    if m := _BULLET.match(s):
        s = m.group(1).strip()
    if not re.search(r"[A-Za-z0-9]", s):
        return ""
    if m := _SUBJECT.match(s):
        s = "This neuron" + s[m.end():]
    elif m := _VERB.match(s):
        rest = s[m.end():]
        s = "This neuron " + rest[:1].lower() + rest[1:]
    elif _WHEN.match(s):
        s = "This neuron activates " + s[:1].lower() + s[1:]
    else:
        first = s.split(maxsplit=1)[0]
        if first.lower() in _LOWER_STARTERS:
            s = s[:1].lower() + s[1:]
        s = "This neuron activates when " + s
    if s.rstrip(" .") in ("This neuron", "This neuron activates", "This neuron activates when"):
        return ""
    return s if s.rstrip("\"')\u201d\u2019")[-1:] in (".", "!", "?") else s + "."


def _literal(text: str):
    """A JSON / Python container in ``text`` (whole, or from its first bracket to the last), else None."""
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    candidates = [text] + ([text[min(starts):max(text.rfind("]"), text.rfind("}")) + 1]] if starts else [])
    for candidate in candidates:
        for load in (json.loads, ast.literal_eval):
            try:
                with PARSE_LOCK:
                    obj = load(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, SystemError):
                continue  # SystemError: CPython 3.11's parser, racing a parse in DSPy (ns_dspy.parsing)
            if isinstance(obj, (list, tuple, dict)):
                return obj
    body = re.sub(r"^```[\w-]*\s*", "", text).rstrip("` \n")
    if body[:1] in "[{":  # e.g. an array cut off at max_tokens by an LM looping on the list
        import json_repair  # a dependency of dspy

        obj = json_repair.loads(body)
        if isinstance(obj, (list, dict)):
            return obj
    return None


def _from_lines(text: str) -> list[str]:
    """Bulleted or numbered lines, or lines that already read "This neuron ..."; other prose is dropped."""
    items = []
    for line in text.splitlines():
        if _FENCE_LINE.match(line):
            continue
        s = _strip(line)
        if m := _BULLET.match(s):
            items.append(m.group(1))
        elif _SUBJECT.match(s):
            items.append(s)
    return items


def _from_text(text: str, depth: int) -> list[str]:
    text = _MARKER.sub("\n", text).strip()
    obj = _literal(text) if depth < 3 else None
    items = _from_obj(obj, depth + 1) if obj is not None else []
    return items or _from_lines(text)


def _from_obj(obj, depth: int) -> list[str]:
    if isinstance(obj, dict):
        lists = [v for v in obj.values() if isinstance(v, (list, tuple)) and v]
        if lists:  # {"claims": [...]}: the first non-empty list holds the conditions
            return _from_obj(lists[0], depth)
        return [item for v in obj.values() if isinstance(v, str) for item in _from_item(v, depth)]
    if isinstance(obj, (list, tuple)):
        items = []
        for v in obj:
            if isinstance(v, str):
                items.extend(_from_item(v, depth))
            elif isinstance(v, (dict, list, tuple)) and depth < 3:
                items.extend(_from_obj(v, depth + 1)[:1] if isinstance(v, dict) else _from_obj(v, depth + 1))
        return items
    return []


def _from_item(text: str, depth: int) -> list[str]:
    """A string inside a container: itself, unless it is a nested container or several bulleted lines."""
    s = _MARKER.sub(" ", text).strip()
    if depth < 3 and s[:1] in "[{`":
        nested = _from_text(s, depth)
        if nested:
            return nested
    if sum(bool(_BULLET.match(line)) for line in s.splitlines()) >= 2:
        return _from_lines(s)
    return [text]


def _key(condition: str) -> str:
    return " ".join(condition.casefold().split()).rstrip(" .!?")


def parse_conditions(raw, *, max_conditions: int = MAX_CONDITIONS, max_chars: int = 500) -> list[str]:
    """Conditions from whatever an LM returned, normalised, deduplicated, in order.

    Accepts a Python list, a JSON array (also inside a code fence), an object whose first non-empty list
    value holds the strings (``{"claims": [...]}``), or numbered / bulleted lines; strips leaked
    ``[[ ## field ## ]]`` markers. Each item is made to start with "This neuron" ("This neuron fires
    when ..." stays as it is). Items longer than ``max_chars`` are dropped as junk, and at most
    ``max_conditions`` are kept. Unusable input gives ``[]``.
    """
    if raw is None:
        return []
    items = _from_text(raw, 0) if isinstance(raw, str) else _from_obj(raw, 0)
    out, seen = [], set()
    for item in items:
        condition = normalise_condition(item)
        if not condition or len(condition) > max_chars or _key(condition) in seen:
            continue
        seen.add(_key(condition))
        out.append(condition)
        if len(out) == max_conditions:
            break
    return out


class DecompositionAgent(dspy.Module):
    """``forward(explanation) -> Prediction(conditions=list[str])``: atomic, falsifiable conditions.

    When the LM's answer cannot be used (DSPy cannot parse it and neither can :func:`parse_conditions`, or
    no condition survives), the call is retried once with a fresh sample (a rollout id no first try and no
    earlier attempt of the neuron used, so never a cached answer) at ``retry_temperature``; a second failure
    raises :class:`~ns_dspy.agents.reliability.UnusableAnswer` (an :class:`AgentError`) for this neuron.
    """

    def __init__(self, *, max_conditions: int = MAX_CONDITIONS, max_chars: int = 500,
                 retry_temperature: float = 1.0, max_tokens: int = 512):
        super().__init__()
        if max_conditions < 1:
            raise ValueError(f"max_conditions must be at least 1, got {max_conditions}")
        self.max_conditions, self.max_chars, self.retry_temperature = max_conditions, max_chars, retry_temperature
        self.max_tokens = max_tokens  # the most tokens an answer may take (a list of short conditions)
        self.decompose = dspy.Predict(Decompose)

    def _attempt(self, explanation: str, config: dict) -> tuple[list[str], str]:
        try:
            raw = self.decompose(explanation=explanation, config=config).conditions
            problem = "no usable condition in the answer"
        except AdapterParseError as err:  # DSPy could not read the list: read the raw text ourselves
            raw, problem = err.lm_response, "answer not a list of conditions"
        except SystemError as err:  # CPython 3.11's parser failing on garbage while another thread parses
            raw, problem = None, f"answer could not be parsed ({err})"
        conditions = parse_conditions(raw, max_conditions=self.max_conditions, max_chars=self.max_chars)
        # conditions about the answer rather than the neuron are dropped, unless that would leave none (a
        # preference: this filter alone never fails a neuron)
        usable = [c for c in conditions if not leaked_instructions(c, self.decompose.signature.instructions)]
        if len(usable) < len(conditions):
            log.info("decomposition: %d of %d conditions talk about the task, not the neuron%s",
                     len(conditions) - len(usable), len(conditions), "; kept them all" if not usable else "")
        return usable or conditions, problem

    def forward(self, explanation: str) -> dspy.Prediction:
        explanation = clean_output(explanation)
        if not explanation:
            raise AgentError("no explanation to decompose: the raw explanation is empty")
        problems = []
        for config in ({"max_tokens": self.max_tokens},
                       {"rollout_id": fresh_rollout(), "temperature": self.retry_temperature,
                        "max_tokens": self.max_tokens}):
            check_budget("decomposition")
            with bounded_answer("decomposition", self.max_tokens):
                conditions, problem = self._attempt(explanation, config)
            if conditions:
                return dspy.Prediction(conditions=conditions)
            log.info("decomposition attempt failed: %s", problem)
            problems.append(problem)
        raise UnusableAnswer(f"the decomposition LM gave no usable conditions in 2 attempts "
                             f"({'; then '.join(problems)})")
