"""Writes the tiny WordNet 3.0 database beside this file (data.*, index.*, verb.exc) in the real file format:
``python make_db.py``. Offsets are the lines' byte offsets, as in WordNet; the files are committed, this script
only documents (and can regenerate) them."""

from __future__ import annotations

from pathlib import Path

HEADER = "  1 A tiny hand-written WordNet 3.0 database for the simulator-training tests.  \n" \
         "  2 Same format as Princeton WordNet 3.0 (wordnet-base); a handful of synsets only.  \n"
# name: (pos, ss_type, lexfile, lemmas, [(pointer symbol, target name)], gloss); adjective satellites are "s"
SYNSETS = {
    "entity": ("n", "n", 3, ["entity"], [], "that which is perceived or known or inferred to have its own distinct existence"),
    "organism": ("n", "n", 3, ["organism", "being"], [("@", "entity")], "a living thing that has (or can develop) the ability to act or function independently"),
    "animal": ("n", "n", 5, ["animal", "animate_being", "beast"], [("@", "organism")], "a living organism characterized by voluntary movement"),
    "mammal": ("n", "n", 5, ["mammal"], [("@", "animal")], "any warm-blooded vertebrate having the skin more or less covered with hair"),
    "cat": ("n", "n", 5, ["cat", "true_cat"], [("@", "mammal")], 'feline mammal usually having thick soft fur; "cats were kept as pets"'),
    "dog": ("n", "n", 5, ["dog", "domestic_dog", "Canis_familiaris"], [("@", "mammal")], 'a member of the genus Canis; "the dog barked all night"'),
    "horse": ("n", "n", 5, ["horse", "Equus_caballus"], [("@", "mammal")], "solid-hoofed herbivorous quadruped domesticated since prehistoric times"),
    "person": ("n", "n", 18, ["person", "individual"], [("@", "organism")], "a human being"),
    "man": ("n", "n", 18, ["man", "adult_male"], [("@", "person")], "an adult person who is male (as opposed to a woman)"),
    "guy": ("n", "n", 18, ["guy", "cat", "hombre"], [("@", "man")], "an informal term for a youth or man"),
    "artifact": ("n", "n", 6, ["artifact"], [("@", "entity")], "a man-made object taken as a whole"),
    "mat": ("n", "n", 6, ["mat"], [("@", "artifact")], "a thick flat pad used as a floor covering"),
    "horse2": ("n", "n", 6, ["horse", "gymnastic_horse"], [("@", "artifact")], "a padded gymnastic apparatus on legs"),
    "location": ("n", "n", 15, ["location"], [("@", "entity")], "a point or extent in space"),
    "region": ("n", "n", 15, ["region", "part"], [("@", "location")], "the extended spatial location of something"),
    "garden": ("n", "n", 15, ["garden"], [("@", "region")], "a plot of ground where plants are cultivated"),
    "market": ("n", "n", 15, ["market", "marketplace"], [("@", "region")], "an area in a town where a public mercantile establishment is set up"),
    "body_of_water": ("n", "n", 17, ["body_of_water", "water"], [("@", "location")], "the part of the earth's surface covered with water"),
    "sea": ("n", "n", 17, ["sea"], [("@", "body_of_water")], "a division of an ocean or a large body of salt water"),
    "river": ("n", "n", 17, ["river"], [("@", "body_of_water")], 'a large natural stream of water; "the river was navigable for 50 miles"'),
    "happiness": ("n", "n", 7, ["happiness", "felicity"], [("@", "entity"), ("=", "happy"), ("=", "sad")], "state of well-being characterized by emotions ranging from contentment to intense joy"),
    "travel": ("v", "v", 38, ["travel", "go", "move", "locomote"], [], "change location; move, travel, or proceed, also metaphorically"),
    "chase": ("v", "v", 38, ["chase", "chase_after", "trail"], [("@", "travel")], "go after with the intent to catch"),
    "flow": ("v", "v", 38, ["flow", "flux"], [("@", "travel")], 'move along, of liquids; "water flowed into the cave"'),
    "fall": ("v", "v", 38, ["fall"], [("@", "travel")], "descend in free fall under the influence of gravity"),
    "sit": ("v", "v", 35, ["sit", "sit_down"], [], "be seated"),
    "happy": ("a", "a", 0, ["happy"], [("=", "happiness"), ("!", "sad"), ("&", "glad")], "enjoying or showing or marked by joy or pleasure"),
    "glad": ("a", "s", 0, ["glad"], [("&", "happy")], "showing or causing joy and pleasure"),
    "sad": ("a", "a", 0, ["sad"], [("=", "happiness"), ("!", "happy")], "experiencing or showing sorrow or unhappiness"),
}
SENSES = {  # (pos, lemma): synset names in sense order (most frequent first)
    ("n", "cat"): ["cat", "guy"], ("n", "horse"): ["horse", "horse2"], ("v", "move"): ["travel"],
}
EXC = {"verb": ["fell fall", "sat sit"]}
FILES = {"n": "noun", "v": "verb", "a": "adj"}


def main(out: Path = Path(__file__).parent) -> None:
    offsets: dict[str, int] = {}
    lines: dict[str, list[tuple[str, str]]] = {p: [] for p in FILES}
    for name, (pos, *_rest) in SYNSETS.items():
        lines[pos].append((name, ""))
    for pos in FILES:  # offsets are fixed-width, so every line's length is known before the offsets are
        at = len(HEADER.encode())
        for name, _ in lines[pos]:
            offsets[name] = at
            at += len(_line(name, {n: 0 for n in SYNSETS}).encode())
    for pos, fname in FILES.items():
        text = HEADER + "".join(_line(name, offsets) for name, _ in lines[pos])
        (out / f"data.{fname}").write_text(text)
        index: dict[str, list[str]] = {}
        for name, (p, _, _, lemmas, _, _) in SYNSETS.items():
            if p == pos:
                for lemma in lemmas:
                    index.setdefault(lemma.lower(), []).append(name)
        rows = []
        for lemma in sorted(index):
            names = SENSES.get((pos, lemma), index[lemma])
            ptrs = sorted({s for n in names for s, _ in SYNSETS[n][4]}
                          | ({"~"} if any(("@", n) in spec[4] for n in names for spec in SYNSETS.values()) else set()))
            rows.append(f"{lemma} {pos} {len(names)} {len(ptrs)} {' '.join(ptrs) + ' ' if ptrs else ''}"
                        f"{len(names)} 0 {' '.join(f'{offsets[n]:08d}' for n in names)}  \n")
        (out / f"index.{fname}").write_text(HEADER + "".join(rows))
    for fname, rows in EXC.items():
        (out / f"{fname}.exc").write_text("".join(r + "\n" for r in rows))


def _line(name: str, offsets: dict[str, int]) -> str:
    pos, ss_type, lexfile, lemmas, pointers, gloss = SYNSETS[name]
    pointers = pointers + [("~", child) for child, spec in SYNSETS.items() if ("@", name) in spec[4]]  # hyponyms
    words = " ".join(f"{w} 0" for w in lemmas)
    ptrs = " ".join(f"{s} {offsets[t]:08d} {SYNSETS[t][1]} 0000" for s, t in pointers)
    frames = " 01 + 02 00" if pos == "v" else ""
    return (f"{offsets[name]:08d} {lexfile:02d} {ss_type} {len(lemmas):02x} {words} {len(pointers):03d}"
            f"{' ' + ptrs if ptrs else ''}{frames} | {gloss}  \n")


if __name__ == "__main__":
    main()
