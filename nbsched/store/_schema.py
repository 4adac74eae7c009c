"""The store's file: checking it before use, creating it privately, and migrating its schema.

Checks happen in an order that never changes a file we refuse: the SQLite header is read with plain
file I/O first (magic string, application id, schema version all live in the first 100 bytes), then a
read-only connection runs ``PRAGMA quick_check``.  Only a file that passes is opened read-write.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` holds one function per
version step (``MIGRATIONS[0]`` creates version 1 from an empty file, ``MIGRATIONS[1]`` would turn
version 1 into 2, ...).  A file newer than this nbsched knows is refused, never downgraded.
"""
from __future__ import annotations

import errno
import os
import re
import sqlite3
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from ..errors import StoreError

__all__ = ["StoreError", "MIGRATIONS", "APPLICATION_ID", "schema_version", "open_database", "OUTCOME_CODES", "REASON_CODES",
           "STATE_COLUMNS", "STATE_JOIN", "immediate"]

#: ``PRAGMA application_id`` of nbsched stores ("nbsd"): tells our files from other SQLite files.
APPLICATION_ID = 0x6E627364
_MAGIC = b"SQLite format 3\x00"

#: Stable integer codes for outcomes in the ``history.outcome`` column (never renumber).
OUTCOME_CODES = {"success": 0, "error": 1, "missed": 2, "skipped": 3, "timeout": 4, "cancelled": 5, "interrupted": 6,
                 "upstream_failed": 7, "clock_step": 8}
#: Stable integer codes for why a run happened, in the ``history.reason`` column (never renumber).
REASON_CODES = {"schedule": 0, "manual": 1, "upstream": 2, "backfill": 3, "catchup": 4}




def _v1(conn: sqlite3.Connection) -> None:
    """Version 1: owners, job definitions, history chunks, results, leases.

    Run records are stored in *chunks*, one per commit batch, column by column (see
    :mod:`nbsched._store_codec`): binding each record as an SQL row costs microseconds, packing a
    column is C-speed - the scheduler fires 10,000 jobs a second.  Results are JSON rows (rarer).
    Neither has a per-job index: an index keyed by job costs a random page write per row once the
    file is big.  Per-job reads scan; retention deletes by scheduled time (see the writer).
    """
    script = """
        CREATE TABLE owners (                -- one row per process (per store opened)
            id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, pid INTEGER, host TEXT,
            started REAL, heartbeat REAL,
            expires REAL,                    -- wall clock: its leases are valid until then
            fence REAL,                      -- scheduler clock: it runs no fire time after this
            closed REAL);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
            spec TEXT,                       -- JSON definition, NULL once removed (history is kept)
            paused INTEGER NOT NULL DEFAULT 0, finished INTEGER NOT NULL DEFAULT 0,
            next_ts REAL, runs INTEGER NOT NULL DEFAULT 0, saved_by INTEGER, saved_at REAL);
        CREATE TABLE history (               -- run records, a chunk of n per row, by column
            id INTEGER PRIMARY KEY, owner INTEGER NOT NULL, n INTEGER NOT NULL,
            first_scheduled REAL NOT NULL, last_scheduled REAL NOT NULL,
            job BLOB NOT NULL,               -- int32 job ids (jobs.id)
            run_id BLOB NOT NULL,            -- int64
            scheduled BLOB NOT NULL, started BLOB NOT NULL, finished BLOB NOT NULL,
            lateness BLOB NOT NULL,          -- float64 seconds, NaN when there is no time
            outcome BLOB NOT NULL,           -- uint8 outcome codes
            attempt BLOB NOT NULL,           -- int32
            errors TEXT);                    -- JSON, index to error type, message and traceback
        CREATE INDEX history_first ON history(first_scheduled);
        CREATE TABLE results (
            id INTEGER PRIMARY KEY, job INTEGER NOT NULL, owner INTEGER NOT NULL,
            run_id INTEGER NOT NULL, scheduled REAL NOT NULL,
            frame INTEGER NOT NULL,          -- 1 for a row of a returned DataFrame, 0 for a dict, Series or scalar
            data TEXT NOT NULL);             -- JSON object, column to value
        CREATE TABLE leases (
            job TEXT PRIMARY KEY, owner INTEGER NOT NULL,
            released REAL);                  -- scheduler clock, when the owner gave the job up
    """
    _execute_script(conn, script)


def _v2(conn: sqlite3.Connection) -> None:
    """Version 2: why each run happened (``reason`` codes, one byte per row; NULL = all ``schedule``)."""
    _execute_script(conn, "ALTER TABLE history ADD COLUMN reason BLOB")


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the caller's transaction (``executescript`` would COMMIT it)."""
    text = re.sub(r"--[^\n]*", "", script)
    for statement in text.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v3(conn: sqlite3.Connection) -> None:
    """Version 3: which code each writer (a notebook or script, see ``SQLiteStore.writer``) last saved
    for each job, so ``restore()`` can name stored code that this notebook did not write."""
    _execute_script(conn, """
        CREATE TABLE IF NOT EXISTS code_writes (
            job TEXT NOT NULL, writer TEXT NOT NULL,
            code_hash TEXT NOT NULL,         -- sha256 of the stored target (see _targets.code_hash)
            owner INTEGER, at REAL,
            PRIMARY KEY (job, writer));
    """)


def _v4(conn: sqlite3.Connection) -> None:
    """Version 4: which cluster worker ran each record (``executor='dask'``), as JSON {index: address}
    per chunk, NULL when every record of the chunk ran on this machine (older chunks read as NULL)."""
    conn.execute("ALTER TABLE history ADD COLUMN workers TEXT")


def _v5(conn: sqlite3.Connection) -> None:
    """Version 5: each job's live state (paused, finished, next fire time, run count) in a narrow table
    of its own.  The checkpoint rewrites it for every job every ``checkpoint_every`` seconds; in the
    ``jobs`` row that meant rewriting the job's whole definition too (hundreds of bytes of JSON and
    source): an UPDATE of 10,000 such rows wrote 8.2 MB of WAL, of the narrow rows 0.19 MB, and a
    whole checkpoint of 10,000 jobs takes the writer about half the time it did.  The ``jobs`` columns of the same names are no longer read or written."""
    _execute_script(conn, """
        CREATE TABLE job_state (
            id INTEGER PRIMARY KEY,          -- jobs.id
            paused INTEGER NOT NULL DEFAULT 0, finished INTEGER NOT NULL DEFAULT 0,
            next_ts REAL, runs INTEGER NOT NULL DEFAULT 0);
        INSERT INTO job_state(id, paused, finished, next_ts, runs)
            SELECT id, paused, finished, next_ts, runs FROM jobs;
    """)


#: One function per schema step; the file's ``user_version`` says how many have been applied.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4, _v5]

#: A job's live state joined to its row (``jobs`` aliased ``j``): paused, finished, next_ts, runs.
STATE_COLUMNS = "COALESCE(s.paused, 0), COALESCE(s.finished, 0), s.next_ts, COALESCE(s.runs, 0)"
STATE_JOIN = "LEFT JOIN job_state s ON s.id = j.id"


def schema_version() -> int:
    """The schema version this nbsched writes (and the newest it can read)."""
    return len(MIGRATIONS)


def diagnose(exc: BaseException, path: Path) -> tuple[str, str]:
    """(what is wrong, what to do) for an error from the file system or SQLite while using ``path``."""
    text = str(exc)
    if isinstance(exc, StoreError):  # already says what is wrong and what to do
        return text, ""
    low = text.lower()
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC or "disk is full" in low or "no space" in low:
        return f"the disk is full ({text})", "Free some space on that disk or pass a path on another disk"
    if code == errno.EROFS or "read-only file system" in low or _read_only_fs(path):
        return ("it is on a read-only file system",
                "Remount the file system read-write, or pass a path on a writable disk")
    if code in (errno.EACCES, errno.EPERM) or "readonly database" in low or "permission denied" in low:
        return (f"it cannot be written ({text}): check the permissions of the file and its folder",
                "Fix the permissions or pass another path")
    return text, "Check the disk and the path"


def _read_only_fs(path: Path) -> bool:
    for probe in (path, path.parent):
        try:
            return bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def _fail(path: Path, problem: str, todo: str) -> StoreError:
    return StoreError(f"cannot use {str(path)!r} as an nbsched store: {problem}. {todo} (the file was not changed)")


def _check_header(path: Path) -> tuple[bool, int]:
    """(is_empty, user_version) from the first 100 bytes; raises StoreError for foreign/newer files."""
    try:
        with open(path, "rb") as fh:
            header = fh.read(100)
    except IsADirectoryError:
        raise StoreError(f"cannot use {str(path)!r} as an nbsched store: it is a directory. "
                         "Pass a file path such as 'jobs.db'") from None
    except OSError as exc:
        raise StoreError(f"cannot read the store file {str(path)!r}: {exc.strerror}. "
                         "Check the path and its permissions") from None
    if not header:
        return True, 0
    if len(header) < 100 or not header.startswith(_MAGIC):
        raise _fail(path, f"it is not an SQLite database (it starts with {header[:16]!r})",
                    "Pass the path of an nbsched store or of a file that does not exist yet")
    version = int.from_bytes(header[60:64], "big", signed=True)
    app_id = int.from_bytes(header[68:72], "big", signed=True)
    if app_id not in (0, APPLICATION_ID):
        raise _fail(path, f"it is an SQLite database of another application (application_id {app_id:#x})",
                    "Pass a different path for nbsched's store")
    if app_id == APPLICATION_ID and version > schema_version():
        raise _fail(path, f"it was written by a newer nbsched (schema version {version}; this nbsched reads "
                          f"up to {schema_version()})",
                    "Upgrade nbsched (pip install -U nbsched) or pass another path")
    return False, version


def _probe(path: Path) -> list[str]:
    """Read-only integrity probe; returns the table names.  Never writes the database file."""
    siblings = {s: os.path.exists(str(path) + s) for s in ("-wal", "-shm")}
    uri = "file:" + quote(str(path)) + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        try:
            verdict = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        verdict, tables = str(exc), []
    finally:
        _drop_created_siblings(path, siblings)
    if verdict != "ok":
        verdict = "; ".join(line.strip() for line in str(verdict).splitlines() if line.strip())
        raise _fail(path, f"the database is damaged ({verdict})",
                    "Move it aside and start a new store (restore a backup if you have one); "
                    "`sqlite3 FILE .recover` can salvage rows")
    return tables


def _drop_created_siblings(path: Path, existed: dict[str, bool]) -> None:
    # A read-only connection on a WAL file leaves an empty -wal and an -shm behind; remove what we
    # created (only when the -wal is empty, i.e. nobody wrote through it meanwhile).
    wal = str(path) + "-wal"
    try:
        if not existed["-wal"] and os.path.exists(wal) and os.path.getsize(wal) == 0:
            os.remove(wal)
            if not existed["-shm"] and os.path.exists(str(path) + "-shm"):
                os.remove(str(path) + "-shm")
    except OSError:
        pass


def _create_private(path: Path) -> None:
    """Create an empty file readable by its owner only (SQLite gives -wal/-shm the same mode)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process created it first: it is checked like any existing file
    except FileNotFoundError:
        raise StoreError(f"cannot create the store {str(path)!r}: the folder {str(path.parent)!r} does not exist. "
                         "Create it first or pass another path") from None
    except PermissionError:
        raise StoreError(f"cannot create the store {str(path)!r}: permission denied. "
                         "Pass a path in a folder you can write to") from None
    except OSError as exc:  # read-only file system, disk full, ...
        problem, todo = diagnose(exc, path)
        raise StoreError(f"cannot create the store {str(path)!r}: {problem}. {todo}") from None
    os.close(fd)


def _owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_ownership(path: Path) -> None:
    """Refuse a store another user could have written (as ssh does for its keys).

    The file - and its ``-wal``/``-shm`` siblings, when they exist - must belong to the current user
    and be writable by nobody else; a symbolic link is followed only to a file of the current user.
    Stored code runs on :meth:`Scheduler.restore`: a file someone else can write is their code.
    """
    getuid = getattr(os, "getuid", None)
    if getuid is None:  # not a POSIX system: no owners to compare
        return
    uid = getuid()
    for suffix in ("", "-wal", "-shm"):
        name = Path(str(path) + suffix)
        try:
            link = os.lstat(name)
        except FileNotFoundError:
            continue
        shown = repr(str(name))
        if stat.S_ISLNK(link.st_mode):
            if suffix:
                raise StoreError(f"refusing the store {str(path)!r}: its {suffix} file is a symbolic link "
                                 f"(to {os.path.realpath(name)!r}). Remove the link; SQLite recreates the file")
            try:
                info = os.stat(name)
            except FileNotFoundError:
                raise StoreError(f"refusing the store {shown}: it is a symbolic link to a missing file "
                                 f"({os.path.realpath(name)!r}). Remove the link or pass another path") from None
            if link.st_uid != uid:
                raise StoreError(f"refusing the store {shown}: it is a symbolic link owned by "
                                 f"{_owner_name(link.st_uid)}, not by you ({_owner_name(uid)}); it could point "
                                 "anywhere. Pass a path of your own")
            shown = f"{shown} (a symbolic link to {os.path.realpath(name)!r})"
        else:
            info = link
        if info.st_uid != uid:
            raise StoreError(f"refusing the store {shown}: the file belongs to {_owner_name(info.st_uid)}, not to "
                             f"you ({_owner_name(uid)}); its stored code would run as you on restore(). "
                             "Pass a path of your own")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise StoreError(f"refusing the store {shown}: other users can write to it (mode "
                             f"{stat.S_IMODE(info.st_mode):#o}); its stored code would run as you on restore(). "
                             f"If you trust its contents, run `chmod go-w {str(name)!r}`, then open it again")


def connect(path: Path, *, durable: bool = False, check_same_thread: bool = True) -> sqlite3.Connection:
    """A read-write connection with nbsched's settings (WAL, autocommit mode: explicit BEGIN/COMMIT)."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=check_same_thread, timeout=10.0)
    conn.execute("PRAGMA synchronous = " + ("FULL" if durable else "NORMAL"))
    conn.execute("PRAGMA foreign_keys = OFF")
    return conn


def open_database(path: Path, *, durable: bool = False) -> sqlite3.Connection:
    """Check ``path`` (creating it if missing), migrate it to :func:`schema_version`, return a connection.

    Raises :class:`StoreError` - leaving the file untouched - for a non-SQLite file, another
    application's database, a damaged file or a newer schema.
    """
    path = Path(path)
    if not os.path.lexists(path):
        _create_private(path)
    check_ownership(path)
    empty, version = _check_header(path)
    if not empty and _read_only_fs(path):
        raise _fail(path, "it is on a read-only file system, so nbsched cannot record runs in it",
                    "Remount the file system read-write, or copy the file to a writable disk and pass that path")
    if not empty:
        tables = _probe(path)
        if version == 0 and tables:
            shown = ", ".join(sorted(tables)[:8])
            raise _fail(path, f"it is an SQLite database but not an nbsched store (tables: {shown})",
                        "Pass a different path for nbsched's store")
    try:
        conn = connect(path, durable=durable)
    except sqlite3.Error as exc:
        problem, todo = diagnose(exc, path)
        raise StoreError(f"cannot open the store {str(path)!r}: {problem}. {todo}") from None
    try:
        if empty:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect before the first table
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot use {str(path)!r} as an nbsched store: SQLite refused WAL mode "
                             f"(journal_mode is {mode!r}; network file systems do not support it). "
                             "Put the store on a local disk")
        _migrate(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        problem, todo = diagnose(exc, path)
        raise StoreError(f"cannot use {str(path)!r} as an nbsched store: {problem}. {todo}") from None
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection):
    """One write transaction: ``BEGIN IMMEDIATE`` (the write lock at once), then COMMIT; ROLLBACK and
    re-raise if anything in it (or the COMMIT) fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    target = schema_version()
    if conn.execute("PRAGMA user_version").fetchone()[0] == target:
        return
    with immediate(conn):  # re-read under the write lock: another process may have migrated
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > target:
            raise _fail(path, f"it was written by a newer nbsched (schema version {current}; this nbsched reads "
                              f"up to {target})", "Upgrade nbsched (pip install -U nbsched) or pass another path")
        for step in MIGRATIONS[current:]:
            step(conn)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {target}")


def is_private(path: Path) -> bool:
    """True when no one but the owner may read or write ``path``."""
    return not (os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO))
