"""LM rewordings of the synthetic descriptions (the paraphrase command): an answer is kept only when it can
stand for the description, answers are journalled so a rerun asks nothing twice, eval --style paraphrase reads
the same units and explanations reworded, and training draws from them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fake_chat import FakeChatServer
from ns_dspy.errors import ConfigError
from ns_dspy.simulators.keyword import KeywordSimulator

from simulator_training.cli import main
from simulator_training.data import build_synthetic, read_units
from simulator_training.evaluate import evaluate, restyle, template_rows
from simulator_training.paraphrase import PROMPT, clean_answer, paraphrase_units, select_units


@pytest.mark.parametrize("original, answer, kept", [
    ("Words for kinds of tree.", "Names of particular trees activate it.", True),
    ("Words for kinds of tree.", 'Names of trees such as "oak" activate it.', False),  # an added quoted example
    ('The word "then".', "Responds to the word then.", True),
    ('The word "then".', "Responds to adverbs of time.", False),  # the quoted word that fires is gone
    ("The ; token.", "Detects semicolons.", False),  # the symbol is gone
    ("The ; token.", "Detects the ; token in any text.", True),
    ("Active for with statements", "This unit responds to statements.", False),  # the Python keyword is gone
    ("Active for with statements", "Fires on Python with statements.", True),
    ("Words for kinds of tree.", "Sure! Here is the new wording: names of trees.", False),  # a preamble
    ("Words for kinds of tree.", "The description can be rewritten as follows:", False),
    ("Words for kinds of tree.", "Words for kinds of tree", False),  # no rewording
    ("Words for kinds of tree.", "trees", False),  # too short to stand for it
    ("Words for kinds of tree.", "New wording: Names of particular trees.\n\nDescription: x", True),  # label cut
    ('The words "oak", "elm", "ash" and "fir".', "Detects any of the specified words.", False),  # list dropped
    ('The words "oak", "elm", "ash" and "fir".', "Fires on oak, elm, ash or fir.", True),
    ('The words "oak", "elm", "ash" and "fir".', 'Fires on "oak" and "elm".', False),  # half the list
    ("Any of these words: oak, elm, ash.", "Responds to the listed words.", False),  # the prompt's words
    ("Any of these words: oak, elm, ash.", "Responds to any of the words listed above.", False),
    ("Any of these words: oak, elm, ash.", "Responds to the listed words: oak, elm and ash.", True),
])
def test_an_answer_is_kept_only_when_it_can_stand_for_the_description(original, answer, kept):
    result = clean_answer(answer, original)
    assert (result is not None) == kept
    if kept:
        assert "\n" not in result and not result.lower().startswith("new wording")


@pytest.fixture(scope="module")
def data(tiny_pool, tiny_tokenizer, tmp_path_factory):
    return build_synthetic(tmp_path_factory.mktemp("para") / "d", tiny_tokenizer, tokenizer_name="tiny",
                           pool=tiny_pool, valid_share=0.3, n_top=3, n_random=2, valid_top=3, valid_random=2,
                           pairs_train=6, pairs_valid=3, progress=False)


def _reword(prompt: str) -> str:
    """A deterministic rewording of the description in ``prompt`` (the test's LM)."""
    description = prompt.rsplit("Description: ", 1)[1].split("\nNew wording:")[0]
    return f"In other words, it responds to {description[0].lower() + description[1:]}"


def test_answers_are_journalled_and_a_rerun_asks_nothing(data, tmp_path):
    units = select_units(read_units(data, "valid"), max_units=4, seed=0)
    asked = []

    def ask(prompt, draw):
        asked.append(draw)
        return "Sure! Here it is:" if len(asked) % 5 == 1 else _reword(prompt)  # every fifth first answer refused

    journal = tmp_path / "j.jsonl"
    found, summary = paraphrase_units(units, ask, lm_name="t", journal=journal, per_unit=2, progress=False)
    assert summary["texts"] == sum(min(2, len(u["explanations"])) for u in units) == summary["kept"]
    assert 1 in asked  # a refused answer was asked again with another sample
    for unit in units:
        texts = found[unit["unit"]]
        assert len(texts) == len(unit["explanations"]) and sum(t is not None for t in texts) == min(2, len(texts))
        for text, original in zip(texts, unit["explanations"]):
            assert text is None or text == clean_answer(_reword(PROMPT.format(description=original)), original)
    n = len(asked)
    again, summary2 = paraphrase_units(units, ask, lm_name="t", journal=journal, per_unit=2, progress=False)
    assert again == found and len(asked) == n and summary2["asked_now"] == 0
    # a journal whose last line was cut mid-write resumes; a corrupt line elsewhere is refused in one line
    journal.write_text(journal.read_text() + '{"key": "ab')
    assert paraphrase_units(units, ask, lm_name="t", journal=journal, per_unit=2, progress=False)[0] == found
    journal.write_text("not json\n" + journal.read_text())
    with pytest.raises(ConfigError, match=r"j\.jsonl:1 is not a paraphrase record"):
        paraphrase_units(units, ask, lm_name="t", journal=journal, per_unit=2, progress=False)
    # an answer kept under older rules that the current ones refuse is asked again
    rows = [json.loads(line) for line in journal.read_text().splitlines()[1:-1]]
    rows[0]["paraphrase"] = "Detects any of the specified words."
    journal.write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = len(asked)
    assert paraphrase_units(units, ask, lm_name="t", journal=journal, per_unit=2, progress=False)[0] == found
    assert len(asked) == n + 1
    # another LM is another key: asked again
    paraphrase_units(units, ask, lm_name="other", journal=tmp_path / "k.jsonl", per_unit=1, progress=False)
    assert len(asked) > n


def test_the_command_writes_the_same_dataset_with_paraphrases_and_eval_reads_them(data, tmp_path, capsys):
    def answer(body):
        return _reword(body["messages"][-1]["content"])

    out = tmp_path / "para"
    assert main(["-q", "paraphrase", "--data", str(data), "--out", str(out), "--lm", "nope:x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown LM spec") and len(err.splitlines()) == 1 and not out.exists()
    assert main(["-q", "paraphrase", "--data", str(data), "--out", str(out), "--per-unit", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --per-unit must be at least 1" and not out.exists()
    with FakeChatServer(answer, model="toy") as server:
        argv = ["-q", "paraphrase", "--data", str(data), "--out", str(out), "--lm", f"endpoint:{server.url}@toy",
                "--max-units", "4"]
        assert main(argv) == 0
        calls = server.calls
        assert main(argv) == 2  # the output exists
        assert "already exists" in capsys.readouterr().err
        assert main(argv + ["--overwrite"]) == 0 and server.calls == calls  # the journal answered
    plain, reworded = read_units(data, "valid"), read_units(out, "valid")
    assert read_units(out, "train") == read_units(data, "train")
    assert [u["unit"] for u in reworded] == [u["unit"] for u in plain]
    chosen = {u["unit"] for u in select_units(plain, max_units=4, seed=0)}
    for u, v in zip(plain, reworded):
        assert {k: v[k] for k in u} == u  # same exemplars and explanations
        assert ("paraphrases" in v) == (u["unit"] in chosen)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["paraphrased"][-1]["kept"] == sum(len(u["explanations"]) for u in plain if u["unit"] in chosen)

    styled = restyle(reworded, "paraphrase")
    short = evaluate(KeywordSimulator(), plain, max_units=4, progress=False)
    para = evaluate(KeywordSimulator(), styled, max_units=4, progress=False)
    assert [r["unit"] for r in para] == [r["unit"] for r in short]  # the same units, in the same order
    for r, s in zip(para, short):
        assert r["explanation"] != s["explanation"]
        assert re.sub(r"^In other words, it responds to ", "", r["explanation"]).lower() == s["explanation"].lower()
    assert template_rows(styled, para) == []
    whole = evaluate(KeywordSimulator(), styled, progress=False)  # every unit: most were not reworded
    assert set(template_rows(styled, whole)) == {u["unit"] for u in plain} - chosen
    with pytest.raises(ConfigError, match="paraphrase --data"):
        restyle(plain, "paraphrase")


def test_an_lm_that_is_down_or_fails_mid_run_is_one_line_and_the_answers_so_far_are_kept(data, tmp_path, capsys):
    out = tmp_path / "para"
    with FakeChatServer(lambda body: "x") as gone:
        url = gone.url
    argv = ["-q", "paraphrase", "--data", str(data), "--out", str(out), "--max-units", "4"]
    assert main(argv + ["--lm", f"endpoint:{url}@toy"]) == 2  # nothing answers: refused before any call
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no server at") and len(err.splitlines()) == 1
    assert not out.exists() and not Path(f"{out}.paraphrases.jsonl").exists()

    answered, failing = [], [True]

    def answer(body):  # the server answers five requests, then fails every one until it is fixed
        answered.append(1)
        if failing[0] and len(answered) > 5:
            return 400, {"error": {"message": "model unloaded", "type": "invalid_request_error"}}
        return _reword(body["messages"][-1]["content"])

    journal = Path(f"{out}.paraphrases.jsonl")
    with FakeChatServer(answer, model="toy") as server:
        spec = f"endpoint:{server.url}@toy"
        assert main(argv + ["--lm", spec]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "failed (" in err and "rerun the same command" in err, err
        assert not out.exists() and len(journal.read_text().splitlines()) == 5  # the finished answers are kept
        failing[0] = False
        calls = server.calls
        assert main(argv + ["--lm", spec]) == 0
        texts = sum(len(u["explanations"]) for u in select_units(read_units(data, "valid"), max_units=4, seed=0))
        assert server.calls - calls == texts - 5  # the rerun asks only what was not answered
    assert len(journal.read_text().splitlines()) == texts


def test_training_draws_paraphrases_too(data, drawn_explanations):
    units = read_units(data, "train")
    for u in units:
        u["paraphrases"] = [f"reworded {i} of {u['unit']}" if i == 0 else None for i in range(len(u["explanations"]))]
    seen = drawn_explanations(units)
    reworded = {u["paraphrases"][0] for u in units}
    assert None not in seen and any(t in reworded for t in seen)
    assert set(seen) <= reworded | {t for u in units for t in u["explanations"]}
