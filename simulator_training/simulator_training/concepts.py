"""Synthetic units: concepts whose activation on real text is known by construction, with explanations.

Each :class:`Concept` maps every word of a :class:`~simulator_training.text.Pool` to an activation in 0..10
and carries several natural descriptions of itself. Six families cover what real neurons respond to:

* ``semantic``: word lists of one meaning (animals, colours, kinship, money, ...);
* ``word``: one specific word ("the word 'of'"), function words and frequent content words;
* ``spelling``: suffixes, prefixes, capitalisation, digits, hyphens, length;
* ``syntax``: parts of speech from the Brown tags, and words in a syntactic context ("nouns after 'the'");
* ``position``: place in the sentence or line (by count, too), quotes and brackets, punctuation marks and
  the word after each;
* ``code``: Python keywords, literals, comments, definitions, operators, and symbols with the token after them.

With ``build-data --wordnet DIR`` a seventh family, ``wordnet`` (:func:`wordnet_concepts`), adds semantic
categories from WordNet's hypernym tree (:mod:`simulator_training.wordnet`), described mostly by their head word
and gloss rather than by listing members, graded by sense rank, each with decoy words of a sibling category.

With ``build-data --conditions`` the ``condition`` family (:func:`condition_concepts`) adds units whose activation
depends on a condition, not on a word alone: a word only in one context ("time" right after "the", "But" opening
a sentence, "you" inside quotation marks, some graded: "strongest after 'the', weaker elsewhere"), the scope of a
negation (the words after not / never / no / n't up to the next punctuation mark), quoted speech and the narration
after it, a category but not one member or case ("colour words other than 'white'", "nouns not right after an
article"), the word after a cue that is itself a category ("the word after a number"), and code in a context
(parameters on a def line, inline comments). Each has a decoy: the same words where the condition does not hold.
With ``build-data --lists N`` the ``lists`` family (:func:`list_concepts`) adds N units that fire on an arbitrary
set of 4 to 32 words, described by listing every one of them (the form ns-dspy's statistical explainer writes).
None of these options is on by default, so the default units (and dataset) stay as they were.

Marks and symbols are described by name, by the symbol itself and by both ("commas", "the , token").

Every unit is causal, as a neuron of a left-to-right language model is: its value at a word depends on that
word and the words before it only ("the word after a comma", never "the word before a comma" or "the last word
of a sentence"). The simulator reads the text left to right too, so a unit that looks ahead could only be
guessed from statistics, and a subject neuron could not compute it either.

Targets are graded where the description says so ("strongest on X, weaker on Y"), and :func:`pair` makes
two-concept units (polysemantic neurons). Explanations are written from the descriptions in varied styles by
:func:`explanations`; some name example words, most do not.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ns_dspy.agents.word_classes import BE, HAVE, PREFIXES, SHAPES, SUFFIX_ENDINGS, SUFFIXES, WORD_CLASSES

from .text import Pool

__all__ = ["Concept", "all_concepts", "pair", "explanations", "phrasings", "FAMILIES", "wordnet_concepts",
           "wordnet_descriptions", "plural", "condition_concepts", "CONDITION_FAMILY", "list_concepts", "LIST_FAMILY",
           "narrow_concepts", "NARROW_FAMILY", "neighbour_concepts", "NEIGHBOUR_FAMILY"]

FAMILIES = ("semantic", "word", "spelling", "syntax", "position", "code")


@dataclass
class Concept:
    name: str
    family: str
    descriptions: list[str]
    values: Callable[[Pool], np.ndarray] = field(repr=False)
    source: str = "any"  # which windows show it: prose, code or any
    weak: str | None = None  # description of a weaker second component, if graded
    decoy: Callable[[Pool], np.ndarray] | None = field(default=None, repr=False)  # bool per word: related words
    # the unit is quiet on (a sibling category's); build_synthetic adds "contrast" windows that hold them

    def word_values(self, pool: Pool) -> np.ndarray:
        return np.asarray(self.values(pool), dtype=np.float32)


# ----------------------------------------------------------------------------------------- helpers

def _lex(pool: Pool, pred: Callable[[str], bool]) -> np.ndarray:
    """bool per word: ``pred`` on its lower-cased form (evaluated once per distinct form)."""
    table = np.fromiter((pred(w) for w in pool.lowers), dtype=bool, count=len(pool.lowers))
    return table[pool.lower_id]


def _raw(pool: Pool, pred: Callable[[str], bool]) -> np.ndarray:
    table = np.fromiter((pred(w) for w in pool.raws), dtype=bool, count=len(pool.raws))
    return table[pool.raw_id]


def _tags(pool: Pool, tags: set[str], ids: np.ndarray | None = None) -> np.ndarray:
    wanted = np.fromiter((t in tags for t in pool.tags), dtype=bool, count=len(pool.tags))
    ids = pool.tag_id if ids is None else ids
    return np.where(ids >= 0, wanted[np.maximum(ids, 0)], False)


def _neighbour(pool: Pool, ids: np.ndarray, words: set[str]) -> np.ndarray:
    wanted = np.fromiter((w in words for w in pool.lowers), dtype=bool, count=len(pool.lowers))
    return np.where(ids >= 0, wanted[np.maximum(ids, 0)], False)


def _is(pool: Pool, chars: set[str]) -> np.ndarray:
    """bool per word: its raw spelling is one of ``chars`` (a mark or symbol; case matters)."""
    return _raw(pool, chars.__contains__)


def _after(pool: Pool, words: set[str]) -> np.ndarray:
    """bool per word: the word before it is one of ``words`` (lower-cased)."""
    return _neighbour(pool, pool.prev, words)


def _v(mask: np.ndarray, value: float = 10.0) -> np.ndarray:
    return mask.astype(np.float32) * value


def plural(w: str) -> str:
    """The regular plural of a noun (of its last word: "motor vehicle" -> "motor vehicles")."""
    return w + "es" if w.endswith(("s", "sh", "ch", "x")) else (w[:-1] + "ies" if w.endswith("y") and w[-2] not in "aeiou" else w + "s")


def _forms(words: str) -> set[str]:
    """A word list with simple plurals added."""
    out = set()
    for w in words.split():
        out.add(w)
        out.add(plural(w))
    return out


# ----------------------------------------------------------------------------------------- semantic

SEMANTIC = {
    "animals": ("dog cat horse cow pig sheep goat bird fish lion tiger bear wolf fox deer rabbit mouse rat snake "
                "chicken duck eagle owl monkey elephant mule bull calf pony hound puppy", [
                    "names of animals", "words for animals, wild or domestic", "mentions of creatures such as pets and livestock"]),
    "colours": ("red blue green yellow black white brown gray grey pink purple orange golden silver scarlet crimson "
                "violet pale dark", ["colour words", "words naming colours", "colors and shades"]),
    "kinship": ("mother father brother sister son daughter wife husband uncle aunt cousin grandmother grandfather "
                "parent child children baby family mom dad niece nephew", [
                    "family members and kinship terms", "words for relatives", "kinship relations like parents and siblings"]),
    "body": ("head hand hands eye eyes face arm arms leg legs foot feet heart finger fingers mouth nose ear ears "
             "shoulder knee skin hair lips teeth tooth neck chest back", [
                 "parts of the human body", "body-part words", "anatomy words such as limbs and facial features"]),
    "numbers": ("one two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred "
                "thousand million dozen", ["number words spelled out", "numerals written as words", "counting words"]),
    "time_units": ("second minute hour day week month year decade century morning evening night afternoon today "
                   "tomorrow yesterday", ["units and periods of time", "words about time spans", "time expressions like days and years"]),
    "weekdays_months": ("monday tuesday wednesday thursday friday saturday sunday january february march april june "
                        "july august september october november december", [
                            "names of weekdays and months", "calendar names", "days of the week and months of the year"]),
    "money": ("money dollar dollars cent cents price prices cost costs pay paid tax taxes budget income profit bank "
              "loan debt fund funds salary wage wages cash", [
                  "money and finance", "financial terms", "words about payment, prices and funds"]),
    "food": ("food bread meat milk butter cheese egg eggs sugar salt coffee tea wine beer dinner lunch breakfast meal "
             "soup cake fruit apple apples potatoes rice", ["food and drink", "words for meals and things people eat", "edible things and beverages"]),
    "emotion": ("love hate fear anger joy happy sad afraid angry glad sorrow grief pleasure happiness anxiety "
                "proud ashamed lonely jealous delight", ["emotions and feelings", "words expressing feelings", "affective states such as fear or joy"]),
    "weather": ("rain snow wind storm sun sunshine cloud clouds weather fog ice cold heat warm hot thunder "
                "lightning frost", ["weather words", "words about weather and temperature", "meteorological conditions"]),
    "buildings": ("house home room door window wall floor roof kitchen church school hospital office building "
                  "hotel apartment hall library barn", ["buildings and rooms", "words for buildings and their parts", "architecture: houses, rooms, doors"]),
    "vehicles": ("car cars truck bus train plane ship boat automobile wagon bicycle airplane aircraft vessel "
                 "jeep taxi", ["vehicles", "means of transport", "words for cars, boats, trains and planes"]),
    "clothing": ("shirt dress coat hat shoes shoe jacket suit skirt trousers pants gloves tie boots uniform "
                 "sweater clothes clothing collar", ["clothing", "items of clothing", "garments and things people wear"]),
    "military": ("army soldier soldiers war battle troops officer enemy weapon weapons gun guns military navy "
                 "attack fight captain general rifle", ["military and war", "words about armies and fighting", "warfare vocabulary"]),
    "religion": ("god church faith prayer lord christ jesus holy spirit religion religious bible sin heaven "
                 "priest worship divine soul", ["religion", "religious vocabulary", "words about faith, God and worship"]),
    "law": ("law court judge jury trial crime criminal police lawyer attorney guilty sentence prison legal "
            "case evidence witness arrest", ["law and crime", "legal vocabulary", "courts, police and crime"]),
    "politics": ("government president congress senate election vote votes party democrat republican governor "
                 "senator political policy state legislature minister", ["politics and government", "political vocabulary", "elections, parties and officials"]),
    "science": ("science scientific theory experiment data energy atom atoms molecule cells temperature pressure "
                "chemical physics laboratory research measurement", ["science and research", "scientific vocabulary", "experiments, physics and chemistry terms"]),
    "music_art": ("music song songs piano singer dance art artist painting poem poetry novel theatre theater "
                  "orchestra jazz opera concert", ["music and the arts", "artistic vocabulary", "songs, paintings, poems and performances"]),
    "sports": ("game games team player players ball baseball football golf coach season score league win won "
               "race champion", ["sports", "sports vocabulary", "games, teams and players"]),
    "nature": ("tree trees forest river mountain mountains sea ocean lake hill hills grass flower flowers field "
               "fields valley island stone rock", ["nature and landscape", "natural features like rivers and trees", "outdoor scenery words"]),
    "education": ("school student students teacher teachers college university class classes education lesson "
                  "study learning professor course degree", ["education", "school and university vocabulary", "words about teaching and learning"]),
    "health": ("doctor doctors hospital patient patients disease illness medicine nurse health treatment sick "
               "pain cancer drug drugs surgery", ["health and medicine", "medical vocabulary", "illness, doctors and treatment"]),
    "countries": ("america american england english france french germany german russia russian china chinese "
                  "japan japanese italy italian europe european africa african britain british cuba", [
                      "countries and nationalities", "names of nations and their adjectives", "geopolitical place names"]),
    "cities": ("york chicago boston washington london paris moscow atlanta dallas philadelphia texas california "
               "rome berlin tokyo", ["cities and US states", "place names of cities", "geographic names of cities and states"]),
    "motion_verbs": ("walk walked walking run ran running go went going come came coming move moved moving climb "
                     "jumped rushed hurried drove", ["verbs of motion", "words describing movement", "going, coming and moving"]),
    "speech_verbs": ("say said says tell told asked ask answered replied shouted whispered spoke speak called "
                     "cried explained", ["verbs of speaking", "speech verbs like said and told", "words introducing what someone said"]),
    "cognition": ("think thought know knew believe believed understand understood remember forget idea mind "
                  "realize decided wonder guess", ["verbs and nouns of thinking", "mental activity: knowing, believing, remembering", "cognition words"]),
    "size": ("big large small little huge tiny great vast enormous short tall long wide narrow giant", [
        "size adjectives", "words about how big or small something is", "dimension words like large and tiny"]),
    "evaluation": ("good bad best worst better worse excellent poor fine terrible wonderful nice perfect awful "
                   "beautiful ugly", ["evaluative adjectives", "words judging quality", "praise and criticism words like good and bad"]),
    "negation": ("not no never none nothing nobody neither nor without cannot nowhere", [
        "negation words", "words that negate", "negative words like never and nothing"]),
    "quantity": ("all some many much more most few several every each any both enough less least", [
        "quantifiers", "words for amounts", "quantity words like many, few and every"]),
    "water": ("water river sea ocean lake rain wet swim boat ship shore beach wave waves stream pool", [
        "water and the sea", "things to do with water", "rivers, seas and swimming"]),
    "light": ("light bright dark shadow sun lamp shine shining glow candle fire flame darkness dim", [
        "light and darkness", "words about light", "brightness, shadows and flames"]),
    "sound": ("sound noise voice loud quiet silence silent music ring rang bell heard hear listen", [
        "sound and hearing", "words about noise and sound", "hearing, voices and silence"]),
    "occupations": ("teacher doctor lawyer farmer worker workers driver engineer writer clerk manager secretary "
                    "artist nurse pilot sailor banker", ["occupations", "job titles", "words naming professions"]),
    "materials": ("wood iron steel glass paper stone gold silver plastic cotton leather metal brick concrete "
                  "rubber wool", ["materials and substances", "what things are made of", "materials such as wood and metal"]),
    "furniture": ("chair chairs table tables bed beds desk sofa couch shelf cabinet bench lamp carpet", [
        "furniture", "household furniture", "chairs, tables, beds and the like"]),
    "death": ("death dead die died dying kill killed murder funeral grave corpse buried bury", [
        "death and killing", "words about dying", "mortality vocabulary"]),
    "communication": ("letter letters phone telephone message news newspaper radio television book books magazine "
                      "report mail", ["media and communication", "ways of sending information", "letters, newspapers, radio"]),
    "computing": ("file files function functions module class object objects value values string list dict "
                  "error errors argument arguments method methods", ["programming concepts", "software vocabulary", "words about code: functions, modules, values"]),
}


def _semantic() -> list[Concept]:
    out = []
    for name, (words, descs) in SEMANTIC.items():
        forms = _forms(words)
        source = "code" if name == "computing" else "prose"
        out.append(Concept(f"semantic:{name}", "semantic", descs,
                           (lambda f: lambda p: _v(_lex(p, f.__contains__) & ~p.code))(forms), source))
    # graded: strongest on one list, weaker on a related one
    graded = [("animals", "food", "animals, and more weakly food"), ("kinship", "emotion", "family, and more weakly feelings"),
              ("military", "death", "war, and more weakly death"), ("weather", "water", "weather, and more weakly water")]
    for strong, weak, _ in graded:
        a, b = _forms(SEMANTIC[strong][0]), _forms(SEMANTIC[weak][0]) - _forms(SEMANTIC[strong][0])
        out.append(Concept(f"semantic:{strong}>{weak}", "semantic", SEMANTIC[strong][1][:2],
                           (lambda a, b: lambda p: np.maximum(_v(_lex(p, a.__contains__)), _v(_lex(p, b.__contains__), 4.0)) * ~p.code)(a, b),
                           "prose", weak=SEMANTIC[weak][1][0]))
    return out


# ----------------------------------------------------------------------------------------- single words

FUNCTION_WORDS = ("the of and to a in that is was he for it with as his on be at by i this had not are but from "
                  "or have an they which one you were her all she there would their we him been has when who will "
                  "more no if out so said what up its about into than them can only other new some could these two "
                  "may then do first any my now such like our over me even most made after also did many before "
                  "must through back where much your way well down should because each just those how too very "
                  "still own see long here between both under never same another while last might us off since "
                  "against again without however upon yet though although whether until shall").split()


def _words(pool: Pool, n_content: int = 240) -> list[Concept]:
    """One unit per word: the function words above and the most frequent other words of the prose."""
    counts = np.bincount(pool.lower_id[~pool.code], minlength=len(pool.lowers))
    order = np.argsort(-counts)
    chosen = [w for w in FUNCTION_WORDS if w in pool.lower_index]
    content = []
    for i in order:
        w = pool.lowers[i]
        if counts[i] < 40 or len(content) >= n_content:
            break
        if w.isalpha() and len(w) > 2 and w not in FUNCTION_WORDS:
            content.append(w)
    out = []
    for w in chosen + content:
        descs = [f'the word "{w}"', f'occurrences of "{w}"', f'the token "{w}" (any capitalisation)']
        out.append(Concept(f"word:{w}", "word", descs,
                           (lambda i: lambda p: _v((p.lower_id == i) & ~p.code))(pool.lower_index[w]), "prose"))
    return out


# ----------------------------------------------------------------------------------------- spelling

# the spelling classes and their descriptions: the one definition is ns_dspy's (its statistical explainer names them)
ALT = {suf: ends for suf, ends in SUFFIX_ENDINGS.items() if ends != (suf,)}


def _spelling() -> list[Concept]:
    out = []
    for suf, desc in SUFFIXES.items():
        ends = ALT.get(suf, (suf,))
        pred = (lambda ends: lambda w: w.isalpha() and len(w) > max(len(e) for e in ends) + 2 and w.endswith(ends))(ends)
        out.append(Concept(f"spelling:-{suf}", "spelling",
                           [desc, f"words with the suffix -{suf}", f"any word whose spelling ends in \"{suf}\""],
                           (lambda pred: lambda p: _v(_lex(p, pred) & ~p.code))(pred), "prose"))
    for pre, desc in PREFIXES.items():
        pred = (lambda pre: lambda w: w.isalpha() and len(w) > len(pre) + 2 and w.startswith(pre))(pre)
        out.append(Concept(f"spelling:{pre}-", "spelling", [desc, f"words spelled with \"{pre}\" at the start"],
                           (lambda pred: lambda p: _v(_lex(p, pred) & ~p.code))(pred), "prose"))
    out += [
        Concept("spelling:capitalised-mid", "spelling",
                list(SHAPES["capitalised-mid"]),
                lambda p: _v(_raw(p, lambda w: w[:1].isupper() and w[1:].islower()) & (p.pos > 0) & ~p.code), "prose"),
        Concept("spelling:allcaps", "spelling", list(SHAPES["allcaps"]),
                lambda p: _v(_raw(p, lambda w: len(w) > 1 and w.isalpha() and w.isupper())), "any"),
        Concept("spelling:digits", "spelling", list(SHAPES["digits"]),
                lambda p: _v(_raw(p, lambda w: any(c.isdigit() for c in w)) & ~p.code), "prose"),
        Concept("spelling:hyphen", "spelling", list(SHAPES["hyphen"]),
                lambda p: _v(_raw(p, lambda w: "-" in w.strip("-") and any(c.isalpha() for c in w)) & ~p.code), "prose"),
        Concept("spelling:long", "spelling", list(SHAPES["long"]),
                lambda p: _v(_lex(p, lambda w: w.isalpha() and len(w) >= 10) & ~p.code), "prose"),
        Concept("spelling:apostrophe", "spelling", list(SHAPES["apostrophe"]),
                lambda p: _v(_raw(p, lambda w: "'" in w and any(c.isalpha() for c in w)) & ~p.code), "prose"),
        Concept("spelling:double", "spelling", list(SHAPES["double"]),
                lambda p: _v(_lex(p, lambda w: w.isalpha() and any(a == b for a, b in zip(w, w[1:]))) & ~p.code), "prose"),
    ]
    return out


# ----------------------------------------------------------------------------------------- syntax

# parts of speech from the Brown tags: the one definition is ns_dspy's (its statistical explainer names them too)
POS = WORD_CLASSES


NEXT_TO = ("the", "a", "of", "to", "in", "and", "was", "had", "would", "not", "very", "his", "my", "i", "he", "they",
           "it", "is", "could", "will", "for", "with", "by", "from", "this", "no", "be", "have", "an", "their")


def _syntax() -> list[Concept]:
    out = []
    for name, (tags, descs) in POS.items():
        out.append(Concept(f"syntax:{name}", "syntax", descs, (lambda t: lambda p: _v(_tags(p, t)))(tags), "prose"))
    noun = {"nn", "nns"}
    out += [
        Concept("syntax:noun_after_article", "syntax",
                ["nouns directly after an article", "the noun right after a or the", "article-noun pairs, firing on the noun"],
                lambda p: _v(_tags(p, noun) & _tags(p, {"at"}, p.prev_tag)), "prose"),
        Concept("syntax:verb_after_to", "syntax", ["verbs after the infinitive marker to", "infinitives: the verb in to + verb"],
                lambda p: _v(_tags(p, {"vb"}) & _tags(p, {"to"}, p.prev_tag)), "prose"),
        Concept("syntax:verb_after_modal", "syntax", ["the verb following a modal", "main verbs after can, will, would or must"],
                lambda p: _v(_tags(p, {"vb", "be", "hv", "do"}) & _tags(p, {"md", "md*"}, p.prev_tag)), "prose"),
        Concept("syntax:object_of_prep", "syntax", ["the noun or pronoun right after a preposition", "objects of prepositions"],
                lambda p: _v(_tags(p, noun | {"ppo", "np"}) & _tags(p, {"in"}, p.prev_tag)), "prose"),
        Concept("syntax:subject_verb", "syntax", ["verbs right after a subject pronoun", "the verb in 'he said', 'they went'"],
                lambda p: _v(_tags(p, {"vbd", "vbz", "vb", "md"}) & _tags(p, {"pps", "ppss"}, p.prev_tag)), "prose"),
        Concept("syntax:noun_after_possessive", "syntax", ["nouns right after a possessive like his, her or their", "the possessed noun in 'his hand'"],
                lambda p: _v(_tags(p, noun) & _tags(p, {"pp$"}, p.prev_tag)), "prose"),
        Concept("syntax:predicate_adjective", "syntax", ["adjectives after a form of be", "predicate adjectives, as in 'was happy'"],
                lambda p: _v(_tags(p, {"jj"}) & _tags(p, BE, p.prev_tag)), "prose"),
        Concept("syntax:participle_after_have", "syntax", ["past participles after has, have or had", "the participle of a perfect tense"],
                lambda p: _v(_tags(p, {"vbn", "ben"}) & _tags(p, HAVE, p.prev_tag)), "prose"),
        Concept("syntax:participle_after_be", "syntax", ["past participles after a form of be", "passive participles, as in 'was taken'"],
                lambda p: _v(_tags(p, {"vbn"}) & _tags(p, BE, p.prev_tag)), "prose"),
        Concept("syntax:noun_after_adjective", "syntax", ["nouns right after an adjective", "the noun in 'old house', 'long road'"],
                lambda p: _v(_tags(p, noun) & _tags(p, {"jj"}, p.prev_tag)), "prose"),
        Concept("syntax:adjective_after_qualifier", "syntax", ["adjectives right after very, too or so", "the adjective in 'very old'"],
                lambda p: _v(_tags(p, {"jj"}) & _tags(p, {"ql"}, p.prev_tag)), "prose"),
        Concept("syntax:article_after_verb", "syntax", ["articles right after a verb", "the a or the that opens a verb's object"],
                lambda p: _v(_tags(p, {"at"}) & _tags(p, {"vb", "vbd", "vbz", "vbg"}, p.prev_tag)), "prose"),
        Concept("syntax:pronoun_after_verb", "syntax", ["object pronouns right after a verb", "him, her, them right after the verb"],
                lambda p: _v(_tags(p, {"ppo"}) & _tags(p, {"vb", "vbd", "vbz", "vbg", "vbn"}, p.prev_tag)), "prose"),
    ]
    # words in context: the word after a frequent word (fires on the neighbour, not on the word)
    for w in NEXT_TO:
        out.append(Concept(f"syntax:after_{w}", "syntax",
                           [f'the word right after "{w}"', f'words that follow "{w}"', f'the token following each "{w}", not "{w}" itself'],
                           (lambda w: lambda p: _v(_after(p, {w}) & _lex(p, str.isalpha) & ~p.code))(w), "prose"))
    return out


# ----------------------------------------------------------------------------------------- position

PUNCT = {  # one unit per mark for the mark itself and one for the word after it
    "period": ({"."}, ("full stop", "full stops (periods)")),
    "question": ({"?"}, ("question mark", "question marks")),
    "exclamation": ({"!"}, ("exclamation mark", "exclamation marks")),
    "semicolon": ({";"}, ("semicolon", "semicolons")),
    "colon": ({":"}, ("colon", "colons")),
    "dash": ({"--"}, ("dash", "dashes (--)")),
    "open_paren": ({"("}, ("opening parenthesis", "opening parentheses")),
    "close_paren": ({")"}, ("closing parenthesis", "closing parentheses")),
    "quote": ({'"'}, ("quotation mark", "double quotation marks")),
    "comma": ({","}, ("comma", "commas")),
    "apostrophe": ({"'"}, ("apostrophe", "apostrophes")),
    "ampersand": ({"&"}, ("ampersand", "ampersands")),
}
SAME_AS = {"position:mark_comma": "position:comma", "position:mark_quote": "position:quote_marks"}  # made above


def _position() -> list[Concept]:
    out = [
        Concept("position:sentence_start", "position",
                ["the first word of each sentence", "sentence-initial words", "the word that opens a sentence"],
                lambda p: _v((p.pos == 0) & ~p.code & _lex(p, str.isalpha)), "prose"),
        Concept("position:second_word", "position", ["the second word of each sentence", "the word right after the sentence opener"],
                lambda p: _v((p.pos == 1) & ~p.code & _lex(p, str.isalpha)), "prose"),
        Concept("position:full_stop", "position", ["sentence-ending punctuation", "full stops, question marks and exclamation marks", "the marks . ? and !"],
                lambda p: _v(_is(p, {".", "?", "!"}) & ~p.code), "prose"),
        Concept("position:comma", "position", mark_descriptions(PUNCT["comma"][1], PUNCT["comma"][0]), lambda p: _v(_is(p, {","}) & ~p.code), "prose"),
        Concept("position:after_comma", "position", after_descriptions(PUNCT["comma"][1], PUNCT["comma"][0], "word"),
                lambda p: _v(_after(p, {","}) & ~p.code), "prose"),
        Concept("position:in_quotes", "position", ["words inside quotation marks", "quoted speech", "text between double quotes"],
                lambda p: _v(p.quote & ~p.code), "prose"),
        Concept("position:quote_marks", "position", mark_descriptions(("double quotation mark", "quotation marks"), {'"'}),
                lambda p: _v(_is(p, {'"'}) & ~p.code), "prose"),
        Concept("position:in_parens", "position", ["words inside parentheses", "parenthetical text"],
                lambda p: _v(p.paren & ~p.code), "prose"),
        Concept("position:late_in_sentence", "position",
                ["words late in long sentences, growing stronger the further into the sentence", "position in the sentence: rises toward the end"],
                lambda p: np.where(p.code, 0.0, np.clip((p.pos - 4) / 2.5, 0, 10)), "prose"),
        Concept("position:early_in_sentence", "position",
                ["the first few words of a sentence, fading after the opening", "the start of sentences, strongest on the first word"],
                lambda p: np.where(p.code, 0.0, np.clip(10 - 3 * p.pos, 0, 10)), "prose"),
        Concept("position:line_start_code", "position", ["the first token of each line of code", "line-initial tokens in source code"],
                lambda p: _v((p.pos == 0) & p.code), "code"),
        Concept("position:colon_semicolon", "position", ["colons and semicolons", "the characters : and ;"],
                lambda p: _v(_is(p, {":", ";"}) & ~p.code), "prose"),
        Concept("position:third_word", "position", ["the third word of each sentence", "the word in third place in a sentence"],
                lambda p: _v((p.pos == 2) & ~p.code & _lex(p, str.isalpha)), "prose"),
        Concept("position:first_in_quote", "position", ["the first word inside quotation marks", "the word that opens a quotation"],
                lambda p: _v(p.quote & _after(p, {'"'}) & ~p.code & _lex(p, str.isalpha)), "prose"),
        Concept("position:second_token_code", "position", ["the second token of each line of code", "the token right after a line's first token in code"],
                lambda p: _v((p.pos == 1) & p.code), "code"),
        Concept("position:late_words", "position", ["words from the tenth word of a sentence on", "every word after the first nine of a sentence"],
                lambda p: _v((p.pos >= 9) & ~p.code), "prose"),
        Concept("position:code_colon", "position", ["colons in code", "the : character in Python source"],
                lambda p: _v(_is(p, {":"}) & p.code), "code"),
        Concept("position:code_comma", "position", ["commas in code", "the comma separating arguments or items in source code"],
                lambda p: _v(_is(p, {","}) & p.code), "code"),
        Concept("position:code_close", "position", ["closing brackets in code", "), ] and } in source code"],
                lambda p: _v(_is(p, {")", "]", "}"}) & p.code), "code"),
        # several marks at once, or one mark in one context: frequent marks (commas above all) fire here too
        Concept("position:punctuation", "position", ["punctuation marks", "any punctuation: , . ; : ? and !",
                                                     "commas, full stops and other punctuation"],
                lambda p: _v(_is(p, {",", ".", ";", ":", "?", "!", "--"}) & ~p.code), "prose"),
        Concept("position:comma_period", "position", ["commas and full stops", "the marks , and .", "every comma and every period"],
                lambda p: _v(_is(p, {",", "."}) & ~p.code), "prose"),
        Concept("position:comma_in_quotes", "position", ["commas inside quotation marks", "commas in quoted speech",
                                                         "the , token within dialogue"],
                lambda p: _v(_is(p, {","}) & p.quote & ~p.code), "prose"),
        Concept("position:comma_after_name", "position", ["commas right after a proper name", "the comma that follows a name, as in 'John,'"],
                lambda p: _v(_is(p, {","}) & _tags(p, {"np", "np$", "nps"}, p.prev_tag) & ~p.code), "prose"),
        Concept("position:comma_early", "position", ["commas among the first ten words of a sentence", "early commas in a sentence"],
                lambda p: _v(_is(p, {","}) & (p.pos < 10) & ~p.code), "prose"),
        Concept("position:comma_in_parens", "position", ["commas inside parentheses", "the , token within parenthetical text"],
                lambda p: _v(_is(p, {","}) & p.paren & ~p.code), "prose"),
        Concept("position:parens", "position", ["parentheses, opening and closing", "the ( and ) tokens", "round brackets"],
                lambda p: _v(_is(p, {"(", ")"}) & ~p.code), "prose"),
        Concept("position:quote_or_paren", "position", ["quotation marks and parentheses", 'the tokens " ( and )'],
                lambda p: _v(_is(p, {'"', "(", ")"}) & ~p.code), "prose"),
    ]
    out += _counting()
    have = {c.name for c in out}
    alnum = lambda w: any(c.isalnum() for c in w)  # noqa: E731
    for key, (marks, names) in PUNCT.items():
        made = {
            "mark": (mark_descriptions(names, marks), lambda m: lambda p: _v(_is(p, m) & ~p.code)),
            "after": (after_descriptions(names, marks, "word"),
                      lambda m: lambda p: _v(_after(p, m) & ~p.code & _lex(p, alnum))),
        }
        for kind, (descs, values) in made.items():
            name = f"position:{kind}_{key}"
            if name not in have and SAME_AS.get(name) not in have:
                out.append(Concept(name, "position", descs, values(marks), "prose"))
    return out


def _quoted(sym: str) -> str:
    return f'"{sym}"' if "'" in sym else f"'{sym}'"


def mark_descriptions(names: tuple[str, str], marks: set[str], where: str = "") -> list[str]:
    """Ways to say "fires on this mark": by its name, by the symbol itself, and by both."""
    one, many = names
    sym = " ".join(sorted(marks))
    shown = " and ".join(_quoted(m) for m in sorted(marks))
    return [f"{many}{where}", f"the {one} character{where}", f"every {one}{where}", f"the {sym} token{where}",
            f"{shown} tokens{where}", f"the {one} ({sym}){where}"]


def after_descriptions(names: tuple[str, str], marks: set[str], item: str, where: str = "") -> list[str]:
    """Ways to say "fires on whatever follows this mark", never on the mark itself."""
    one, _ = names
    sym = " ".join(sorted(marks))
    a = "an" if one[0] in "aeiou" else "a"
    return [f"the {item} right after {a} {one}{where}", f"{item}s that follow {a} {one}{where}",
            f"the first {item} after each {one}, not the {one} itself{where}", f"the {item} after {sym}{where}",
            f"the {item} following {_quoted(sym)}{where}"]


ORDINALS = {3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh", 8: "eighth", 12: "twelfth",
            15: "fifteenth", 20: "twentieth"}
CARDINALS = {3: "three", 4: "four", 5: "five", 6: "six", 8: "eight", 11: "eleven", 14: "fourteen", 19: "nineteen"}


def _counting() -> list[Concept]:
    """Place in the sentence or code line by count: the n-th word, the first n words, words from the n-th on."""
    out = []
    for n in (4, 5, 6):
        nth = ORDINALS[n]
        out.append(Concept(f"position:word_{n}", "position", [f"the {nth} word of each sentence", f"the word in {nth} place in a sentence",
                                                              f"word number {n} of every sentence"],
                           (lambda n: lambda p: _v((p.pos == n - 1) & ~p.code & _lex(p, str.isalpha)))(n), "prose"))
    for n in (3, 5, 8):
        many = CARDINALS[n]
        out.append(Concept(f"position:first_{n}_words", "position", [f"the first {many} words of each sentence",
                                                                     f"words among the first {many} of a sentence",
                                                                     f"the opening {many} words of a sentence"],
                           (lambda n: lambda p: _v((p.pos < n) & ~p.code))(n), "prose"))
    for n in (5, 7, 12, 15, 20):
        nth = ORDINALS[n]
        out.append(Concept(f"position:from_word_{n}", "position", [f"words from the {nth} word of a sentence on",
                                                                   f"every word after the first {CARDINALS[n - 1]} of a sentence",
                                                                   f"words deep into a sentence, from its {nth} word onward"],
                           (lambda n: lambda p: _v((p.pos >= n - 1) & ~p.code))(n), "prose"))
    out += [
        Concept("position:third_token_code", "position", ["the third token of each line of code", "the token in third place on a code line"],
                lambda p: _v((p.pos == 2) & p.code), "code"),
        Concept("position:late_in_line_code", "position", ["tokens from the sixth on in a line of code", "every token after the first five of a code line"],
                lambda p: _v((p.pos >= 5) & p.code), "code"),
        Concept("position:first_tokens_code", "position", ["the first three tokens of each line of code", "the opening tokens of a code line"],
                lambda p: _v((p.pos < 3) & p.code), "code"),
    ]
    return out


# ----------------------------------------------------------------------------------------- code

KEYWORDS = {"def": "function definitions (the keyword def)", "return": "return statements", "import": "import statements",
            "from": "the keyword from in imports", "class": "class definitions", "if": "if statements",
            "else": "else and elif branches", "for": "for loops", "while": "while loops", "try": "try blocks",
            "except": "exception handlers (except)", "with": "with statements", "yield": "the yield keyword",
            "lambda": "lambda expressions", "none": "the constant None", "true": "the booleans True and False",
            "self": "the name self", "not": "the keyword not", "raise": "raise statements", "in": "the keyword in",
            "pass": "the pass statement", "assert": "assert statements", "is": "the keyword is",
            "and": "the boolean operators and / or"}
KW_ALIASES = {"else": {"else", "elif"}, "true": {"True", "False"}, "none": {"None"}, "and": {"and", "or"}}

CODE_MARKS = {  # symbols of Python source: one unit for the symbol, and for those in AFTER_CODE_MARKS the token after it
    "equals": ({"="}, ("equals sign", "equals signs")),
    "double_equals": ({"=="}, ("double equals sign", "equality operators")),
    "not_equal": ({"!="}, ("not-equal operator", "not-equal operators")),
    "plus": ({"+"}, ("plus sign", "plus signs")),
    "minus": ({"-"}, ("minus sign", "minus signs")),
    "star": ({"*"}, ("asterisk", "asterisks")),
    "double_star": ({"**"}, ("double asterisk", "double asterisks")),
    "percent": ({"%"}, ("percent sign", "percent signs")),
    "slash": ({"/", "//"}, ("slash", "slashes")),
    "less": ({"<", "<="}, ("less-than sign", "less-than signs")),
    "greater": ({">", ">="}, ("greater-than sign", "greater-than signs")),
    "open_square": ({"["}, ("opening square bracket", "opening square brackets")),
    "close_square": ({"]"}, ("closing square bracket", "closing square brackets")),
    "open_brace": ({"{"}, ("opening curly brace", "opening curly braces")),
    "close_brace": ({"}"}, ("closing curly brace", "closing curly braces")),
    "open_paren": ({"("}, ("opening parenthesis", "opening parentheses")),
    "close_paren": ({")"}, ("closing parenthesis", "closing parentheses")),
    "dot": ({"."}, ("dot", "dots")),
    "at": ({"@"}, ("at sign", "at signs")),
    "pipe": ({"|"}, ("vertical bar", "vertical bars")),
    "plus_equals": ({"+="}, ("plus-equals operator", "+= augmented assignments")),
}
AFTER_CODE_MARKS = ("comma", "open_square", "close_paren", "double_equals", "plus", "percent", "star", "open_brace")


def _code_marks() -> list[Concept]:
    where = " in code"
    marks = dict(CODE_MARKS, comma=PUNCT["comma"])
    on = lambda m: lambda p: _v(_is(p, m) & p.code)  # noqa: E731
    after = lambda m: lambda p: _v(_after(p, m) & p.code)  # noqa: E731
    out = []
    for key, (chars, names) in marks.items():
        if key in CODE_MARKS:
            out.append(Concept(f"code:mark_{key}", "code", mark_descriptions(names, chars, where), on(chars), "code"))
        if key in AFTER_CODE_MARKS:
            out.append(Concept(f"code:after_{key}", "code", after_descriptions(names, chars, "token", where), after(chars), "code"))
    return out


def _code() -> list[Concept]:
    out = _code_marks()
    for kw, desc in KEYWORDS.items():
        words = KW_ALIASES.get(kw, {kw})
        out.append(Concept(f"code:{kw}", "code", [desc, f"the Python keyword {'/'.join(sorted(words))}", f"{desc} in Python code"],
                           (lambda ws: lambda p: _v(_is(p, ws) & p.code))(words), "code"))
    kind = lambda p, k: _tags(p, {f"code:{k}"})  # noqa: E731
    out += [
        Concept("code:strings", "code", ["string literals in code", "text inside quotes in Python source", "quoted strings"],
                lambda p: _v(kind(p, "string")), "code"),
        Concept("code:comments", "code", ["comments in code", "text after a # sign", "Python comments"],
                lambda p: _v(kind(p, "comment")), "code"),
        Concept("code:numbers", "code", ["numeric literals in code", "numbers in source code"], lambda p: _v(kind(p, "number")), "code"),
        Concept("code:func_name", "code", ["the name of a function being defined", "function names right after def"],
                lambda p: _v(kind(p, "name") & _after(p, {"def"})), "code"),
        Concept("code:class_name", "code", ["the name of a class being defined", "class names after the class keyword"],
                lambda p: _v(kind(p, "name") & _after(p, {"class"})), "code"),
        Concept("code:module_name", "code", ["module names in import statements", "the module after import or from"],
                lambda p: _v(kind(p, "name") & _after(p, {"import", "from"})), "code"),
        Concept("code:attribute", "code", ["attribute names after a dot", "the member in obj.attr"],
                lambda p: _v(kind(p, "name") & _after(p, {"."})), "code"),
        Concept("code:dunder", "code", ["dunder names like __init__", "double-underscore special names"],
                lambda p: _v(_raw(p, lambda w: w.startswith("__") and w.endswith("__") and len(w) > 4) & p.code), "code"),
        Concept("code:constants", "code", ["ALL_CAPS constant names in code", "upper-case identifiers"],
                lambda p: _v(kind(p, "name") & _raw(p, lambda w: len(w) > 1 and w.isupper())), "code"),
        Concept("code:assign", "code", ["the assignment operator =", "assignments in code, on the equals sign"],
                lambda p: _v(_is(p, {"=", "+=", "-="}) & p.code), "code"),
        Concept("code:compare", "code", ["comparison operators", "==, !=, <, > and friends in code"],
                lambda p: _v(_is(p, {"==", "!=", "<", ">", "<=", ">="}) & p.code), "code"),
        Concept("code:open_paren", "code", ["opening brackets in code", "(, [ and { in source code"],
                lambda p: _v(_is(p, {"(", "[", "{"}) & p.code), "code"),
        Concept("code:inside_call", "code", ["tokens inside brackets or call arguments", "everything within parentheses in code"],
                lambda p: _v(p.paren & p.code & ~kind(p, "string")), "code"),
        Concept("code:decorator", "code", ["decorators", "the @ sign and decorator name"],
                lambda p: _v((_is(p, {"@"}) | _after(p, {"@"})) & p.code), "code"),
        Concept("code:loop_var", "code", ["loop variables, the name right after for", "the target name of a for loop"],
                lambda p: _v(kind(p, "name") & _after(p, {"for"})), "code"),
        Concept("code:first_argument", "code", ["the first token inside an opening bracket in code", "the first argument of a call"],
                lambda p: _v(_after(p, {"("}) & p.code), "code"),
        Concept("code:assigned_value", "code", ["the first token after = in an assignment", "the value being assigned, right after ="],
                lambda p: _v(_after(p, {"="}) & p.code), "code"),
        Concept("code:returned", "code", ["the first token of a returned expression", "what comes right after return"],
                lambda p: _v(_after(p, {"return"}) & p.code), "code"),
        Concept("code:exception_name", "code", ["exception classes after except or raise", "the error type in except and raise"],
                lambda p: _v(kind(p, "name") & _after(p, {"except", "raise"})), "code"),
        Concept("code:alias", "code", ["alias names after as", "the name bound by as in imports and with statements"],
                lambda p: _v(kind(p, "name") & _after(p, {"as"})), "code"),
    ]
    return out


def all_concepts(pool: Pool) -> list[Concept]:
    """Every single-concept unit, in a fixed order."""
    return _semantic() + _words(pool) + _spelling() + _syntax() + _position() + _code()


# ----------------------------------------------------------------------------------------- wordnet

WORDNET_FAMILY = "wordnet"


def _article(w: str) -> str:
    return "an" if w[:1].lower() in "aeiou" else "a"


def _quote_list(words: list[str], joiner: str = "and") -> str:
    q = [f'"{w}"' for w in words]
    return "" if not q else q[0] if len(q) == 1 else ", ".join(q[:-1]) + f" {joiner} " + q[-1]


def _examples(forms: list[str], rng: random.Random, k: int) -> list[str]:
    """``k`` of the frequent main-sense members, one per word (not "chicken" and "chickens")."""
    seen, pool = set(), []
    for w in forms:
        stem = w[:-1] if w.endswith("s") and w[:-1] in forms else w
        if stem not in seen:
            seen.add(stem)
            pool.append(w)
    pool = pool[:12]
    return rng.sample(pool, min(k, len(pool)))


def wordnet_descriptions(cat, rng: random.Random) -> list[str]:
    """Descriptions of a :class:`~simulator_training.wordnet.Category`: most name the category by its head
    word, gloss and domain without listing members; two quote 1-3 member examples; two are long, with an
    exception clause (the sibling category's decoy words, the other part of speech, weaker rare senses)."""
    h = cat.heads[0]
    d = cat.definition
    hs = plural(h)
    dom = cat.domain
    shown = cat.main_forms() or cat.top_forms(12)
    ex = _quote_list(_examples(shown, rng, rng.randint(1, 3)), rng.choice(("and", "or")))
    ex2 = _quote_list(_examples(shown, rng, rng.randint(2, 3)), "or")
    decoys = cat.decoy_forms(6)
    dex = _quote_list(rng.sample(decoys, min(2, len(decoys))), "or") if decoys else ""
    dh = cat.decoy_heads[0] if cat.decoy_heads else ""
    if cat.pos == "n":
        plain = [f"words for kinds of {h}", f"{hs} of any kind", f"nouns naming {_article(h)} {h} or a particular kind of {h}",
                 f"words for kinds of {h}, i.e. {d}", f"nouns denoting {d}", f"mentions of {hs}: {d}"]
        if dom:
            plain.append(f"words about {dom}, specifically {hs}")
        if len(cat.heads) > 1:
            plain.append(f"{hs} (also called {plural(cat.heads[1])})")
        examples = [f"words for kinds of {h}, such as {ex}", f"{hs}, e.g. {ex}"]
        other = f"other kinds of {cat.decoy_parent}" if cat.decoy_parent else f"{plural(dh)}"
        long = [f"nouns that refer to {_article(h)} {h} or to a specific kind of {h} ({d}), for example {ex2}"
                + (f"; not {other} such as {dex}" if dex else "")
                + f", and weaker when {h} is only a secondary meaning of the word",
                f"any noun whose meaning is a kind of {h}, that is, {d}; strongest when this is the word's usual "
                "sense" + (f", and quiet on words for {plural(dh)} like {dex}" if dex else "")
                + " and on the same words used as verbs"]
    elif cat.pos == "v":
        plain = [f"verbs for ways to {h}", f"verbs meaning to {h}, in any tense", f"verbs that mean to {d}",
                 f"any verb form (present, past or participle) whose meaning is to {d}"]
        if dom:
            plain.append(f"verbs of {dom}: to {h}, i.e. to {d}")
            plain.append(f"verbs of {dom}, specifically ways to {h}")
        examples = [f"verbs for ways to {h}, such as {ex}", f"verbs meaning to {d}, e.g. {ex}"]
        long = [f"verbs whose meaning is to {h} or a particular way to {h} ({d}), in every tense, for example {ex2}"
                + (f"; quiet on verbs that mean to {dh} such as {dex}" if dex else "")
                + ", and on these words when used as nouns",
                f"verb forms meaning to {d}; strongest when this is the verb's most common sense, weaker for rarer "
                "senses" + (f", and not verbs that mean to {dh} (such as {dex})" if dex else "")]
    else:
        plain = [f"adjectives describing {h}", f"adjectives of {h}, i.e. of {d}", f"words that describe the {h} of something",
                 f"descriptive words about {h} ({d})", f"adjectives that express a degree of {h}"]
        examples = [f"adjectives describing {h}, such as {ex}", f"adjectives of {h}, e.g. {ex}"]
        long = [f"adjectives that say something about {h} - {d} - for instance {ex2}"
                + (f"; not adjectives about {dh} like {dex}" if dex else ""),
                f"adjectives expressing {h}, comparatives and superlatives included; weaker when that is not the "
                "adjective's main sense" + (f", and quiet on adjectives of {dh} such as {dex}" if dex else "")]
    return list(dict.fromkeys(plain + examples + long))


def wordnet_concepts(categories, seed: int = 0) -> list[Concept]:
    """One ``wordnet`` unit per :class:`~simulator_training.wordnet.Category`: its graded member values over
    the prose (never code), its descriptions (:func:`wordnet_descriptions`) and its decoy words."""
    out = []
    for cat in categories:
        descs = wordnet_descriptions(cat, random.Random(f"{seed}:{cat.key}"))
        out.append(Concept(f"wordnet:{cat.name}", WORDNET_FAMILY, descs, cat.word_values, "prose",
                           decoy=cat.decoy_mask if cat.decoys else None))
    return out


# ----------------------------------------------------------------------------------------- long word lists

LIST_FAMILY = "lists"
LIST_SIZES = (4, 6, 8, 12, 16, 24, 32)


def _list_text(words: list[str], style: int) -> str:
    quoted = [f'"{w}"' for w in words]
    if style == 0:  # exactly how ns-dspy's statistical explainer writes a list (ns_dspy.agents.evidence.word_list)
        return f"the words {', '.join(quoted[:-1])} and {quoted[-1]}"
    if style == 1:
        return f"the tokens {', '.join(quoted)}"
    if style == 2 and all(w.replace("_", "").isalnum() for w in words):  # marks need their quotes
        return f"any of these words: {', '.join(words)}"
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def list_concepts(pool: Pool, n_units: int = 160, seed: int = 0, min_count: int = 20,
                  max_share: float = 0.5) -> list[Concept]:
    """The ``lists`` family (``build-data --lists N``, off by default): ``n_units`` units that fire (10) on every
    occurrence, in any capitalisation, of an arbitrary set of 4 to 32 words (:data:`LIST_SIZES`), described by
    listing them all, most often in the very form ns-dspy's statistical explainer writes (``the words "a", "b"
    and "c"``). The words mix prose and code, function and content words and marks, in a random order, as the
    tokens a real neuron's word list names do; each occurs at least ``min_count`` times in the pool, and no one
    word makes up more than ``max_share`` of the list's occurrences (redrawn up to 50 times; else a unit would be
    that word's, and a held-out one would crowd the word's own unit out of training). A simulator
    trained on short lists reads the first few words of a long list and drops the rest (recall of the listed
    tokens on real neurons: 97% for 2 words, 61% for 8, 17% for 32); these units teach it to read every one."""
    rng = random.Random(seed * 7919 + 11)
    counts = np.bincount(pool.lower_id, minlength=len(pool.lowers))
    candidates = [w for i, w in enumerate(pool.lowers) if counts[i] >= min_count and w.strip() and '"' not in w]
    if not candidates:
        return []
    out = []
    for k in range(n_units):
        size = min(LIST_SIZES[k % len(LIST_SIZES)], len(candidates))
        for _ in range(50):  # no one word may make up most of the list's occurrences: then it is that word's unit
            words = rng.sample(candidates, size)
            found = np.array([counts[pool.lower_index[w]] for w in words], dtype=np.float64)
            if found.max() <= max_share * found.sum():
                break
        ids = np.array(sorted(pool.lower_index[w] for w in words))
        shown = [w.capitalize() if w.isalpha() and rng.random() < 0.15 else w for w in words]
        descs = [_list_text(shown, 0), _list_text(shown, 0), _list_text(shown, rng.randrange(1, 4))]
        out.append(Concept(f"lists:{k}", LIST_FAMILY, descs,
                           (lambda ids: lambda p: _v(np.isin(p.lower_id, ids)))(ids)))
    return out


# ----------------------------------------------------------------------------------------- narrow lists

NARROW_FAMILY = "narrow"


def _narrow_text(words: list[str], style: int) -> str:
    """A list of one or more words in one of four styles; style 0 is the statistical explainer's own form."""
    if len(words) > 1:
        return _list_text(words, style)
    w = words[0]
    return (f'the word "{w}"', f'occurrences of "{w}"', f'the token "{w}" (any capitalisation)', f'"{w}"')[style]


def _listed(ids: np.ndarray, prose: bool) -> Callable[[Pool], np.ndarray]:
    """Values of a word list: 10 on every occurrence of the words ``ids`` (lower-cased), outside code if ``prose``."""
    return lambda p: _v(np.isin(p.lower_id, ids) & ~(p.code & prose))


def _commonest_form(pool: Pool, lower: int) -> str:
    """The commonest spelling in the pool of the word whose lower-cased form is ``pool.lowers[lower]`` ("Rome")."""
    raws = np.bincount(pool.raw_id[pool.lower_id == lower])
    return pool.raws[int(np.argmax(raws))]


def narrow_concepts(sources: list[Concept], pool: Pool, n_units: int, seed: int = 0, min_count: int = 20,
                    frequent: int = 12, min_left: int = 3) -> list[Concept]:
    """The ``narrow`` family (``build-data --narrow N``, off by default): up to ``n_units`` units, each firing
    (10) on one to three words of a category unit in ``sources`` (a ``wordnet`` or ``semantic`` one: the words
    drawn among its ``frequent`` commonest members seen ``min_count`` times or more), in any capitalisation, and
    on nothing else; described by listing those words in their commonest spelling, as the statistical explainer
    writes a word list (``the word "birds"``). Its decoy is the category's other members, so
    :func:`~simulator_training.data.build_synthetic` adds contrast windows where they occur and the unit is
    quiet.

    A simulator trained without them reads a short word list as its category: measured on held-out units, given
    ``the word "birds"`` for a unit of animal names it predicted the other animals too, scoring 0.77 where
    reading "birds" exactly scores 0.39, above the true description's 0.67. These units teach it that a list
    names its words and not their neighbours, so that a conceptual explanation can win where the unit is
    conceptual. A source needs ``min_left`` other frequent members besides the chosen words; sources are taken
    in a seeded order, one unit each."""
    rng = random.Random(f"{seed}:narrow")
    order = sorted(sources, key=lambda c: c.name)
    rng.shuffle(order)
    out = []
    for c in order:
        if len(out) >= n_units:
            break
        member = c.word_values(pool) > 0
        if c.source == "prose":
            member &= ~pool.code
        counts = np.bincount(pool.lower_id[member], minlength=len(pool.lowers))
        common = [int(i) for i in np.argsort(-counts, kind="stable")[:frequent] if counts[i] >= min_count
                  and pool.lowers[int(i)].strip() and '"' not in pool.lowers[int(i)]]
        k = rng.choice((1, 1, 2, 3))
        if len(common) < k + min_left:
            continue
        ids = np.array(sorted(rng.sample(common, k)))
        words = [_commonest_form(pool, int(i)) for i in ids]
        rng.shuffle(words)
        descs = [_narrow_text(words, 0), _narrow_text(words, 0), _narrow_text(words, rng.randrange(1, 4))]
        out.append(Concept(f"narrow:{c.name}", NARROW_FAMILY, descs, _listed(ids, c.source == "prose"), c.source,
                           decoy=(lambda ids, c: lambda p: (c.word_values(p) > 0) & ~np.isin(p.lower_id, ids))(ids, c)))
    return out


# ----------------------------------------------------------------------------------------- a word in context

CONTEXT_FAMILY = "context"


def context_concepts(pool: Pool, n_units: int, seed: int = 0, min_count: int = 15, low: float = 0.1,
                     high: float = 0.6, per_before: int = 3) -> list[Concept]:
    """The ``context`` family (``build-data --context N``, off by default): up to ``n_units`` units, each firing
    (10) on one word only right after one other word and on nothing else, described first as ns-dspy's statistical
    explainer writes it (:func:`ns_dspy.agents.evidence.context_text`, ``the word "to" only right after "up"``).
    Pairs are drawn, seeded, among every (word before, word) pair of the text, prose and code, function words and
    symbols included (the condition family's context units take content words only): the pair is seen
    ``min_count`` times or more and holds ``low``..``high`` of the word's occurrences, so the word also occurs,
    quiet, elsewhere; that is its decoy, so :func:`~simulator_training.data.build_synthetic` adds contrast windows
    that show it. One unit per word, at most ``per_before`` per word before.

    A simulator trained without them read ``the word "to" only right after "up"`` on real neurons as every "to"
    (mean prediction 9.75 on "up to" against 9.02 on the other "to"s; ns-dspy's experiments/README.md, "Context,
    spelling classes and named concepts")."""
    from ns_dspy.agents.evidence import context_text

    n_lower = len(pool.lowers)
    counts = np.bincount(pool.lower_id, minlength=n_lower)
    has_prev = pool.prev >= 0
    keys, n = np.unique(pool.lower_id[has_prev].astype(np.int64) * n_lower + pool.prev[has_prev],
                        return_counts=True)
    word, before = keys // n_lower, keys % n_lower
    ok = (n >= min_count) & (n >= low * counts[word]) & (n <= high * counts[word])
    usable = lambda w: bool(w.strip()) and '"' not in w and w == w.strip()  # noqa: E731
    candidates = [(int(w), int(b)) for w, b in zip(word[ok], before[ok])
                  if usable(pool.lowers[int(w)]) and usable(pool.lowers[int(b)])]
    rng = random.Random(f"{seed}:context")
    rng.shuffle(candidates)
    out: list[Concept] = []
    used: set[int] = set()
    per: Counter = Counter()
    for w, b in candidates:
        if len(out) >= n_units:
            break
        if w in used or per[b] >= per_before:
            continue
        used.add(w)
        per[b] += 1
        W, B = _commonest_form(pool, w), _commonest_form(pool, b)
        exact = context_text(W, B)
        out.append(Concept(f"context:{pool.lowers[w]}_after_{pool.lowers[b]}", CONTEXT_FAMILY, [
            exact, exact, exact, f'"{W}" when the token before it is "{B}"',
            f'"{W}" in "{B} {W}", not "{W}" elsewhere',
            f'the token "{W}", but only where it comes right after "{B}"; every other "{W}" stays quiet'],
            (lambda w, b: lambda p: _v((p.lower_id == w) & (p.prev == b)))(w, b), "any",
            decoy=(lambda w, b: lambda p: (p.lower_id == w) & (p.prev != b))(w, b)))
    return out


# ----------------------------------------------------------------------------------------- neighbour words

NEIGHBOUR_FAMILY = "neighbour"


def neighbour_concepts(sources: list[Concept], pool: Pool, n_units: int, seed: int = 0, min_near: int = 5,
                       max_words: int = 3, weak_share: float = 0.3) -> list[Concept]:
    """The ``neighbour`` family (``build-data --neighbour N``, off by default): up to ``n_units`` two-part units,
    one per source unit taken in a seeded order: the source's concept, and one to ``max_words`` words that sit
    right before or after its active words (at least ``min_near`` times) but are never active themselves,
    ranked by near^2 / occurrences (often beside the concept, rarely elsewhere: "the" for "world after the").
    The unit fires on both (the words at 10, or 6 for a ``weak_share`` of units), described as the concept
    "; also" the word list (:func:`pair`'s phrasings), from the source's descriptions that do not quote those
    words.

    A simulator trained without them reads such an appended list as little as nothing: on held-out units the
    truth and "the truth; also the words X" (X quiet words beside the trigger) scored within 0.01 of each other
    where the list's false positives should cost the latter. These units show a listed word beside the concept
    to be predicted as listed, so that an explanation naming false neighbours loses what it should."""
    rng = random.Random(f"{seed}:neighbour")
    order = sorted(sources, key=lambda c: c.name)
    rng.shuffle(order)
    counts = np.bincount(pool.lower_id, minlength=len(pool.lowers)).astype(np.float64)
    nameable = np.array([bool(w.strip()) and '"' not in w for w in pool.lowers])
    out = []
    for c in order:
        if len(out) >= n_units:
            break
        active = c.word_values(pool) > 0
        if not active.any():
            continue
        ever = np.zeros(len(pool.lowers), dtype=bool)
        ever[pool.lower_id[active]] = True
        near = np.concatenate([pool.prev[active], pool.next[active]])
        near = np.bincount(near[near >= 0], minlength=len(pool.lowers)).astype(np.float64)
        score = np.where((near >= min_near) & nameable & ~ever, near ** 2 / np.maximum(counts, 1.0), 0.0)
        ranked = [int(i) for i in np.argsort(-score, kind="stable")[:max_words] if score[i] > 0]
        ids = np.array(sorted(ranked[:rng.randint(1, max_words)]))
        if not len(ids):
            continue
        words = [_commonest_form(pool, int(i)) for i in ids]
        quoted = {f'"{w.lower()}"' for w in words}
        descs = [d for d in c.descriptions if not any(q in d.lower() for q in quoted)]
        if not descs:
            continue
        listed = Concept("listed", LIST_FAMILY, [_narrow_text(words, 0)], _listed(ids, c.source == "prose"), c.source)
        unit = pair(Concept(c.name, c.family, descs, c.values, c.source), listed, rng.random() < weak_share)
        out.append(Concept(f"neighbour:{c.name}", NEIGHBOUR_FAMILY, unit.descriptions, unit.values, unit.source,
                           weak=unit.weak))
    return out


# ----------------------------------------------------------------------------------------- conditions

CONDITION_FAMILY = "condition"
NEGATORS = {"not", "never", "no", "cannot", "nor"}  # and every contraction ending in n't
CLAUSE_MARKS = {",", ".", ";", ":", "?", "!", "--", "(", ")", '"'}  # a negation's scope ends at these
PRONOUN_TAGS = {"pps", "ppss", "ppo", "ppl", "ppls", "pp$", "pp$$", "ppss+md", "pps+bez", "pps+md", "ppss+bem",
                "ppss+ber", "ppss+hv"}
VERB_TAGS = {"vb", "vbd", "vbg", "vbn", "vbz", "md", "md*", "do", "dod", "doz", "do*", "dod*", "doz*", "hv", "hvd",
             "hvz", "hvg", "hvn", "hv*", "hvd*", "hvz*"} | BE | {t + "*" for t in BE}
EXCEPT_SEMANTIC = ("animals", "colours", "kinship", "body", "numbers", "time_units", "weekdays_months", "money", "food",
                   "emotion", "weather", "buildings", "vehicles", "clothing", "military", "religion", "law",
                   "politics", "science", "music_art", "sports", "nature", "education", "health", "countries",
                   "cities", "speech_verbs", "cognition", "size", "evaluation", "occupations", "death")
EXCEPT_POS = ("prepositions", "past_verbs", "subject_pronouns", "object_pronouns", "possessives", "modals", "be_forms",
              "conjunctions", "subordinators", "determiners", "wh_words", "qualifiers", "third_person", "post_determiners")
# the word after a cue that is itself a category: (the cue, its short name, in the plural, an example phrase and the
# word it fires on there, ("tags" | "words" | "code", members)); none repeats a syntax unit (those fire on one
# category after another, such as nouns after a possessive)
AFTER_CUES = {
    "number": ("a number", "number", "numbers", "three days", "days", ("tags", {"cd"})),
    "name": ("a proper name", "name", "proper names", "John said", "said", ("tags", {"np", "nps"})),
    "possessive_noun": ("a possessive noun", "possessive", "possessive nouns like John's", "the city's mayor", "mayor",
                        ("tags", {"nn$", "np$", "nns$"})),
    "past_verb": ("a past-tense verb", "verb", "past-tense verbs", "walked home", "home", ("tags", {"vbd"})),
    "preposition": ("a preposition", "preposition", "prepositions", "in the house", "the", ("tags", {"in"})),
    "adverb": ("an adverb", "adverb", "adverbs", "then he left", "he", ("tags", {"rb"})),
    "be_form": ("a form of be", "be form", "forms of be", "was going", "going", ("tags", BE)),
    "gerund": ("an -ing verb form", "-ing form", "-ing verb forms", "going to", "to", ("tags", {"vbg"})),
    "wh_word": ("a wh-word", "wh-word", "wh-words like who, which or when", "who came", "came",
                ("tags", {"wdt", "wps", "wpo", "wrb", "wp$"})),
    "comparative": ("a comparative", "comparative", "comparatives like more or better", "better than", "than",
                    ("tags", {"jjr", "rbr"})),
    "colour": ("a colour word", "colour word", "colour words", "red car", "car",
               ("words", _forms(SEMANTIC["colours"][0]))),
    "calendar": ("a weekday or month name", "name of the day or month", "weekdays and months", "Monday morning",
                 "morning", ("words", _forms(SEMANTIC["weekdays_months"][0]))),
    "kin": ("a word for a relative", "kinship word", "kinship words", "mother said", "said",
            ("words", _forms(SEMANTIC["kinship"][0]))),
    "code_string": ("a string literal", "string", "string literals", "'utf-8')", ")", ("code", {"code:string"})),
    "code_number": ("a number", "number", "numeric literals", "0]", "]", ("code", {"code:number"})),
}


def _wordlike(pool: Pool) -> np.ndarray:
    """bool per word: it has a letter (words and contractions such as "didn't", not marks or numbers)."""
    return _lex(pool, lambda w: any(c.isalpha() for c in w))


def _earlier_in_group(pool: Pool, mask: np.ndarray) -> np.ndarray:
    """int per word: how many ``mask`` words come before it in its sentence (prose) or line (code)."""
    count = np.cumsum(mask, dtype=np.int64)
    before = count - mask
    return before - before[np.arange(len(mask)) - pool.pos]


def _scope(pool: Pool, opens: np.ndarray, closes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per word: whether an ``opens`` word came before it in its sentence or line with no ``closes`` word since
    (the word itself included), and how many words back that opener is: causal, as "the words after not up to
    the next punctuation mark"."""
    idx = np.arange(len(opens), dtype=np.int64)
    last = np.maximum.accumulate(np.where(opens, 2 * idx, -2)) if len(idx) else idx
    before = np.concatenate([[-2], last[:-1]])[:len(idx)]  # the latest opener strictly before, at 2i
    reset = np.maximum.accumulate(np.maximum(np.where(closes, 2 * idx, -3),  # a close at the word itself: 2i
                                             np.where(pool.pos == 0, 2 * idx - 1, -3))) if len(idx) else idx
    return before > reset, idx - before // 2


def _members(pool: Pool, mask: np.ndarray) -> list[tuple[str, int]]:
    """The lower-cased forms of the ``mask`` words, most frequent first (ties by spelling)."""
    counts = np.bincount(pool.lower_id[mask], minlength=len(pool.lowers))
    return sorted(((pool.lowers[i], int(counts[i])) for i in np.flatnonzero(counts)), key=lambda x: (-x[1], x[0]))


def _negation_concepts() -> list[Concept]:
    prose = lambda p: ~p.code & _wordlike(p)  # noqa: E731
    neg = lambda p: _lex(p, lambda w: w in NEGATORS or w.endswith("n't")) & ~p.code  # noqa: E731
    scope = lambda p: _scope(p, neg(p), _is(p, CLAUSE_MARKS))  # noqa: E731
    inside = lambda p: scope(p)[0] & prose(p) & ~neg(p)  # noqa: E731
    # quiet on the same sentence after the scope has closed (and on the negation word itself)
    outside = lambda p: (neg(p) | ((_earlier_in_group(p, neg(p)) > 0) & ~scope(p)[0])) & prose(p)  # noqa: E731
    verbs, modifiers = VERB_TAGS, {"jj", "jjr", "jjs", "jjt", "rb", "rbr", "rbt"}
    return [
        Concept("condition:negation_scope", CONDITION_FAMILY, [
            "words inside the scope of a negation, after not or never, until the end of the clause",
            "everything that is negated: the words after a negation word up to the next punctuation mark",
            "the negated part of a clause",
            "words following not, never, no or a n't contraction, until the next comma or full stop",
            'the words a negation applies to: after "not", "never", "no" or a contraction such as "didn\'t", every '
            'word up to the next punctuation mark, as in "it was not a good idea, but we went" where "a good idea" '
            "fires; the negation word itself and the words after the comma stay quiet"],
            lambda p: _v(inside(p)), "prose", decoy=outside),
        Concept("condition:negation_scope_fading", CONDITION_FAMILY, [
            "words in the scope of a negation, strongest right after the negation word and fading toward the end "
            "of the clause",
            "the negated words, most strongly the first one after not or never, then weaker and weaker",
            "negated material, graded by closeness to the negation",
            "the words after not, never, no or n't up to the next punctuation mark: the first at full strength, each "
            "later one weaker; nothing fires after the comma or full stop that ends the clause"],
            lambda p: np.where(inside(p), np.clip(12.0 - 2.0 * scope(p)[1], 2.0, 10.0), 0.0).astype(np.float32),
            "prose"),
        Concept("condition:negated_verbs", CONDITION_FAMILY, [
            "verbs inside the scope of a negation", "negated verbs, as in 'did not go'",
            "verbs that follow not, never or a n't contraction in the same clause",
            "verbs that are negated: a verb after not, never, no or n't before the clause ends, as in \"he didn't "
            'know", but not a verb in a clause without negation, nor one after the comma that closes the scope'],
            lambda p: _v(inside(p) & _tags(p, verbs)), "prose",
            decoy=lambda p: _tags(p, verbs) & ~inside(p) & ~p.code),
        Concept("condition:negated_modifiers", CONDITION_FAMILY, [
            "adjectives and adverbs inside the scope of a negation", "negated descriptions, as in 'not happy'",
            "descriptive words after not or never in the same clause",
            "adjectives and adverbs that a negation applies to, as \"happy\" in \"she was not happy\"; the same "
            "words outside a negated clause stay quiet"],
            lambda p: _v(inside(p) & _tags(p, modifiers)), "prose",
            decoy=lambda p: _tags(p, modifiers) & ~inside(p) & ~p.code),
    ]


def _quote_concepts() -> list[Concept]:
    """Quoted speech: the pool's quote flag, set causally by the opening and closing marks (a quotation can run
    over several sentences, so counting marks within one sentence would not do); the marks are never inside."""
    inq = lambda p: p.quote & ~p.code & _wordlike(p)  # noqa: E731
    mark = lambda p: _is(p, {'"'}) & ~p.code  # noqa: E731
    narration = lambda p: (_earlier_in_group(p, mark(p)) > 0) & ~p.quote & ~p.code & _wordlike(p)  # noqa: E731
    return [
        Concept("condition:quoted_words", CONDITION_FAMILY, [
            'words inside quotation marks, as in "he said yes", but not the quote marks themselves',
            "quoted speech, without the marks", "the words between an opening and a closing double quote",
            "dialogue: what characters say, not the quotation marks around it",
            "every word of a quotation, from the first after the opening mark to the last before the closing one; "
            "the marks and the narration around them stay quiet"],
            lambda p: _v(inq(p)), "prose", decoy=lambda p: mark(p) | narration(p)),
        Concept("condition:quoted_pronouns", CONDITION_FAMILY, [
            "pronouns inside quoted speech", "personal pronouns within dialogue, such as I and you",
            "pronouns that a speaker says, inside quotation marks",
            "personal pronouns, but only inside quotation marks: the \"I\" of '\"I know,\" he said' fires, the "
            '"he" outside the quote does not'],
            lambda p: _v(inq(p) & _tags(p, PRONOUN_TAGS)), "prose",
            decoy=lambda p: _tags(p, PRONOUN_TAGS) & ~p.quote & ~p.code),
        Concept("condition:quoted_verbs", CONDITION_FAMILY, [
            "verbs inside quotation marks", "verbs in quoted speech", "the verbs of dialogue, not of the narration",
            "verbs that someone says: a verb inside double quotes fires, as \"know\" in '\"I know,\" he said', "
            'while "said" outside the quote stays quiet'],
            lambda p: _v(inq(p) & _tags(p, VERB_TAGS)), "prose",
            decoy=lambda p: _tags(p, VERB_TAGS) & ~p.quote & ~p.code),
        Concept("condition:narration_after_quote", CONDITION_FAMILY, [
            "the narration after a quotation closes, up to the end of the sentence",
            "words after a closing quotation mark in the same sentence, such as 'he said'",
            "speech tags that follow dialogue",
            "the words that come after a quotation in its sentence, as \"he said\" in '\"Go home,\" he said.', but "
            "not the quoted words or the quotation marks"],
            lambda p: _v(narration(p)), "prose", decoy=lambda p: inq(p) | mark(p)),
    ]


def _spellings(pool: Pool, mask: np.ndarray) -> dict[str, str]:
    """The most frequent spelling of each lower-cased form among the ``mask`` words ("I", "York", "god")."""
    counts = np.bincount(pool.raw_id[mask], minlength=len(pool.raws))
    out: dict[str, str] = {}
    for r in np.argsort(-counts, kind="stable")[:int((counts > 0).sum())]:
        out.setdefault(pool.raws[r].lower(), pool.raws[r])
    return out


def _context_concepts(pool: Pool, n_after: int, n_start: int, n_quoted: int, n_graded: int, min_count: int,
                      per_context: int = 4) -> list[Concept]:
    """A word only in a context: "time" right after "the", "but" opening a sentence, "you" inside quotes; the
    words and contexts are the pool's most frequent ones whose context holds 15-60 % of the word's occurrences
    (so the word also occurs, quiet, elsewhere: its decoy)."""
    prose = ~pool.code
    word = _wordlike(pool)
    shown = _spellings(pool, prose & word)
    n_lower = len(pool.lowers)
    counts = np.bincount(pool.lower_id[prose], minlength=n_lower)
    has_prev = prose & (pool.prev >= 0)
    keys, pairs = np.unique(pool.lower_id[has_prev].astype(np.int64) * n_lower + pool.prev[has_prev],
                            return_counts=True)
    out, used = [], Counter()
    for i in np.argsort(-counts, kind="stable"):
        if sum(used.values()) >= n_after or counts[i] < min_count:
            break
        w = pool.lowers[i]
        if not (w.isalpha() and len(w) > 2) or w in FUNCTION_WORDS:
            continue
        a, b = np.searchsorted(keys, [i * n_lower, (i + 1) * n_lower])
        options = sorted(((int(n), pool.lowers[k % n_lower]) for k, n in zip(keys[a:b], pairs[a:b])),
                         key=lambda x: (-x[0], x[1]))
        for n, before in options:
            if n >= min_count and 0.15 <= n / counts[i] <= 0.6 and before.isalpha() and used[before] < per_context:
                used[before] += 1
                out.append(_after_word(w, before, shown, graded=False))
                if sum(used.values()) <= n_graded:
                    out.append(_after_word(w, before, shown, graded=True))
                break
    first = word & (_earlier_in_group(pool, word) == 0)
    openers = [w for w, n in _members(pool, first & prose)
               if w.isalpha() and n >= min_count and 0.15 <= n / counts[pool.lower_index[w]] <= 0.8]
    quoted = [w for w, n in _members(pool, pool.quote & prose & word)
              if w.isalpha() and n >= min_count and 0.25 <= n / counts[pool.lower_index[w]] <= 0.85]
    return (out + [_opening_word(w) for w in openers[:n_start]]
            + [_quoted_word(w, shown.get(w, w)) for w in quoted[:n_quoted]])


def _after_word(w: str, before: str, shown: dict[str, str], graded: bool) -> Concept:
    is_w = lambda p: _lex(p, {w}.__contains__) & ~p.code  # noqa: E731
    there = lambda p: is_w(p) & _after(p, {before})  # noqa: E731
    W, B = shown.get(w, w), shown.get(before, before)  # "I know", not "i know"
    if graded:
        return Concept(f"condition:{w}_mostly_after_{before}", CONDITION_FAMILY, [
            f'the word "{W}", strongest right after "{B}" and weaker elsewhere',
            f'"{W}", most of all in "{B} {W}"', f'every "{W}", above all one that follows "{B}"',
            f'each occurrence of the word "{W}", with the strongest activation where it directly follows "{B}" '
            f'(as in "{B} {W}") and a weak one on any other "{W}"'],
            lambda p: np.maximum(_v(there(p)), _v(is_w(p), 3.0)), "prose")
    return Concept(f"condition:{w}_after_{before}", CONDITION_FAMILY, [
        f'the word "{W}" only right after "{B}"', f'"{W}" when the word before it is "{B}"',
        f'"{W}" in "{B} {W}", not "{W}" elsewhere', f'occurrences of "{W}" that directly follow "{B}"',
        f'the word "{W}", but only where it comes right after "{B}", as in "{B} {W}"; every other "{W}" stays '
        f'quiet, and so does "{B}" itself'],
        lambda p: _v(there(p)), "prose", decoy=lambda p: is_w(p) & ~there(p))


def _opening_word(w: str) -> Concept:
    is_w = lambda p: _lex(p, {w}.__contains__) & ~p.code  # noqa: E731
    first = lambda p: is_w(p) & (_earlier_in_group(p, _wordlike(p)) == 0)  # noqa: E731
    W = w.capitalize()
    return Concept(f"condition:{w}_opening", CONDITION_FAMILY, [
        f'the word "{W}" only when it opens a sentence', f'sentence-initial "{W}"',
        f'"{W}" as the first word of a sentence, not elsewhere',
        f'the word "{W}", but only as the first word of a sentence (after an opening quotation mark, too); the '
        "same word later in the sentence stays quiet"],
        lambda p: _v(first(p)), "prose", decoy=lambda p: is_w(p) & ~first(p))


def _quoted_word(w: str, W: str) -> Concept:
    is_w = lambda p: _lex(p, {w}.__contains__) & ~p.code  # noqa: E731
    return Concept(f"condition:{w}_quoted", CONDITION_FAMILY, [
        f'the word "{W}" only inside quotation marks', f'"{W}" in quoted speech, not in the narration',
        f'"{W}" when a character says it',
        f'the word "{W}" where it appears within double quotes, as in dialogue; the same word outside quotation '
        "marks stays quiet"],
        lambda p: _v(is_w(p) & p.quote), "prose", decoy=lambda p: is_w(p) & ~p.quote)


def _except_concepts(pool: Pool, n_semantic: int, n_pos: int, min_count: int) -> list[Concept]:
    """A category but not one member: the most frequent member when it holds 20-60 % (semantic lists, with its
    plural or singular) or 25-60 % (parts of speech) of the category's occurrences, so that the rest is not the
    category again under another name; that member is the decoy. And a category but not in one context."""
    prose = ~pool.code
    shown = _spellings(pool, prose & _wordlike(pool))
    semantic, pos = [], []
    for name in EXCEPT_SEMANTIC:
        if len(semantic) >= n_semantic:
            break
        forms = _forms(SEMANTIC[name][0])
        members = _members(pool, _lex(pool, forms.__contains__) & prose)
        total = sum(n for _, n in members)
        if len(members) < 4 or total < 3 * min_count:
            continue
        w = members[0][0]
        both = {w} | {f for f in forms if plural(f) == w or f == plural(w)}  # "dog" and "dogs" go together
        if 0.2 <= sum(n for m, n in members if m in both) / total <= 0.6:
            spelled = [shown.get(m, m) for m, _ in members if m in both]  # the word first, then its other form
            examples = [shown.get(m, m) for m, _ in members if m not in both][:2]
            semantic.append(_semantic_except(name, forms - both, both, spelled, examples))
    for name in EXCEPT_POS:
        if len(pos) >= n_pos:
            break
        tags, descs = POS[name]
        members = _members(pool, _tags(pool, tags) & prose & _wordlike(pool))
        total = sum(n for _, n in members)
        if len(members) < 4 or total < 3 * min_count:
            continue
        w, n = members[0]
        if 0.25 <= n / total <= 0.6:
            pos.append(_pos_except(name, tags, descs, w, shown.get(w, w), [shown.get(m, m) for m, _ in members[1:3]]))
    out = semantic + pos
    noun = {"nn", "nns"}
    after_article = lambda p: _tags(p, noun) & _tags(p, {"at"}, p.prev_tag)  # noqa: E731
    the_noun = lambda p: _after(p, {"the"}) & _tags(p, noun)  # noqa: E731
    out += [
        Concept("condition:nouns_without_article", CONDITION_FAMILY, [
            "nouns, but not those right after an article", "common nouns that do not directly follow a, an or the",
            "nouns with no article right before them",
            'common nouns, singular or plural, except where an article comes right before them: it fires on '
            '"water" in "cold water" or "of water", but not in "the water"'],
            lambda p: _v(_tags(p, noun) & ~after_article(p)), "prose", decoy=after_article),
        Concept("condition:after_the_not_noun", CONDITION_FAMILY, [
            'the word after "the", but not when it is a noun', 'words right after "the" other than nouns',
            'what follows "the" when it is an adjective, a number or another modifier rather than the noun',
            'the word right after "the" when it is not a noun, as "old" in "the old house" or "first" in "the first '
            'time"; a noun right after "the", as in "the house", stays quiet'],
            lambda p: _v(_after(p, {"the"}) & ~_tags(p, noun) & ~p.code & _wordlike(p)), "prose", decoy=the_noun),
    ]
    return out


def _without(descs: list[str], words: set[str]) -> list[str]:
    """The descriptions that name none of ``words`` (a list that names a member as an example cannot also
    exclude it)."""
    return [d for d in descs if not words & set(re.findall(r"[a-z']+", d.lower()))] or descs[:1]


def _semantic_except(name: str, forms: set[str], excluded: set[str], spelled: list[str],
                     examples: list[str]) -> Concept:
    """``forms`` without ``excluded`` (a word and its plural or singular), ``spelled`` as printed, the word first."""
    d = _without(SEMANTIC[name][1], excluded)
    w, also = spelled[0], (f' (and "{spelled[1]}")' if len(spelled) > 1 else "")
    descs = [f'{d[0]}, other than the word "{w}"', f'{d[-1]}, except "{w}"', f'{d[0]}, but never "{w}"',
             f'{d[-1]}, with one exception: the word "{w}" stays quiet, although it belongs to the same group',
             f'{d[0]}, for example {_quote_list(examples, "or")}; "{w}"{also} is the one exception and never fires']
    return Concept(f"condition:semantic_{name}_except_{w.lower()}", CONDITION_FAMILY, list(dict.fromkeys(descs)),
                   lambda p: _v(_lex(p, forms.__contains__) & ~p.code), "prose",
                   decoy=lambda p: _lex(p, excluded.__contains__) & ~p.code)


def _pos_except(name: str, tags: set[str], descs: list[str], w: str, W: str, examples: list[str]) -> Concept:
    d = _without(descs, {w})
    is_w = lambda p: _lex(p, {w}.__contains__)  # noqa: E731
    texts = [f'{d[0]} other than "{W}"', f'{d[-1]}, except "{W}"', f'{d[0]}, but not the word "{W}"',
             f'{d[0]}, for example {_quote_list(examples, "or")}, but never "{W}", which stays quiet although it '
             "is one of them"]
    return Concept(f"condition:pos_{name}_except_{w}", CONDITION_FAMILY, list(dict.fromkeys(texts)),
                   lambda p: _v(_tags(p, tags) & ~is_w(p) & ~p.code & _wordlike(p)), "prose",
                   decoy=lambda p: _tags(p, tags) & is_w(p) & ~p.code)


def _after_cue_concepts() -> list[Concept]:
    """The token after a cue that is itself a category ("the word after a number"): never the cue itself."""
    out = []
    for key, (cue, short, cues, phrase, target, (kind, items)) in AFTER_CUES.items():
        code = kind == "code"
        if kind == "words":
            on, after = (lambda f: lambda p: _lex(p, f.__contains__))(items), (lambda f: lambda p: _after(p, f))(items)
        else:
            on, after = (lambda t: lambda p: _tags(p, t))(items), (lambda t: lambda p: _tags(p, t, p.prev_tag))(items)
        item, where = ("token", " in code") if code else ("word", "")
        source = (lambda c: lambda p: p.code if c else ~p.code & _lex(p, lambda w: any(ch.isalnum() for ch in w)))(code)
        descs = [f"the {item} after {cue}{where}", f"{item}s that follow {cue}{where}, not the {short} itself",
                 f"whatever {item} comes right after {cue}{where}", f"the {item} following one of the {cues}{where}",
                 f'the {item} directly after {cue}{where}, as "{target}" in "{phrase}", but never the {short} '
                 "itself (unless it follows another one)"]
        out.append(Concept(f"condition:after_{key}", CONDITION_FAMILY, descs,
                           (lambda a, s: lambda p: _v(a(p) & s(p)))(after, source), "code" if code else "prose",
                           decoy=(lambda o, s: lambda p: o(p) & s(p))(on, source)))
    return out


def _code_condition_concepts() -> list[Concept]:
    kind = lambda p, *k: _tags(p, {f"code:{x}" for x in k})  # noqa: E731
    # the first token of the word's line
    first = lambda p: p.lower_id[np.arange(len(p.lower_id)) - p.pos]  # noqa: E731
    def_line = lambda p: p.code & (first(p) == p.lower_index.get("def", -2))  # noqa: E731
    params = lambda p: def_line(p) & p.paren & (kind(p, "name") | _is(p, {"self", "cls"}))  # noqa: E731
    inline = lambda p: kind(p, "comment") & (p.pos > 0)  # noqa: E731
    loose_string = lambda p: kind(p, "string") & ~p.paren  # noqa: E731
    return [
        Concept("condition:def_parameters", CONDITION_FAMILY, [
            "the parameters of a function definition: names between the brackets of a def line",
            "parameter names in def statements", "names inside the parentheses of a def line",
            "the names a function takes, inside the brackets after def NAME, such as self or path; not the "
            "function's own name, the commas or names in brackets on other lines"],
            lambda p: _v(params(p)), "code", decoy=lambda p: kind(p, "name") & p.paren & ~def_line(p)),
        Concept("condition:inline_comments", CONDITION_FAMILY, [
            "comments at the end of a line of code", "inline comments after code on the same line",
            "comments that follow a statement, not comments on a line of their own",
            "a # comment written after code on the same line, as in 'x = 0  # reset'; a comment that fills a whole "
            "line stays quiet"],
            lambda p: _v(inline(p)), "code", decoy=lambda p: kind(p, "comment") & (p.pos == 0)),
        Concept("condition:strings_outside_brackets", CONDITION_FAMILY, [
            "string literals, but not those inside brackets", "strings outside any parentheses or square brackets",
            "docstrings and strings that are assigned or returned rather than passed to a call",
            "string literals that stand outside brackets, such as docstrings or the 'a' of x = 'a'; a string "
            "inside a call's parentheses or a list, as 'utf-8' in open(path, encoding='utf-8'), stays quiet"],
            lambda p: _v(loose_string(p)), "code", decoy=lambda p: kind(p, "string") & p.paren),
    ]


def condition_concepts(pool: Pool, *, n_after: int = 24, n_start: int = 6, n_quoted: int = 4, n_graded: int = 4,
                       n_semantic: int = 10, n_pos: int = 8, min_count: int = 60) -> list[Concept]:
    """The ``condition`` family (``build-data --conditions``, off by default): units whose activation depends on a
    condition, not on a word alone (a word only in a context, negation scope, quoted speech, a category but not
    one member, the word after a cue category, and code in a context), in a fixed order. Which words and
    members are used depends on the pool's frequencies (``min_count``: the fewest occurrences of a word in its
    context); the values of each unit depend on the words only, so a unit made from one pool applies to
    another. Each has a ``decoy``: the same words where the condition does not hold."""
    return (_context_concepts(pool, n_after, n_start, n_quoted, n_graded, min_count)
            + _negation_concepts() + _quote_concepts()
            + _except_concepts(pool, n_semantic, n_pos, min_count) + _after_cue_concepts()
            + _code_condition_concepts())


# ----------------------------------------------------------------------------------------- pairs, texts

def pair(a: Concept, b: Concept, weak: bool) -> Concept:
    """A two-concept unit: ``a`` at full strength and ``b`` at full (or 60 %, ``weak``) strength."""
    scale = 0.6 if weak else 1.0
    return Concept(f"pair:{a.name}+{b.name}{'~' if weak else ''}", "two-concept", a.descriptions,
                   lambda p: np.maximum(a.word_values(p), b.word_values(p) * scale),
                   a.source if a.source == b.source else "any", weak=b.descriptions[0] + ("|weak" if weak else ""))


STYLES = (
    "{d}",
    "{D}.",
    "Fires on {d}.",
    "This neuron activates on {d}.",
    "Responds to {d}.",
    "The neuron detects {d}; other tokens stay near zero.",
    "Active for {d}",
    "{D}, regardless of topic.",
    "Tokens that are {d}.",
    "Strong activation on {d}.",
)
TWO = (
    "{a}; also {b}",
    "{A} and {b}.",
    "Two patterns: {a}, and {b}.",
    "Fires on {a} as well as on {b}.",
    "This neuron responds to {a} and separately to {b}.",
)
TWO_WEAK = (
    "{A}, and more weakly {b}.",
    "Strongest on {a}; weaker on {b}.",
    "Mainly {a}, with smaller activations on {b}.",
)


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def explanations(concept: Concept, rng: random.Random, n: int = 6) -> list[str]:
    """``n`` distinct natural explanations of ``concept`` in varied styles (seeded by ``rng``)."""
    return phrasings(concept.descriptions, rng, n, weak=concept.weak, family=concept.family)


def phrasings(descriptions: list[str], rng: random.Random, n: int = 6, *, weak: str | None = None,
              family: str = "") -> list[str]:
    """``n`` distinct natural explanations from ``descriptions`` in varied styles (seeded by ``rng``); ``weak``
    and ``family`` as :class:`Concept`'s, for a graded two-part concept."""
    out: list[str] = []
    for _ in range(n * 4):
        d = rng.choice(descriptions)
        if weak is None:
            text = rng.choice(STYLES).format(d=d, D=_cap(d))
        else:
            b, _, flag = weak.partition("|")
            weak_b = flag == "weak" or family == "semantic"
            text = rng.choice(TWO_WEAK if weak_b else TWO).format(a=d, A=_cap(d), b=b)
        if text not in out:
            out.append(text)
        if len(out) == n:
            break
    return out
