"""Where a study lives: a SQLite file by default, or any optuna RDB URL that several workers share.

``--storage runs/g270m.sweep.sqlite`` (a path) or ``sqlite:///...``: one machine, one or a few workers (the
file is put in WAL mode and writers wait up to a minute for each other). ``postgresql://USER@HOST:PORT/DB``
(driver: ``pip install "psycopg[binary]"``) or ``mysql+pymysql://USER@HOST/DB`` (``pip install pymysql``):
any number of workers on any number of machines. Every problem - a malformed URL, an unknown backend, a
missing driver, a server that does not answer, a file that is not a study database - is one
:class:`~ns_dspy.errors.StudyError` line, raised before any trial. Passwords never appear in messages.

Heartbeats are on: a worker that dies without a word (killed, machine lost) leaves a RUNNING trial that
another worker marks FAIL once it has missed its heartbeats for :data:`GRACE_PERIOD` seconds.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import warnings
from pathlib import Path

from ..errors import StudyError

__all__ = ["storage_url", "open_storage", "masked_storage_url", "retry_schema_race", "HEARTBEAT_INTERVAL", "GRACE_PERIOD"]

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120
_FORMS = "a file path, sqlite:///FILE, postgresql://USER@HOST:PORT/DB or mysql+pymysql://USER@HOST:PORT/DB"
_DRIVERS = {"postgresql": 'pip install "psycopg[binary]" (or pip install -e ".[postgres]")',
            "mysql": "pip install pymysql, and write mysql+pymysql://..."}


def storage_url(text: str) -> str:
    """A storage argument as an RDB URL: a path becomes ``sqlite:///ABSOLUTE_PATH``."""
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        raise StudyError(f"--storage {text} is a directory: give a file, e.g. {path}/sweep.sqlite")
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def masked_storage_url(url: str) -> str:
    """``url`` with its password hidden (for messages and provenance)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # malformed: drop whatever user info it has
        return re.sub(r"//[^/]*@", "//", url)


def _check_sqlite(path: str | None, shown: str) -> None:
    if not path or path == ":memory:":
        raise StudyError(f"storage {shown} is in memory: a study must live in a file to be resumed or shared")
    file = Path(path)
    if not file.parent.is_dir():
        raise StudyError(f"storage {shown}: directory {file.parent} does not exist")
    if file.is_dir():
        raise StudyError(f"storage {shown} is a directory: give a file")
    if not file.exists() or file.stat().st_size == 0:
        from ..paths import check_writable

        check_writable(file, "--storage")  # a new study's file: one line now, not after the first trial
        return
    try:
        con = sqlite3.connect(f"file:{file}?mode=rw", uri=True, timeout=60)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "studies" not in tables:
                raise StudyError(f"{file} is not an optuna study database (it holds {', '.join(sorted(tables)[:3])}"
                                 "): choose another --storage")
            try:
                con.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer; kept by the file
            except sqlite3.OperationalError as err:
                # another worker is writing (changing the journal mode needs the file to itself): the file is
                # a database in use, not a bad one; WAL is best effort and the next opener sets it
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
        finally:
            con.close()
    except sqlite3.DatabaseError as err:
        raise StudyError(f"{file} is not a SQLite database ({err}): choose another --storage") from None


def _first_line(err: BaseException) -> str:
    inner = getattr(err, "orig", None) or err
    text = " ".join(str(inner).split("\n")[0].split())
    return text or type(inner).__name__


def open_storage(text: str):
    """An ``optuna.storages.RDBStorage`` for ``text`` (a path or URL), reachable and holding optuna's tables."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    url = storage_url(text)
    try:
        parsed = make_url(url)
    except Exception:
        raise StudyError(f"malformed storage URL {masked_storage_url(url)!r}: write {_FORMS}") from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "mysql"):
        raise StudyError(f"unsupported storage {shown}: write {_FORMS}")
    try:
        parsed.get_dialect().import_dbapi()
    except (ImportError, sa.exc.NoSuchModuleError) as err:
        hint = _DRIVERS.get(backend, "install its driver")
        raise StudyError(f"storage {shown} needs a database driver ({_first_line(err)}): {hint}") from None
    if backend == "sqlite":
        _check_sqlite(parsed.database, shown)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        if not parsed.database:
            raise StudyError(f"storage {shown} names no database: write {_FORMS}")
        engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    import optuna

    def create():
        with warnings.catch_warnings():  # heartbeats are "experimental" in optuna, stable in practice
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_INTERVAL,
                                              grace_period=GRACE_PERIOD)

    try:
        return retry_schema_race(create)
    except (sa.exc.SQLAlchemyError, ImportError) as err:
        raise StudyError(f"cannot open study storage {shown}: {_first_line(err)}") from None
    except RuntimeError as err:  # e.g. a schema made by another optuna version
        raise StudyError(f"study storage {shown}: {_first_line(err)}") from None


def retry_schema_race(create, attempts: int = 5):
    """``create()``, again when it lost a race to create the same tables: workers starting together on a new
    database both create optuna's tables and stamp its schema version, and the loser fails with a duplicate-key,
    unique-constraint or already-exists error (PostgreSQL and SQLite both, measured in tests/sweep). The next
    attempt finds the tables made."""
    import sqlalchemy as sa

    for attempt in range(attempts):
        try:
            return create()
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError) as err:
            text = str(getattr(err, "orig", err)).lower()
            if attempt == attempts - 1 or not any(w in text for w in ("duplicate", "already exists", "unique")):
                raise
            log.debug("lost a race creating tables (%s); again", _first_line(err))
            time.sleep(0.2 * (attempt + 1))
