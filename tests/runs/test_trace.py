"""The typed trace (ns_dspy/trace.py): what the run store keeps for each neuron, read by field."""

from __future__ import annotations

import pytest

from ns_dspy.trace import TRACE_VERSION, Candidate, Cost, Final, Mode, Scores, Shown, Statistical, Trace, TraceError

V1 = {  # a trace as run files before the typed trace stored it (no "version")
    "unit": "3:7", "attempt": 1, "exemplars_shown": [{"window": 4, "tokens": ["a", " b"], "activations": [0.0, 2.5]}],
    "raw_explanation": "fires on b", "conditions": ["b", "c"], "labels": [0, -1],
    "clusters": [{"members": ["b"], "representative": "b", "explanation": "the word b", "valid": 0.4,
                  "history": [["the word b", 0.4], ["b", 0.3]], "trajectory": [0.3, 0.4], "raced": {"x": 10}}],
    "statistical": {"explanation": 'the word " b"', "valid": 0.2, "test": 0.1},
    "finals": [{"explanation": "the word b", "valid": 0.4, "test": 0.35}], "polysemantic": {"valid": 0.4, "test": 0.35},
    "lm_usage": {"prompt_tokens": 10, "completion_tokens": 5, "calls": 2, "faults": {"timeout": 1}},
    "cost": {"lm_prompt_tokens": 10, "lm_completion_tokens": 5, "simulated_tokens": 640, "simulator_calls": 3,
             "seconds": {"hypothesis": 1.5}, "seconds_total": 4.0},
    "a_later_key": {"kept": True},
}


def test_an_old_trace_reads_by_field_and_writes_back_the_same_document_with_a_version():
    t = Trace.from_dict(V1)
    assert t.unit == "3:7" and t.attempt == 1
    assert t.exemplars_shown == [Shown(["a", " b"], [0.0, 2.5], 4)]
    assert t.modes == [Mode(["b"], "b", "the word b", 0.4, [Candidate("the word b", 0.4), Candidate("b", 0.3)],
                            [0.3, 0.4], {"x": 10})]
    assert t.statistical == Statistical(['the word " b"'], 0.2, 0.1)
    assert t.best_final() == Final("the word b", 0.4, 0.35) and t.polysemantic == Scores(0.4, 0.35)
    assert t.cost == Cost(10, 5, 640, 3, {"hypothesis": 1.5}, 4.0)
    assert t.faults == {"timeout": 1} and t.condition_modes() == [0, -1]
    out = t.to_dict()
    assert out["version"] == TRACE_VERSION
    assert {k: v for k, v in out.items() if k != "version"} == V1  # unknown keys kept, nothing lost
    assert Trace.from_dict(out) == t


@pytest.mark.parametrize("edit, message", [
    ({"clusters": 5}, '"clusters" must be a list of objects, got a number'),
    ({"clusters": [{"trajectory": [0.1, "x"]}]}, '"clusters"[0]."trajectory"[1] must be a number'),
    ({"finals": [{"valid": "high"}]}, '"finals"[0]."valid" must be a number or null'),
    ({"exemplars_shown": [{"tokens": ["a"]}]}, '"exemplars_shown"[0] needs "activations"'),
    ({"cost": {"seconds": {"hypothesis": -1}}}, '"cost"."seconds"."hypothesis" must be a number of seconds'),
    ({"version": TRACE_VERSION + 1}, "newer than this ns-dspy reads"),
    ({"labels": [0, True]}, '"labels"[1] must be an integer'),
])
def test_a_malformed_or_newer_trace_is_one_line_naming_the_field(edit, message):
    with pytest.raises(TraceError, match=message.replace("[", r"\[").replace(".", r"\.")) as err:
        Trace.from_dict({**V1, **edit})
    assert "\n" not in str(err.value)


def test_a_failed_neurons_trace_and_the_best_final():
    t = Trace.from_dict({"unit": "0:1", "attempt": 0, "failure": "lm_parse", "lm_usage": {"calls": 1}})
    assert t.failure == "lm_parse" and t.best_final() is None and t.finals == [] and t.modes == []
    assert t.to_dict() == {"version": TRACE_VERSION, "unit": "0:1", "attempt": 0, "lm_usage": {"calls": 1},
                           "failure": "lm_parse"}
    two = Trace(finals=[Final("a", None, 0.1), Final("b", 0.2, 0.0)])
    assert two.best_final().explanation == "b"


def test_a_tiered_statistical_row_round_trips_and_shows_older_readers_one_line():
    t = Trace(statistical=Statistical(['the word "dog"', 'the words "cat" and "mat"'], 0.6, 0.5))
    out = t.to_dict()["statistical"]
    assert out["explanations"] == ['the word "dog"', 'the words "cat" and "mat"']
    assert out["explanation"] == 'the word "dog" | the words "cat" and "mat"'
    assert Trace.from_dict(t.to_dict()).statistical == t.statistical
    with pytest.raises(TraceError, match=r'"statistical"."explanations"\[1\] must be a string'):
        Trace.from_dict({"statistical": {"explanations": ["a", 3]}})


def test_a_records_typed_trace_is_parsed_once_per_document(monkeypatch):
    from ns_dspy.runs.store import NeuronRecord
    from ns_dspy.types import UnitId

    parsed = []
    original = Trace.from_dict
    monkeypatch.setattr(Trace, "from_dict", classmethod(lambda cls, d: parsed.append(d) or original(d)))
    record = NeuronRecord(UnitId(0, 1), "done", None, 1, 0.5, 0.4, 0.3, 10, None, 1.0, trace=dict(V1))
    first = record.typed_trace
    assert record.typed_trace is first and len(parsed) == 1  # read many times, parsed once
    record.trace = {**V1, "unit": "0:2"}  # a new document (as the runner assigns one) is read anew
    assert record.typed_trace.unit == "0:2" and len(parsed) == 2
