"""Explanations reworded by a language model: the wording the simulator reads in use, not the templates'.

Every synthetic description is written from templates (:mod:`simulator_training.concepts`,
:mod:`simulator_training.prose`), so a held-out unit is a new concept in familiar words. The explanations a
simulator scores in use, and those of any independent benchmark, are worded by someone else: an explainer LM or a
person. :func:`paraphrase_units` asks an LM (any ns-dspy LM spec; the offline default runs here) to reword a
unit's descriptions without changing what they claim, and stores the answers as ``paraphrases``, aligned with
``explanations`` (None where a description was not reworded). ``eval`` / ``decoys --style paraphrase`` read them
(each unit's chosen explanation reworded, on the same tokens), and ``train`` draws from them beside the originals.

An answer is kept only when it can stand for the description:

* one paragraph of 3 to 80 words, with no chat markup, no preamble ("Sure", "Here is") and no field markers;
* every quoted string in it is quoted in the original too: a quoted example is the most literal claim an
  explanation makes, and an LM-added one may be false of the unit (unquoted wording, synonyms and glosses may
  change, as they do in explanations written by others);
* it still names what the original names literally (:func:`_named`: the quoted words of a description that
  quotes one or two, symbols, Python keywords; at least 80% of a list of four or more quoted words), which a
  small LM otherwise drops, and it does not refer to "the specified words" instead of naming them;
* it differs from the original.

A rejected answer is asked again with another sample (up to ``tries``), then left as None. Answers are appended
to a journal as they come (by default ``OUT.paraphrases.jsonl`` beside the output folder; keyed by the prompt's
version, the LM, the seed and the description), so an interrupted run resumes where it stopped and a rerun asks
nothing twice (a kept answer that the current rules refuse is asked again); the dataset is written once,
atomically, at the end.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import os
import random
import re
from pathlib import Path
from typing import Callable, Sequence

from tqdm.auto import tqdm

from ns_dspy.errors import ConfigError

__all__ = ["PROMPT", "PROMPT_VERSION", "clean_answer", "paraphrase_units", "reworded", "select_units"]

PROMPT_VERSION = 2
PROMPT = (
    "Reword a description of what one neuron of a language model responds to, as another interpretability "
    "researcher would write it. Keep the meaning exactly: every word, token, symbol, context and exception it "
    "names must still be named. Do not add examples. One sentence, or two for a long description. Answer with "
    "the new wording only.\n\n"
    "Description: Fires on the word after \"not\".\n"
    "New wording: This unit responds to whichever word comes right after \"not\".\n\n"
    "Description: Words for kinds of tree, such as \"oak\", but not the word \"tree\" itself.\n"
    "New wording: Names of particular trees like \"oak\" activate it; the generic word \"tree\" does not.\n\n"
    "Description: The Python keyword return.\n"
    "New wording: Detects the return keyword in Python code.\n\n"
    "Description: {description}\n"
    "New wording:")

_QUOTED = re.compile(r'"([^"]+)"|\u201c([^\u201d]+)\u201d')
_MARKUP = re.compile(r"\[\[|##|<\|?im_|```|^\s*(sure|here is|here's|certainly|rewritten|description\s*:)|"
                     r"description:|new wording|:\s*$", re.I)
_BACK_REFERENCE = re.compile(r"\b(specified|listed|given|mentioned|above|these|following|provided)\s+"
                             r"(words?|tokens?|terms?|phrases?)\b|\b(words?|tokens?|terms?|phrases?)\s+(listed|given|"
                             r"mentioned|specified|provided|quoted)(\s+(above|below|here|there))?\b", re.I)
_LABEL = re.compile(r"^\s*(new wording|rewritten description|description|answer)\s*:\s*", re.I)


def reworded(unit: dict) -> list[str]:
    """The unit's kept rewordings (its ``paraphrases`` that are not None), in the order of its explanations."""
    return [p for p in unit.get("paraphrases") or [] if p]


def _quoted(text: str) -> set[str]:
    return {(a or b).strip().lower() for a, b in _QUOTED.findall(text)}


def _named(original: str) -> list[re.Pattern]:
    """What a rewording of ``original`` must still name: its quoted strings when it quotes at most two (then
    they are what fires, not examples), its symbols (``;``, ``**``) and, when it speaks of code, the Python
    keywords it names (a 1.5B LM rewords "with statements" as "statements")."""
    quoted = sorted(_quoted(original))
    must = [re.compile(re.escape(q), re.I) for q in quoted] if len(quoted) <= 2 else []
    bare = _QUOTED.sub(" ", original)
    must += [re.compile(re.escape(t)) for t in re.findall(r"(?<!\S)[^\w\s]{1,3}(?!\S)", bare)
             if t not in {"-", ",", ".", ";", ":", "(", ")", "'"} or re.search(r"\b(token|mark|symbol|sign)\b", bare)]
    if re.search(r"\b(python|code|keywords?|statements?)\b", bare, re.I):
        must += [re.compile(rf"\b{w}\b") for w in re.findall(r"\b[a-z]+\b", bare) if w in _KEYWORDS]
    return must


_KEYWORDS = set(keyword.kwlist) - {"in", "is", "and", "or", "not", "as", "for", "if"}


def clean_answer(answer: str, original: str) -> str | None:
    """``answer`` as a usable rewording of ``original`` (see the module docstring), or None."""
    text = _LABEL.sub("", (answer or "").strip()).strip().strip('"').strip()
    text = text.split("\n\n")[0].replace("\n", " ").strip()
    words = text.split()
    if not 3 <= len(words) <= 80 or _MARKUP.search(text):
        return None
    if not _quoted(text) <= _quoted(original) or not all(m.search(text) for m in _named(original)):
        return None
    listed = _quoted(original)
    if len(listed) >= 4 and sum(q in text.lower() for q in listed) < 0.8 * len(listed):
        return None  # a word list reworded without its words
    if any(":" not in text[m.end():m.end() + 2] for m in _BACK_REFERENCE.finditer(text)):
        return None  # "the specified words": the prompt's words, which the simulator never sees
    if text.lower().rstrip(".") == original.strip().lower().rstrip("."):
        return None
    return text


def _key(description: str, lm_name: str, seed: int) -> str:
    return hashlib.sha1(json.dumps([PROMPT_VERSION, lm_name, seed, description]).encode()).hexdigest()


def select_units(units: list[dict], *, max_units: int | None, seed: int,
                 families: Sequence[str] | None = None) -> list[dict]:
    """The units to reword: those of ``families`` (all when None), then ``max_units`` of them as ``eval``'s
    seeded, family-balanced sample picks them (the same units ``eval --max-units N --seed S`` reads)."""
    from .evaluate import _balanced_sample

    if families:
        unknown = set(families) - {u["family"] for u in units}
        if unknown:
            raise ConfigError(f"no units of famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(sorted(unknown))} "
                              "in this split: name families the dataset has")
        units = [u for u in units if u["family"] in set(families)]
    if max_units is not None and len(units) > max_units:
        units = _balanced_sample(units, max_units, random.Random(seed))
    return units


def paraphrase_units(units: list[dict], ask: Callable[[str, int], str], *, lm_name: str, journal: Path,
                     per_unit: int | None = None, seed: int = 0, tries: int = 3,
                     progress: bool = True) -> tuple[dict[str, list[str | None]], dict]:
    """``{unit name: paraphrases aligned with its explanations}`` for ``units`` and a summary.

    ``ask(prompt, draw)`` returns the LM's answer for the ``draw``-th sample of ``prompt``. ``per_unit`` rewords
    that many of each unit's explanations (a seeded choice), all of them when None. ``journal`` holds every
    answer so far (see the module docstring)."""
    done: dict[str, str | None] = {}
    if journal.exists():
        lines = journal.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                answer = row["paraphrase"]
                if answer is None or clean_answer(answer, row["description"]) == answer:
                    done[row["key"]] = answer  # an answer the current rules refuse is asked again
            except (json.JSONDecodeError, KeyError, TypeError):
                if n < len(lines):  # only the last line may be cut (a run stopped while writing it)
                    raise ConfigError(f"{journal}:{n} is not a paraphrase record: delete the journal to ask "
                                      "again") from None
    out: dict[str, list[str | None]] = {}
    asked = kept = 0
    jobs = []
    for unit in units:
        texts = unit["explanations"]
        rng = random.Random(f"{seed}:{unit['unit']}")
        chosen = sorted(rng.sample(range(len(texts)), min(per_unit, len(texts)))) if per_unit else range(len(texts))
        out[unit["unit"]] = [None] * len(texts)
        jobs.extend((unit["unit"], i, texts[i]) for i in chosen)
    journal.parent.mkdir(parents=True, exist_ok=True)
    with journal.open("a", encoding="utf-8") as log_file:
        for name, i, text in tqdm(jobs, desc="paraphrasing", disable=not progress, unit="text"):
            key = _key(text, lm_name, seed)
            if key not in done:
                result = None
                for draw in range(tries):
                    result = clean_answer(ask(PROMPT.format(description=text), draw), text)
                    if result is not None:
                        break
                asked += 1
                done[key] = result
                log_file.write(json.dumps({"key": key, "unit": name, "description": text, "paraphrase": result},
                                          ensure_ascii=False) + "\n")
                log_file.flush()
                os.fsync(log_file.fileno())
            out[name][i] = done[key]
            kept += done[key] is not None
    summary = {"lm": lm_name, "prompt_version": PROMPT_VERSION, "seed": seed, "units": len(units),
               "texts": len(jobs), "kept": kept, "asked_now": asked}
    return out, summary
