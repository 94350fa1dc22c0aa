"""Every link between the project's Markdown files resolves: the file exists and the anchor names a heading of it.

The READMEs point into each other (the main README's tables link to the records in ``experiments/README.md`` and
``benchmarks/README.md``, and back); a section renamed or moved would otherwise leave a dead link that nothing
reports. Anchors are GitHub's: the heading lower-cased, characters other than letters, digits, ``_``, ``-`` and
spaces dropped, spaces made ``-``, repeats numbered ``-1``, ``-2``."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^()\s]+)\)")
HEADING = re.compile(r"(#{1,6}) +(.*?) *#*$")


def markdown_files() -> list[Path]:
    skip = {".git", "node_modules", "work"}
    return sorted(p for p in ROOT.rglob("*.md")
                  if not any(part in skip or part.startswith(".") or part.endswith(".egg-info")
                             for part in p.relative_to(ROOT).parts))


def _outside_fences(text: str) -> list[tuple[int, str]]:
    """The numbered lines outside fenced code blocks."""
    out, fence = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")  # code spans keep theirs: ` goes


@cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a Markdown file's headings, read once per file however many links point into it."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in _outside_fences(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return frozenset(out)


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code; http:, https:, mailto: ... are not checked."""
    found = []
    for number, line in _outside_fences(path.read_text(encoding="utf-8")):
        for target in LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                found.append((number, target))
    return found


def dead_links(path: Path, root: Path = ROOT) -> list[str]:
    dead = []
    for number, target in links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not dest.exists():
            dead.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{where} (no heading with that anchor in {dest.name})")
    return dead


def test_the_checker_finds_dead_links(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "B.md").write_text("# Results: the record\n\n## Speed (2026-12-04)\n\n## Speed (2026-12-04)\n")
    a = tmp_path / "A.md"
    a.write_text("# Top\n\n## A `code` heading, with: punctuation\n\n"
                 "[ok](#top) [ok](#a-code-heading-with-punctuation) [ok](sub/B.md#speed-2026-12-04)\n"
                 "[ok](sub/B.md#speed-2026-12-04-1) [ok](https://example.org/#x) `[not a link](#gone)`\n"
                 "[dead](#gone) [dead](sub/C.md) [dead](sub/B.md#results)\n"
                 "```\n[in code](#gone)\n```\n")
    assert [d.split(": ", 1)[1] for d in dead_links(a, tmp_path)] == [
        "#gone (no heading with that anchor in A.md)", "sub/C.md (no such file)",
        "sub/B.md#results (no heading with that anchor in B.md)"]


def test_links_between_the_markdown_files_resolve():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "benchmarks" / "README.md" in files
    assert [dead for path in files for dead in dead_links(path)] == []
