"""Python documentation source: reST cleanup and reading a .deb without dpkg-deb."""

from __future__ import annotations

import io
import tarfile

from ns_dspy.corpus import pydocs


def test_clean_rst_drops_sphinx_noise():
    rst = (
        ":mod:`json` --- JSON\n====\n\n.. moduleauthor:: Bob\n.. index::\n   single: JSON\n   pair: a; b\n\n"
        ".. _json-label:\n\nProse stays.\n\n   .. index:: nested\n\n.. code-block:: python\n\n   x = 1\n"
    )
    out = pydocs.clean_rst(rst)
    assert "index" not in out and "moduleauthor" not in out and "json-label" not in out
    assert "Prose stays." in out and ".. code-block:: python\n\n   x = 1" in out and "\n\n\n" not in out


def _ar(members: dict[str, bytes]) -> bytes:
    out = b"!<arch>\n"
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_read_deb_without_dpkg_deb(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("./usr/share/doc/x/_sources/a.rst.txt", b"Alpha"), ("./usr/share/doc/x/_sources/sub/b.rst.txt", b"Beta"),
                           ("./usr/share/doc/x/other.html", b"<p>")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    deb = tmp_path / "x_1.0_all.deb"
    deb.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.gz": b"", "data.tar.gz": buf.getvalue()}))
    monkeypatch.setattr(pydocs.shutil, "which", lambda name: None)
    assert pydocs.read_deb_members(deb, "usr/share/doc/x/_sources/", ".rst.txt") == {"a.rst.txt": "Alpha", "sub/b.rst.txt": "Beta"}
