"""A small reader of the WordNet 3.0 database (Debian's ``wordnet-base``: ``/usr/share/wordnet``) and the
semantic categories the synthetic ``wordnet`` units are made of.

Only the plain-text files are read, no nltk and no network: ``data.{noun,verb,adj}`` (one synset per line:
``offset lex_filenum ss_type w_cnt word lex_id ... p_cnt pointer ... | gloss``, where ``offset`` is the line's
byte offset, checked here), ``index.{noun,verb,adj}`` (``lemma pos synset_cnt p_cnt ptr... sense_cnt
tagsense_cnt offset...``, the offsets in sense order: most frequent sense first) and the morphological exception
lists ``{noun,verb,adj}.exc`` (``went go``). A missing or malformed database is a one-line
:class:`~ns_dspy.errors.ConfigError`.

**Categories** (:func:`categories`) are noun and verb synsets, taken with their whole hyponym closure (instance
hyponyms too: "city" covers "Boston"), and adjective *attributes*: the adjectives whose cluster head points to an
attribute noun ("size": large, small, big, huge, tiny, ...). A word of the text belongs to a category when its
Brown tag has the category's part of speech (nouns: ``nn*``; proper nouns ``np*`` count only through instance
senses; verbs ``vb*``; adjectives ``jj*``), one of its base forms (:meth:`WordNet.lemmatize`: WordNet's own
detachment rules for plural -s/-es/-ies, -ed, -ing, -er/-est, plus the exception lists) is a lemma of the closure
(at least three letters long), and that sense is among the word's first three senses in ``index.*``. Membership is
**graded by sense rank** (:data:`RANK_VALUES`): 10 when it is the word's first (most frequent) sense, 6 for the
second, 3 for the third; a word that means the category only in a later sense is not a member. So "dog" is 10 for
"animal", "cat" (sense 2: "a man") is 6 for "man", and "run" is a motion verb at 10 but no member of "operate"
(its 4th sense).

A category is kept when it covers ``min_forms``..``max_forms`` distinct word forms that occur at least
``min_count`` times (half of ``min_forms`` of them in their first sense), no single form carries more than half of
its occurrences (a category that is one word is a ``word`` unit), it activates at most ``max_share`` of the prose
words, it is not a top-level abstraction (nouns of depth < 4 under ``entity``, and :data:`GENERIC`), and its
members overlap no already chosen category by more than ``max_jaccard``. Choice is seeded and deterministic:
candidates are shuffled within each lexicographer file (noun.animal, verb.motion, ...) and taken round-robin over
the files, so the categories spread over domains. Each category carries its *decoys*: the main-sense members of a
sibling category (another hyponym of its hypernym, or the nearest such further up, with at least ``min_decoys``
such words; failing that another chosen category of the same domain) that are not members of it, for contrastive
exemplars.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ns_dspy.errors import ConfigError

__all__ = ["Synset", "WordNet", "Category", "categories", "load_wordnet", "RANK_VALUES", "LEXNAMES",
           "TAG_CLASSES", "tag_classes"]

POS_FILES = {"n": "noun", "v": "verb", "a": "adj"}
RANK_VALUES = (10.0, 6.0, 3.0)
"""Activation of a member word by the rank of the category's sense among the word's senses (1st, 2nd, 3rd)."""

LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()
DOMAINS = {  # lexicographer file -> a phrase for descriptions ("words about animals")
    "noun.act": "actions and activities", "noun.animal": "animals", "noun.artifact": "man-made things",
    "noun.attribute": "qualities and properties", "noun.body": "the body", "noun.cognition": "thought and knowledge",
    "noun.communication": "communication and language", "noun.event": "events", "noun.feeling": "feelings",
    "noun.food": "food and drink", "noun.group": "groups and collections", "noun.location": "places",
    "noun.motive": "motives", "noun.object": "natural objects", "noun.person": "people",
    "noun.phenomenon": "natural phenomena", "noun.plant": "plants", "noun.possession": "property and money",
    "noun.process": "processes", "noun.quantity": "quantities and measures", "noun.relation": "relations",
    "noun.shape": "shapes", "noun.state": "states and conditions", "noun.substance": "substances and materials",
    "noun.time": "time", "verb.body": "the body", "verb.change": "change", "verb.cognition": "thinking",
    "verb.communication": "communication", "verb.competition": "competition and fighting",
    "verb.consumption": "eating, drinking and using", "verb.contact": "touching and handling",
    "verb.creation": "making and creating", "verb.emotion": "feeling", "verb.motion": "motion",
    "verb.perception": "perception", "verb.possession": "possession and exchange", "verb.social": "social life",
    "verb.stative": "being and having", "verb.weather": "weather",
}
GENERIC = {"entity", "physical_entity", "abstraction", "object", "whole", "thing", "matter", "artifact",
           "psychological_feature", "attribute", "group", "relation", "communication", "measure", "process",
           "event", "act", "state", "location", "causal_agent", "living_thing", "organism", "person", "unit",
           "part", "substance", "instrumentality", "cognition", "content", "property", "quality", "condition",
           "be", "have", "do", "make", "get", "change", "act", "cause", "give"}
TAG_CLASSES = {  # Brown tags (as the pool keeps them) -> the class of word a category can claim
    "n": {"nn", "nns", "nn$", "nns$"}, "np": {"np", "nps", "np$", "nps$"},
    "v": {"vb", "vbd", "vbg", "vbn", "vbz"}, "a": {"jj", "jjr", "jjt", "jjs"},
}
CLASSES = tuple(TAG_CLASSES)
DETACH = {  # WordNet's morphy rules: inflected ending -> ending of the base form
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
}


@dataclass(frozen=True)
class Synset:
    key: str  # "n:02084071": part of speech (n, v, a; adjective satellites are "a" too) and byte offset
    ss_type: str  # n, v, a or s (adjective satellite)
    lexname: str  # lexicographer file, e.g. noun.animal
    lemmas: tuple[str, ...]  # as written in data.* ("domestic_dog", "Canis_familiaris")
    pointers: tuple[tuple[str, str], ...]  # (symbol, target key): "@" hypernym, "~" hyponym, "=" attribute, ...
    gloss: str

    @property
    def pos(self) -> str:
        return self.key[0]

    @property
    def definition(self) -> str:
        """The gloss without its quoted usage examples."""
        return re.split(r';\s*"|\s"', self.gloss, maxsplit=1)[0].strip().rstrip(";").strip()

    @property
    def heads(self) -> list[str]:
        return [w.replace("_", " ") for w in self.lemmas]

    def targets(self, *symbols: str) -> list[str]:
        return [k for s, k in self.pointers if s in symbols]


def _error(path: Path, n: int, why: str) -> ConfigError:
    return ConfigError(f"{path}:{n} is not a WordNet 3.0 database line ({why}): give the folder of an intact "
                       "WordNet 3.0 database (apt-get install wordnet-base: /usr/share/wordnet)")


class WordNet:
    """Synsets, lemmas (with sense ranks), pointers and glosses of one WordNet 3.0 database folder."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"WordNet folder {folder} does not exist: install it (apt-get install wordnet-base) "
                              "and pass --wordnet /usr/share/wordnet")
        missing = [f"{kind}.{name}" for name in POS_FILES.values() for kind in ("data", "index")
                   if not (folder / f"{kind}.{name}").is_file()]
        if missing:
            raise ConfigError(f"{folder} is not a WordNet 3.0 database folder (no {', '.join(missing)}): pass "
                              "the folder that holds data.noun and index.noun, e.g. /usr/share/wordnet")
        self.folder = folder
        self.synsets: dict[str, Synset] = {}
        self.index: dict[str, dict[str, list[str]]] = {p: {} for p in POS_FILES}
        self.exceptions: dict[str, dict[str, list[str]]] = {p: {} for p in POS_FILES}
        self._hyponyms: dict[str, list[str]] = {}
        for pos, name in POS_FILES.items():
            self._read_data(folder / f"data.{name}", pos)
        for pos, name in POS_FILES.items():
            self._read_index(folder / f"index.{name}", pos)
            exc = folder / f"{name}.exc"
            if exc.is_file():
                for line in exc.read_text(encoding="utf-8", errors="replace").splitlines():
                    parts = line.split()
                    if len(parts) >= 2:
                        self.exceptions[pos].setdefault(parts[0].lower(), []).extend(p.lower() for p in parts[1:])
        for key, syn in self.synsets.items():  # hyponyms from the hypernym pointers (both directions agree)
            for parent in syn.targets("@", "@i"):
                self._hyponyms.setdefault(parent, []).append(key)

    def _read_data(self, path: Path, pos: str) -> None:
        offset = 0
        with path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                start, offset = offset, offset + len(raw)
                if raw.startswith(b"  ") or not raw.strip():
                    continue  # the licence header
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                head, bar, gloss = line.partition(" | ")
                fields = head.split()
                try:
                    if not bar and not line.rstrip().endswith("|"):
                        raise ValueError("no ' | ' before the gloss")
                    if int(fields[0]) != start:
                        raise ValueError(f"offset {fields[0]} is not the line's byte offset {start}")
                    lexfile, ss_type, w_cnt = int(fields[1]), fields[2], int(fields[3], 16)
                    if ss_type not in ("n", "v", "a", "s", "r") or (ss_type == "s" and pos != "a") or \
                            (ss_type != "s" and ss_type != pos):
                        raise ValueError(f"synset type {ss_type!r} in data.{POS_FILES[pos]}")
                    words = tuple(re.sub(r"\([a-z]+\)$", "", w) for w in fields[4:4 + 2 * w_cnt:2])
                    k = 4 + 2 * w_cnt
                    p_cnt = int(fields[k])
                    ptrs = fields[k + 1:k + 1 + 4 * p_cnt]
                    if len(words) != w_cnt or len(ptrs) != 4 * p_cnt:
                        raise ValueError("fewer words or pointers than counted")
                    pointers = tuple((ptrs[i], f"{'a' if ptrs[i + 2] == 's' else ptrs[i + 2]}:{int(ptrs[i + 1]):08d}")
                                     for i in range(0, len(ptrs), 4))
                    lexname = LEXNAMES[lexfile]
                except (IndexError, ValueError) as err:
                    raise _error(path, n, str(err)) from None
                key = f"{pos}:{start:08d}"
                self.synsets[key] = Synset(key, ss_type, lexname, words, pointers, gloss.strip())

    def _read_index(self, path: Path, pos: str) -> None:
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("  ") or not line.strip():
                    continue
                fields = line.split()
                try:
                    lemma, synset_cnt, p_cnt = fields[0], int(fields[2]), int(fields[3])
                    offsets = fields[4 + p_cnt + 2:]
                    if len(offsets) != synset_cnt:
                        raise ValueError(f"{synset_cnt} senses counted, {len(offsets)} given")
                    keys = [f"{pos}:{int(o):08d}" for o in offsets]
                except (IndexError, ValueError) as err:
                    raise _error(path, n, str(err)) from None
                unknown = [k for k in keys if k not in self.synsets]
                if unknown:
                    raise _error(path, n, f"sense {unknown[0]} is not in data.{POS_FILES[pos]}")
                self.index[pos][lemma.lower()] = keys

    # ------------------------------------------------------------------------------------------ lookups

    def synset(self, key: str) -> Synset:
        return self.synsets[key]

    def senses(self, lemma: str, pos: str) -> list[str]:
        """The synset keys of ``lemma`` (lower-case, ``_`` for spaces) in sense order (most frequent first)."""
        return self.index[pos].get(lemma.lower().replace(" ", "_"), [])

    def hypernyms(self, key: str) -> list[str]:
        """Hypernyms and, for an instance ("Boston"), the class it is an instance of."""
        return self.synsets[key].targets("@", "@i")

    def hyponyms(self, key: str) -> list[str]:
        return list(self._hyponyms.get(key, []))

    def closure(self, key: str) -> set[str]:
        """``key`` and every synset below it (hyponyms and instance hyponyms, transitively)."""
        seen, todo = {key}, [key]
        while todo:
            for k in self._hyponyms.get(todo.pop(), []):
                if k not in seen:
                    seen.add(k)
                    todo.append(k)
        return seen

    def depth(self, key: str) -> int:
        """Length of the shortest hypernym path to a root (entity is 0)."""
        level, frontier, seen = 0, {key}, {key}
        while True:
            up = {h for k in frontier for h in self.hypernyms(k)} - seen
            if not up:
                return level
            level, frontier, seen = level + 1, up, seen | up

    def is_instance(self, key: str) -> bool:
        return bool(self.synsets[key].targets("@i"))

    def lemmatize(self, form: str, pos: str) -> list[str]:
        """Base forms of the word ``form`` that are lemmas of ``pos``, by WordNet's morphy rules: the exception
        list ("went" -> "go"), the form itself, and the detachment rules (plural -s/-es/-ies, -ed, -ing,
        -er/-est), also undoubling a final consonant ("stopped" -> "stop")."""
        form = form.lower()
        out = list(self.exceptions[pos].get(form, []))
        candidates = [form]
        for suffix, base in DETACH[pos]:
            if form.endswith(suffix) and len(form) > len(suffix) + 1:
                stem = form[: -len(suffix)] + base
                candidates.append(stem)
                if pos == "v" and not base and len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeiouls":
                    candidates.append(stem[:-1])
        out += [c for c in candidates if c in self.index[pos]]
        return [w for w in dict.fromkeys(out) if w in self.index[pos]]

    def name(self, key: str) -> str:
        """``lemma.pos.NN`` as WordNet browsers name a synset: its first lemma and that lemma's sense number."""
        syn = self.synsets[key]
        lemma = syn.lemmas[0].lower()
        senses = self.senses(lemma, syn.pos)
        return f"{lemma}.{syn.pos}.{senses.index(key) + 1 if key in senses else 0:02d}"


def load_wordnet(folder: str | Path) -> WordNet:
    return WordNet(folder)


# ----------------------------------------------------------------------------------------- categories

@dataclass
class Category:
    """One semantic category over a text pool: member word forms per tag class with their graded values."""

    key: str  # a synset key, or "attr:" + the attribute noun's key for adjectives
    name: str  # "vehicle.n.01", "adj:size.n.01"
    pos: str  # n, v or a
    heads: list[str]
    definition: str
    domain: str  # a phrase for its lexicographer file ("animals"), or ""
    members: dict[str, dict[str, float]]  # tag class -> {lower-case form: value}
    counts: dict[str, int] = field(default_factory=dict)  # form -> occurrences as a member (any class)
    decoys: dict[str, dict[str, int]] = field(default_factory=dict)  # tag class -> {sibling's form: count}
    decoy_heads: list[str] = field(default_factory=list)
    decoy_parent: str = ""  # head of the common hypernym ("vehicle" for car and boat), if any
    share: float = 0.0  # share of prose words (all tags) that are active

    def top_forms(self, n: int = 10) -> list[str]:
        """The ``n`` most frequent member forms (ties by spelling)."""
        return [w for w, _ in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def main_forms(self) -> list[str]:
        """Member forms whose first sense is in the category (value 10), most frequent first."""
        main = {w for forms in self.members.values() for w, v in forms.items() if v >= RANK_VALUES[0]}
        return [w for w in self.top_forms(len(self.counts)) if w in main]

    def decoy_forms(self, n: int = 10) -> list[str]:
        """The ``n`` most frequent decoy forms (ties by spelling)."""
        counts: dict[str, int] = {}
        for forms in self.decoys.values():
            for w, k in forms.items():
                counts[w] = counts.get(w, 0) + k
        return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]

    def word_values(self, pool) -> np.ndarray:
        """Activation per word of ``pool``: the member value where the word's tag class matches, else 0."""
        return _class_values(pool, self.members)

    def decoy_mask(self, pool) -> np.ndarray:
        return _class_values(pool, {c: dict.fromkeys(forms, 1.0) for c, forms in self.decoys.items()}) > 0


def tag_classes(pool) -> np.ndarray:
    """Per word of ``pool``: the index in :data:`CLASSES` of its tag's class, or -1 (code, other tags)."""
    table = np.full(len(pool.tags) + 1, -1, dtype=np.int8)
    for t, tag in enumerate(pool.tags):
        for c, name in enumerate(CLASSES):
            if tag in TAG_CLASSES[name]:
                table[t] = c
    cls = table[np.where(pool.tag_id >= 0, pool.tag_id, len(pool.tags))]
    return np.where(pool.code, -1, cls).astype(np.int8)


def _class_values(pool, members: dict[str, dict[str, float]]) -> np.ndarray:
    cls = tag_classes(pool)
    out = np.zeros(len(pool.lower_id), dtype=np.float32)
    for name, forms in members.items():
        if not forms:
            continue
        table = np.fromiter((forms.get(w, 0.0) for w in pool.lowers), dtype=np.float32, count=len(pool.lowers))
        sel = cls == CLASSES.index(name)
        out[sel] = table[pool.lower_id[sel]]
    return out


def _class_counts(pool) -> dict[str, np.ndarray]:
    cls = tag_classes(pool)
    return {name: np.bincount(pool.lower_id[cls == c], minlength=len(pool.lowers))
            for c, name in enumerate(CLASSES)}


class _Table:
    """For every candidate category: {(tag class, form): best value} over the pool's words."""

    def __init__(self, wn: WordNet, pool):
        self.wn = wn
        self.counts = _class_counts(pool)
        self.index = {w: i for i, w in enumerate(pool.lowers)}
        self.values: dict[str, dict[tuple[str, str], float]] = {}
        self._up: dict[str, tuple[str, ...]] = {}
        for cname, counts in self.counts.items():
            pos = "n" if cname == "np" else cname
            for i in np.flatnonzero(counts):
                form = pool.lowers[i]
                if not form.isalpha() or len(form) < 3:
                    continue  # abbreviations ("n", "rh") are too ambiguous to count
                for base in wn.lemmatize(form, pos):
                    for rank, key in enumerate(wn.senses(base, pos)[:len(RANK_VALUES)]):
                        if cname == "np" and not wn.is_instance(key):
                            continue  # a capitalised name counts through its instance senses only
                        value = RANK_VALUES[rank]
                        for cat in self.up(key):
                            slot = self.values.setdefault(cat, {})
                            if slot.get((cname, form), 0.0) < value:
                                slot[(cname, form)] = value

    def up(self, key: str) -> tuple[str, ...]:
        """The categories a synset belongs to: itself and its hypernyms (nouns, verbs); an adjective's
        attributes (through its cluster head)."""
        if key in self._up:
            return self._up[key]
        syn = self.wn.synset(key)
        if syn.pos == "a":
            heads = [key] if syn.ss_type == "a" else syn.targets("&")
            out = tuple(dict.fromkeys(f"attr:{n}" for h in heads if h in self.wn.synsets
                                      for n in self.wn.synset(h).targets("=") if n.startswith("n:")))
        else:
            out = {key}
            for h in self.wn.hypernyms(key):
                out.update(self.up(h))
            out = tuple(sorted(out))
        self._up[key] = out
        return out

    def members(self, cat: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (cname, form), v in self.values.get(cat, {}).items():
            out.setdefault(cname, {})[form] = v
        return out

    def form_counts(self, cat: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for (cname, form), _ in self.values.get(cat, {}).items():
            out[form] = out.get(form, 0) + int(self.counts[cname][self.index[form]])
        return out


def categories(wn: WordNet, pool, n: int, *, seed: int = 0, min_forms: int = 8, max_forms: int = 400,
               min_count: int = 2, min_occurrences: int = 30, max_share: float = 0.02, max_top_share: float = 0.5,
               max_jaccard: float = 0.5, min_noun_depth: int = 4, min_decoys: int = 3) -> list[Category]:
    """Up to ``n`` categories of ``wn`` over ``pool`` (see the module docstring), seeded and deterministic."""
    table = _Table(wn, pool)
    prose_words = max(1, int((~pool.code).sum()))
    stats: dict[str, tuple[dict[str, int], int]] = {}
    by_file: dict[str, list[str]] = {}
    for cat in sorted(table.values):
        if not _eligible(wn, cat, min_noun_depth):
            continue
        counts = table.form_counts(cat)
        frequent = [w for w, c in counts.items() if c >= min_count]
        total = sum(counts.values())
        if not (min_forms <= len(frequent) <= max_forms) or total < min_occurrences or total > max_share * prose_words:
            continue
        main = {w for (_, w), v in table.values[cat].items() if v >= RANK_VALUES[0] and counts[w] >= min_count}
        if len(main) < max(1, min_forms // 2):
            continue  # mostly words that mean it only in a rarer sense
        if max(counts.values()) > max_top_share * total:
            continue
        stats[cat] = (counts, total)
        by_file.setdefault(_synset_of(cat, wn).lexname + (":adj" if cat.startswith("attr:") else ""), []).append(cat)
    rng = random.Random(f"wordnet:{seed}")
    queues = {f: rng.sample(cats, len(cats)) for f, cats in sorted(by_file.items())}
    chosen: list[str] = []
    chosen_sets: list[set[str]] = []
    while len(chosen) < n and any(queues.values()):
        for f in list(queues):
            while queues[f]:
                cat = queues[f].pop()
                forms = {w for w, c in stats[cat][0].items() if c >= min_count}
                if all(len(forms & s) / len(forms | s) <= max_jaccard for s in chosen_sets):
                    chosen.append(cat)
                    chosen_sets.append(forms)
                    break
            if len(chosen) >= n:
                break
    out = [_category(wn, table, cat, stats[cat], prose_words, min_count, min_decoys) for cat in chosen]
    for c in out:
        if not c.decoys:  # no sibling with members of its own: another chosen category of the same kind
            others = [o for o in out if o.pos == c.pos and o.key != c.key]
            near = [o for o in others if o.domain == c.domain]
            others = near or others
            if others:
                other = others[random.Random(f"{seed}:{c.key}").randrange(len(others))]
                _set_decoys(c, table.members(other.key), other.heads, "", min_count, table)
    return out


def _synset_of(cat: str, wn: WordNet) -> Synset:
    return wn.synset(cat.removeprefix("attr:"))


def _eligible(wn: WordNet, cat: str, min_noun_depth: int) -> bool:
    syn = _synset_of(cat, wn)
    if any(w.lower() in GENERIC for w in syn.lemmas[:1]):
        return False
    return not (cat.startswith("n:") and wn.depth(cat) < min_noun_depth)


def _category(wn: WordNet, table: _Table, cat: str, stat, prose_words: int, min_count: int,
              min_decoys: int) -> Category:
    syn = _synset_of(cat, wn)
    counts, total = stat
    pos = "a" if cat.startswith("attr:") else syn.pos
    name = ("adj:" if pos == "a" else "") + wn.name(syn.key)
    c = Category(cat, name, pos, syn.heads, syn.definition, DOMAINS.get(syn.lexname, ""), table.members(cat),
                 counts, share=total / prose_words)
    # decoys: a sibling category (another hyponym of a hypernym, nearest first) with members of its own
    level = [syn.key]
    for _ in range(3):
        parents = [h for k in level for h in wn.hypernyms(k)]
        if not parents:
            break
        best = None
        for parent in parents:
            for sib in sorted(wn.hyponyms(parent)):
                sib_cat = f"attr:{sib}" if pos == "a" else sib
                if sib in level or sib_cat == cat or sib_cat not in table.values:
                    continue
                members = table.members(sib_cat)
                n_new = sum(map(len, _decoy_forms(c, members, min_count, table).values()))
                if n_new >= min_decoys and (best is None or n_new > best[0]):
                    best = (n_new, sib_cat, parent)
        if best is not None:
            _, sib_cat, parent = best
            _set_decoys(c, table.members(sib_cat), _synset_of(sib_cat, wn).heads, wn.synset(parent).heads[0],
                        min_count, table)
            break
        level = parents
    return c


def _decoy_forms(c: Category, members: dict[str, dict[str, float]], min_count: int,
                 table: _Table) -> dict[str, dict[str, int]]:
    """Main-sense members of another category that are no member of ``c``: tag class -> {form: count}."""
    out: dict[str, dict[str, int]] = {}
    for cname, forms in members.items():
        mine = c.members.get(cname, {})
        for w, v in forms.items():
            n = int(table.counts[cname][table.index[w]])
            if v >= RANK_VALUES[0] and w not in mine and w not in c.counts and n >= min_count:
                out.setdefault(cname, {})[w] = n
    return out


def _set_decoys(c: Category, members, heads: list[str], parent: str, min_count: int, table: _Table) -> None:
    c.decoys = _decoy_forms(c, members, min_count, table)
    c.decoy_heads = list(heads)
    c.decoy_parent = parent
