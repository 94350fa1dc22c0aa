"""The program and the runner with a scripted LM, the transparent keyword simulator and an exact embedder."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import dspy
import numpy as np
import pytest
from dspy.dsp.utils.settings import DEFAULT_CONFIG

from ns_dspy.agents import ClusterConfig, Embedder
from ns_dspy.exemplars import ExemplarStore, LayerData, write_store
from ns_dspy.lms.scripted import agent_of, scripted_lm
from ns_dspy.program import ExplainConfig, NeuronScope
from ns_dspy.runs import RunStore
from ns_dspy.runs.runner import explain_units
from ns_dspy.scoring import HeldOut, polysemantic
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import UnitId

WORDS = ["The", " dog", " ran", " and", " a", " cat", " sat", " on", " mat", " today"]


@pytest.fixture(autouse=True)
def reset_dspy():
    yield
    dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))


class WordEmbedder(Embedder):
    """Bag of the words dog / cat / other: exact, so clusters are known."""

    name = "words"

    def embed(self, texts):
        rows = np.array([[("dog" in t) * 1.0, ("cat" in t) * 1.0, 0.1] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _store(tmp_path):
    """Unit 0:1 fires on ' dog' (5) and ' cat' (3); unit 0:2 never fires."""
    rng = np.random.default_rng(0)
    windows = np.array([rng.permutation(len(WORDS))[:6] for _ in range(30)])
    split = np.array([0, 1, 2] * 10)
    acts = np.zeros((2, 30, 6), dtype=np.float32)
    for w in range(30):
        for t, s in enumerate(windows[w]):
            acts[0, w, t] = {" dog": 5.0, " cat": 3.0}.get(WORDS[s], 0.0)
    acts[1] = -0.5
    slots = {}
    for s, name in enumerate(["train", "valid", "test"]):
        rows = np.flatnonzero(split == s)
        slots[(name, "top")] = (np.broadcast_to(rows[:6], (2, 6)).copy(), acts[:, rows[:6]])
        slots[(name, "random")] = (np.broadcast_to(rows[6:], (2, 4)).copy(), acts[:, rows[6:]])
    layer = LayerData(units=np.array([1, 2]), slots=slots, stats={"max": acts.max((1, 2)), "mean": acts.mean((1, 2))})
    return ExemplarStore.open(write_store(tmp_path / "store", manifest={"model": {"name": "toy"}}, strings=WORDS,
                                          windows=windows, window_split=split, layers={0: layer}))


def responder(prompt, request):
    if agent_of(prompt) == "refinement":  # sharpen the explanation of this mode
        history = prompt.split("[[ ## history ## ]]")[-1].split("[[ ##")[0]
        entries = "\n".join(line for line in history.splitlines() if ". score " in line)  # not the feedback
        return {"explanation": "the word dog" if "dog" in entries else "the word cat"}
    if agent_of(prompt) == "decomposition":
        return {"conditions": ["This neuron activates on dogs and puppies", "This neuron activates when dog appears",
                               "This neuron activates on cats", "This neuron activates when a cat sits"]}
    return {"explanation": "dogs, puppies, cats, and animals sitting on mats"}


def fixed_answers(hypothesis: str, conditions: list[str], refined: str):
    """A scripted-LM responder giving each agent one fixed answer (told apart by its prompt's fields)."""
    def respond(prompt, request):
        return {"refinement": {"explanation": refined}, "decomposition": {"conditions": list(conditions)},
                "hypothesis": {"explanation": hypothesis}}[agent_of(prompt)]
    return respond


def _program(**kw):
    cfg = ExplainConfig(candidates=2, iterations=2, max_exemplars=5, cluster=ClusterConfig(), **kw)
    return NeuronScope(KeywordSimulator(), WordEmbedder(), cfg)


def test_explain_stores_full_traces_fails_per_unit_and_resumes(tmp_path):
    store = _store(tmp_path)
    lm, engine = scripted_lm([responder] * 100)
    run = RunStore(tmp_path / "run.sqlite", {"k": 1})
    records = explain_units(_program(), store, [UnitId(0, 1), UnitId(0, 2)], run, lm, progress=False)
    by = {str(r.unit): r for r in records}
    done, failed = by["0:1"], by["0:2"]
    assert failed.status == "failed" and "no activation" in failed.error  # never fires: refused, run goes on
    assert done.status == "done" and done.number == 2  # a dog mode and a cat mode
    t = done.trace
    assert t["raw_explanation"].startswith("dogs") and len(t["conditions"]) == 4
    assert [sorted(c["members"]) for c in t["clusters"]][0][0].startswith("This neuron")
    finals = {f["explanation"] for f in t["finals"]}
    assert finals == {"the word dog", "the word cat"}  # refinement improved both representatives
    assert all(f["valid"] > 0 and f["test"] > 0 for f in t["finals"])
    assert t["polysemantic"]["test"] == pytest.approx(done.score_test)
    assert done.score_valid > max(f["valid"] for f in t["finals"])  # max-combining the modes beats either
    # the test score reuses the calibration fitted on valid (carried by the program's prediction): the same
    # number as fitting it again on valid
    test, valid = HeldOut.from_store(store, UnitId(0, 1), "test"), HeldOut.from_store(store, UnitId(0, 1), "valid")
    modes = [f["explanation"] for f in t["finals"]]
    assert polysemantic(KeywordSimulator(), modes, test, calibration=valid).value == pytest.approx(done.score_test,
                                                                                                   abs=1e-12)
    assert len(t["exemplars_shown"]) == 5 and all(h for h in (c["history"] for c in t["clusters"]))
    calls = len(engine.prompts)
    again = explain_units(_program(), store, [UnitId(0, 1)], run, lm, progress=False)
    assert len(engine.prompts) == calls and again[0].status == "done"  # resumed: nothing redone


def test_no_refine_and_baseline_run_through_the_same_agents(tmp_path):
    store = _store(tmp_path)
    lm, _ = scripted_lm([responder] * 100)
    plain = explain_units(_program(refine=False, stats_modes=False), store, [UnitId(0, 1)], RunStore(tmp_path / "a.sqlite", {}), lm,
                          progress=False)[0]
    assert plain.status == "done" and all("history" not in c for c in plain.trace["clusters"])
    assert {f["explanation"] for f in plain.trace["finals"]} <= set(plain.trace["conditions"])
    lm, engine = scripted_lm([responder] * 100)
    base = explain_units(_program(baseline=True, baseline_k=3), store, [UnitId(0, 1)],
                         RunStore(tmp_path / "b.sqlite", {}), lm, progress=False)[0]
    assert base.status == "done" and base.number == 1 and base.baseline_test == base.score_test
    assert len(engine.prompts) == 3 and "baseline_candidates" in base.trace


def test_lm_failure_is_a_per_unit_message(tmp_path):
    store = _store(tmp_path)
    lm, _ = scripted_lm([ConnectionError("endpoint down")] * 10, default=ConnectionError("endpoint down"))
    record = explain_units(_program(), store, [UnitId(0, 1)], RunStore(tmp_path / "r.sqlite", {}), lm,
                           progress=False)[0]
    assert record.status == "failed" and "endpoint down" in record.error and "\n" not in record.error


def test_copied_programs_share_their_simulator():
    from ns_dspy.simulators import LockedSimulator

    program = _program()
    assert copy.deepcopy(program).simulator is program.simulator
    assert program.deepcopy().simulator is program.simulator
    locked = LockedSimulator(KeywordSimulator())
    assert copy.deepcopy(locked) is locked and locked.cache_key == KeywordSimulator().cache_key


def test_statistical_method_needs_no_lm_and_every_method_carries_its_row(tmp_path):
    store = _store(tmp_path)
    stats = explain_units(_program(method="stats"), store, [UnitId(0, 1), UnitId(0, 2)],
                          RunStore(tmp_path / "s.sqlite", {}), None, progress=False)
    by = {str(r.unit): r for r in stats}
    rec = by["0:1"]
    assert rec.status == "done" and rec.number == 1 and rec.lm_tokens == 0
    assert rec.trace["finals"][0]["explanation"].startswith('the word')
    assert rec.trace["statistical"]["test"] == pytest.approx(rec.score_test)
    assert "peak in" in rec.trace["statistics"] and by["0:2"].status == "failed"
    lm, _ = scripted_lm([responder] * 100)
    full = explain_units(_program(), store, [UnitId(0, 1)], RunStore(tmp_path / "f.sqlite", {}), lm,
                         progress=False)[0]
    row = full.trace["statistical"]  # the same no-LM explanation and scores, beside NeuronScope's
    assert row["explanation"] == rec.trace["finals"][0]["explanation"]
    assert row["valid"] == pytest.approx(rec.score_valid) and row["test"] == pytest.approx(rec.score_test)


def test_refinement_sees_the_statistics_and_its_errors_unless_turned_off(tmp_path):
    store = _store(tmp_path)
    for feedback, statistics in ((True, True), (False, False)):
        lm, engine = scripted_lm([responder] * 100)
        explain_units(_program(feedback=feedback, statistics=statistics), store, [UnitId(0, 1)],
                      RunStore(tmp_path / f"{feedback}.sqlite", {}), lm, progress=False)
        refine = [p for p in engine.prompts if agent_of(p) == "refinement"]
        hypothesis = engine.prompts[0]
        assert refine
        assert any("   missed: " in p for p in refine) == feedback  # the cat mode misses the dogs
        assert all(("peak in" in p) == statistics for p in refine + [hypothesis])


def test_every_neuron_records_its_cost_by_stage_and_the_summary_and_report_show_it(tmp_path):
    from ns_dspy.runs.read import summary_table
    from ns_dspy.costs import STAGES
    from ns_dspy.report import render_report

    store = _store(tmp_path)
    lm, _ = scripted_lm([responder] * 100)
    run = RunStore(tmp_path / "run.sqlite", {"k": 1})
    done = explain_units(_program(racing=False), store, [UnitId(0, 1)], run, lm, progress=False)[0]
    cost = done.trace["cost"]
    usage = done.trace["lm_usage"]
    assert (cost["lm_prompt_tokens"], cost["lm_completion_tokens"]) == (usage["prompt_tokens"],
                                                                        usage["completion_tokens"])
    assert set(cost["seconds"]) <= set(STAGES) and {"hypothesis", "refinement", "scoring"} <= set(cost["seconds"])
    valid = sum(len(ex.tokens) for kind in ("top", "random") for ex in store.exemplars(UnitId(0, 1), "valid", kind))
    test = sum(len(ex.tokens) for kind in ("top", "random") for ex in store.exemplars(UnitId(0, 1), "test", kind))
    scored = {h[0] for c in done.trace["clusters"] for h in c["history"]}
    candidates = {c[0] for c in done.trace["stats_candidates"]} if "stats_candidates" in done.trace else set()
    # every explanation scored on valid once (refinement histories, the statistical candidates, the combined
    # modes), and on test the finals, the statistical row and the combined modes: a lower bound that must hold
    assert cost["simulated_tokens"] >= valid * len(scored | candidates) + test * (len(done.trace["finals"]) + 1)
    assert sum(cost["seconds"].values()) <= done.seconds + 0.5
    table = summary_table([done])
    assert "simulated" in table and f"{cost['simulated_tokens']:>10}" in table
    # calls answered from the LM cache are counted apart: a rerun's zero tokens are not a free LM
    trace = json.loads(json.dumps(done.trace))
    trace["lm_usage"]["cached_calls"] = 7
    lines = summary_table([replace(done, trace=trace)]).splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["cost"])
    assert lines[head].split()[1:6] == ["LM", "in", "LM", "out", "cached"]
    row = lines[head + 1]
    assert row.split()[1:5] == [str(cost["lm_prompt_tokens"]), str(cost["lm_completion_tokens"]), "7",
                                str(cost["simulated_tokens"])]
    page = render_report(tmp_path / "run.sqlite")
    assert "data-cost" in page and f"simulated {cost['simulated_tokens']} tokens" in page


def test_racing_spends_fewer_simulated_tokens_on_the_same_choice(tmp_path):
    store = _store(tmp_path)
    results = {}
    for racing in (False, True):
        lm, _ = scripted_lm([responder] * 100)
        run = RunStore(tmp_path / f"run-{racing}.sqlite", {"k": 1})
        results[racing] = explain_units(_program(racing=racing), store, [UnitId(0, 1)], run, lm, progress=False)[0]
    assert {f["explanation"] for f in results[True].trace["finals"]} == \
        {f["explanation"] for f in results[False].trace["finals"]}
    assert results[True].trace["cost"]["simulated_tokens"] <= results[False].trace["cost"]["simulated_tokens"]


def test_every_agent_bounds_its_answer_length(tmp_path):
    store = _store(tmp_path)
    lm, engine = scripted_lm([responder] * 100)
    run = RunStore(tmp_path / "run.sqlite", {"k": 1})
    explain_units(_program(), store, [UnitId(0, 1)], run, lm, progress=False)
    by_agent = {}
    for prompt, request in zip(engine.prompts, engine.requests):
        by_agent.setdefault(agent_of(prompt), set()).add(request.config.max_tokens)
    assert by_agent == {"hypothesis": {512}, "decomposition": {512}, "refinement": {192}}


def test_statistical_word_lists_join_the_modes_only_when_they_raise_the_valid_score(tmp_path):
    """The LM explains only the cat part of a dog (5) and cat (3) unit: the statistical list of both words joins
    its mode (marked as a statistical mode in the trace), the test score reuses the valid calibration of the chosen
    set, and neither is below the statistical row or the LM's modes on valid; --no-stats-modes keeps the LM's."""
    store = _store(tmp_path)

    cats_only = fixed_answers("cats sitting on mats",
                              ["This neuron activates on cats", "This neuron activates when a cat sits"],
                              "the word cat")

    records = {}
    for on in (True, False):
        lm, _ = scripted_lm([cats_only] * 100)
        records[on] = explain_units(_program(stats_modes=on), store, [UnitId(0, 1)],
                                    RunStore(tmp_path / f"{on}.sqlite", {}), lm, progress=False)[0]
    lm_only, merged = records[False], records[True]
    assert {f["explanation"] for f in lm_only.trace["finals"]} == {"the word cat"}
    stats_row = merged.trace["statistical"]
    sources = [c.get("source", "lm") for c in merged.trace["clusters"]]
    assert sources[-1] == "stats" and sources.count("stats") >= 1
    finals = [f["explanation"] for f in merged.trace["finals"]]
    assert finals[-1] == merged.trace["clusters"][-1]["explanation"] and "dog" in finals[-1]
    assert merged.score_valid >= max(lm_only.score_valid, stats_row["valid"]) - 1e-9
    assert merged.score_valid > lm_only.score_valid + 0.05
    valid, test = HeldOut.from_store(store, UnitId(0, 1), "valid"), HeldOut.from_store(store, UnitId(0, 1), "test")
    assert polysemantic(KeywordSimulator(), finals, test, calibration=valid).value == pytest.approx(merged.score_test,
                                                                                                    abs=1e-12)


def test_every_test_score_carries_its_interval_over_the_test_windows_and_its_lead_over_the_statistical_row(tmp_path):
    """The runner stores, beside the neuron's test score, the bootstrap interval of that very score (recomputed
    here from the same finals and calibration) and the paired interval of its lead over the statistical row;
    the summary and the report show them."""
    from ns_dspy.report import render_report
    from ns_dspy.runs.read import summary_table
    from ns_dspy.scoring import bootstrap

    store = _store(tmp_path)
    lm, _ = scripted_lm([responder] * 100)
    unit = UnitId(0, 1)
    done = explain_units(_program(), store, [unit], RunStore(tmp_path / "run.sqlite", {}), lm, progress=False)[0]
    poly = done.trace["polysemantic"]
    low, high = poly["test_interval"]
    assert low <= done.score_test <= high
    test, valid = HeldOut.from_store(store, unit, "test"), HeldOut.from_store(store, unit, "valid")
    trues, kinds = [ex.activations for ex in test.exemplars], [ex.kind for ex in test.exemplars]
    mine = polysemantic(KeywordSimulator(), [f["explanation"] for f in done.trace["finals"]], test, calibration=valid)
    assert poly["test_interval"] == bootstrap.interval(mine.predictions, trues, kinds).to_list()
    row = done.trace["statistical"]
    theirs = polysemantic(KeywordSimulator(), row.get("explanations", [row["explanation"]]), test, calibration=valid)
    lead = bootstrap.difference_interval(mine.predictions, theirs.predictions, trues, kinds)
    assert poly["lead_interval"] == lead.to_list() and done.score_test - row["test"] in lead
    table = summary_table([done])
    assert f"[{low:.2f}, {high:.2f}]" in table and "test 90%" in table.splitlines()[0]
    assert "minus the statistical row's, 90% interval" in table and "of 1 units" in table
    assert f"90% interval over the test windows [{low:.2f}, {high:.2f}]" in render_report(tmp_path / "run.sqlite")
    # the statistical method has no lead over itself
    stats = explain_units(_program(method="stats"), store, [unit], RunStore(tmp_path / "s.sqlite", {}), None,
                          progress=False)[0]
    assert stats.trace["polysemantic"]["test_interval"] and "lead_interval" not in stats.trace["polysemantic"]
