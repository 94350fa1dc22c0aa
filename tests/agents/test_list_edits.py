"""Word lists edited from their own errors on valid (:mod:`ns_dspy.agents.list_edits`): a missed trigger is added,
a false alarm dropped, an edit that holds on valid but not on the train windows is refused (and taken without the
check), anything that is not a word list is left alone, and the program's statistical modes go through it with
refinement on. The keyword simulator reads a word list exactly (10 on a listed word), so every score is known."""

from __future__ import annotations

import numpy as np
import pytest

from ns_dspy.agents.evidence import word_list
from ns_dspy.agents.list_edits import edit_lists, parse_word_list, render_word_list
from ns_dspy.costs import metering
from ns_dspy.scoring import HeldOut, polysemantic, score
from ns_dspy.simulators import KeywordSimulator
from ns_dspy.types import Exemplar, UnitId

UNIT = UnitId(0, 1)
VOCAB = [" dog", " cat", " mat", " sat", " ran", " on", " a", " sky", " big", " red"]


def _exemplars(split: str, seed: int, fires: dict[str, float]) -> list[Exemplar]:
    rng = np.random.default_rng(seed)
    out = []
    for kind, n in (("top", 12), ("random", 8)):
        for _ in range(n):
            tokens = [VOCAB[i] for i in rng.integers(0, len(VOCAB), 12)]
            acts = np.array([fires.get(t, 0.0) + 0.1 * rng.random() for t in tokens], np.float32)
            out.append(Exemplar(tokens=tokens, activations=acts, split=split, kind=kind))
    return out


def _valid(seed: int, fires: dict[str, float]) -> HeldOut:
    return HeldOut(UNIT, "valid", tuple(_exemplars("valid", seed, fires)))


def test_word_lists_parse_and_render_back_and_prose_does_not_parse():
    for tokens in (["dog"], ["dog", "cat"], ["a", "b", "c, d"], ["x and y", "z"]):
        text = word_list(tokens)
        assert parse_word_list(text) == (False, tokens)
        assert render_word_list(False, tokens) == text
        assert parse_word_list(f"(negative) {text}") == (True, tokens)
    for prose in ("dogs and cats", "the word dog", 'the words "dog" or "cat"', ""):
        assert parse_word_list(prose) is None


def test_an_edit_of_several_tokens_names_each_of_them():
    """Adding all missed triggers at once is logged with their names ("add 'cat' + 'sky'"), not as "add all",
    which told the reader nothing when a run's three rounds each added a different set."""
    fires = {" dog": 9.0, " cat": 8.0, " sky": 7.0, " mat": 6.0}
    valid, train = _valid(1, fires), _exemplars("train", 2, fires)
    edited = edit_lists(KeywordSimulator(), [word_list(["dog"])], valid, train)
    names = [name for name, _ in edited.edits]
    assert names and all(n.startswith("add '") for n in names)
    assert any(" + " in n for n in names)
    added = {t.strip("'") for n in names for t in n[len("add "):].split(" + ")}
    final = {t for text in edited.explanations for t in parse_word_list(text)[1]}
    assert {"cat", "sky", "mat"} <= added <= final


def test_a_missed_trigger_is_added_and_a_false_alarm_dropped():
    fires = {" dog": 9.0, " cat": 6.0}
    valid, train = _valid(1, fires), _exemplars("train", 2, fires)
    sim = KeywordSimulator()
    start = [word_list(["dog", "red"])]  # misses cat, lists red, which never fires
    edited = edit_lists(sim, start, valid, train)
    names = [name for name, _ in edited.edits]
    assert any(n == "add 'cat'" or "'cat' + " in n or " + 'cat'" in n for n in names if n.startswith("add "))
    assert any(n == "drop 'red'" or "'red' + " in n or " + 'red'" in n for n in names if n.startswith("drop "))
    final = {t for text in edited.explanations for t in parse_word_list(text)[1]}
    assert {"dog", "cat"} <= final and "red" not in final
    before = polysemantic(sim, start, valid).value
    assert edited.score.value > before + 0.2
    # the reported score is the edited set's own valid score (the union, calibrated on valid, for several lists)
    again = polysemantic(sim, edited.explanations, valid, calibration=valid if len(edited.explanations) > 1 else None)
    assert edited.score.value == pytest.approx(again.value, abs=1e-12)
    # and each list's own valid score, as scoring it alone gives
    assert edited.valids == pytest.approx([s.value for s in score(sim, edited.explanations, valid)], abs=1e-12)
    # each round's recorded score rises
    scores = [s for _, s in edited.edits]
    assert scores == sorted(scores) and scores[0] > before


def test_an_edit_that_fits_valid_only_is_refused_unless_unchecked():
    sim = KeywordSimulator()
    valid = _valid(1, {" dog": 9.0, " sky": 6.0})  # sky fires on valid...
    train = _exemplars("train", 2, {" dog": 9.0})  # ...but never on the train windows
    start = [word_list(["dog"])]
    checked = edit_lists(sim, start, valid, train)
    assert all("sky" not in text for text in checked.explanations)
    unchecked = edit_lists(sim, start, valid, train, confirm=False)
    assert any("sky" in text for text in unchecked.explanations)
    assert unchecked.score.value > checked.score.value


def test_what_is_not_a_word_list_is_left_as_it_is_and_test_data_is_refused():
    sim = KeywordSimulator()
    valid, train = _valid(1, {" dog": 9.0}), _exemplars("train", 2, {" dog": 9.0})
    kept = edit_lists(sim, ["dogs and their friends"], valid, train)
    assert kept.explanations == ["dogs and their friends"] and kept.edits == []
    assert kept.valids == pytest.approx([score(sim, kept.explanations, valid)[0].value], abs=1e-12)
    test = HeldOut(UNIT, "test", valid.exemplars)
    with pytest.raises(ValueError, match="valid"):
        edit_lists(sim, [word_list(["dog"])], test, train)
    with pytest.raises(ValueError, match="edits are confirmed on train exemplars only, got valid ones"):
        edit_lists(sim, [word_list(["dog"])], valid, list(valid.exemplars))


def test_a_negative_list_stays_and_is_never_edited():
    sim = KeywordSimulator()
    fires = {" dog": 9.0, " cat": 6.0, " red": -4.0}
    valid, train = _valid(1, fires), _exemplars("train", 2, fires)
    start = [word_list(["dog"]), f"(negative) {word_list(['red'])}"]
    edited = edit_lists(sim, start, valid, train)
    assert edited.explanations[-1] == start[-1]
    assert any("cat" in text for text in edited.explanations[:-1])
    own = [s.value for s in score(sim, edited.explanations, valid)]
    assert edited.valids == pytest.approx(own, abs=1e-12) and own[-1] > 0  # the negative list's sign is read


def test_the_programs_statistical_modes_are_edited_with_refinement_and_not_without(tmp_path):
    """sky fires on valid and on the one train window that has it: seen once in train, the statistical explainer
    cannot name it (a token must be seen twice); the edits add it, and only with refinement and --list-edits."""
    import copy

    import dspy
    from dspy.dsp.utils.settings import DEFAULT_CONFIG

    from ns_dspy.agents import ClusterConfig
    from ns_dspy.lms.scripted import scripted_lm
    from ns_dspy.program import ExplainConfig, NeuronScope
    from tests.runs.test_runner import WordEmbedder, fixed_answers

    fires = {" dog": 9.0, " sky": 6.0}
    train = [ex for ex in _exemplars("train", 2, fires) if " sky" not in ex.tokens]
    train[0] = Exemplar(tokens=train[0].tokens[:-1] + [" sky"],
                        activations=np.append(train[0].activations[:-1], 6.0).astype(np.float32),
                        split="train", kind=train[0].kind)
    valid = _valid(1, fires)

    responder = fixed_answers("dogs running",
                              ["This neuron activates on dogs", "This neuron activates when a dog runs"], "the word dog")

    finals = {}
    try:
        for name, kw in (("edits", {}), ("off", {"list_edits": False}), ("norefine", {"refine": False})):
            lm, _ = scripted_lm([responder] * 100)
            config = ExplainConfig(candidates=2, iterations=1, max_exemplars=5, cluster=ClusterConfig(), **kw)
            with dspy.context(lm=lm):
                pred = NeuronScope(KeywordSimulator(), WordEmbedder(), config)(train=train, valid=valid)
            finals[name] = (pred.explanations, pred.polysemantic)
            if name == "edits":  # the edited list's mode carries the set's valid score per edit
                edited = [m for m in pred.trace.modes if m.source == "stats" and "sky" in m.explanation]
                assert edited and len(edited[0].trajectory) >= 2
                assert edited[0].trajectory == sorted(edited[0].trajectory)
            if name == "off":
                assert all(not m.trajectory for m in pred.trace.modes if m.source == "stats")
    finally:
        dspy.configure(**copy.deepcopy(DEFAULT_CONFIG))
    assert any("sky" in text for text in finals["edits"][0])
    assert not any("sky" in text for text in finals["off"][0] + finals["norefine"][0])
    assert finals["edits"][1] > finals["off"][1] + 0.05


def test_a_token_in_the_wrong_tier_is_moved_with_moves_on():
    sim = KeywordSimulator()
    fires = {" dog": 9.0, " cat": 2.0, " mat": 2.0}
    valid, train = _valid(1, fires), _exemplars("train", 2, fires)
    start = [word_list(["dog", "cat"]), word_list(["mat"])]  # cat sits with dog, its level is mat's
    moved = edit_lists(sim, start, valid, train, moves=True)
    assert moved.edits and moved.edits[0][0] == "move 'cat' to list 2"
    assert parse_word_list(moved.explanations[0])[1] == ["dog"]
    assert parse_word_list(moved.explanations[1])[1] == ["mat", "cat"]
    # without moves it takes two edits (drop 'cat', add it back to the other list): one round gets half way
    plain = edit_lists(sim, start, valid, train, rounds=1, moves=False)
    assert [name for name, _ in plain.edits] == ["drop 'cat'"]
    assert edit_lists(sim, start, valid, train, rounds=1, moves=True).score.value > plain.score.value + 0.005


def test_the_screen_simulates_fewer_candidates_and_finds_the_same_edits_on_an_exact_reader():
    # the keyword simulator reads a list exactly (10 on a listed token, 0 elsewhere), so the screen's estimate of
    # an edited list is its simulation: one simulated candidate a round finds what simulating all of them finds
    fires = {" dog": 9.0, " cat": 6.0, " mat": 3.0}
    valid, train = _valid(1, fires), _exemplars("train", 2, fires)
    start = [word_list(["dog", "red"]), word_list(["sky", "mat"])]
    runs = {}
    for screen in (0, 1):
        with metering() as meter:
            runs[screen] = (edit_lists(KeywordSimulator(), start, valid, train, moves=True, screen=screen),
                            meter.simulated_tokens)
    (full, full_tokens), (screened, screened_tokens) = runs[0], runs[1]
    assert len(full.edits) >= 2 and screened.edits == full.edits
    assert screened.explanations == full.explanations
    assert screened_tokens < 0.6 * full_tokens
