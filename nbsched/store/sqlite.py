"""Durable schedules and history in an embedded SQLite file.

    sched = nbsched.Scheduler(store="jobs.db")   # or sched.attach_store("jobs.db")
    sched.add(refresh, "every 5m")                # definition, state, runs and results are saved
    ...                                           # kernel restarts
    sched = nbsched.Scheduler(store="jobs.db")
    sched.store.listing()                         # what restore() would run - nothing runs yet
    sched.restore()                               # jobs back, with their history and results

Without a store nothing touches the disk.  What is stored is plain data - job definitions as JSON
(trigger spec, zone, policy, and the target: a function's module/qualname/source or a cell's
source), job state, one row per run attempt and the values jobs returned as JSON rows (see
:mod:`nbsched._store_codec` for how non-JSON values are converted).  Code objects are never
serialised; stored code runs only when you call :meth:`Scheduler.restore`.

Guarantees
    * **Crash safety**: a run's record is written by a background thread in group commits, a few
      milliseconds after the run ends; killing the process loses at most the runs in flight and the
      last few milliseconds.  The file (WAL mode) always opens cleanly.
    * **Several kernels, one file**: each job has a lease (owner, expiry) in the database; only
      the holder runs the job, so no fire time runs twice.  A dead holder's lease expires after
      ``lease_ttl`` seconds (default 10) and another process takes the job over.  Every process
      sees all processes' history (:meth:`SQLiteStore.history`, and merged into
      ``sched.history()`` every few seconds).
    * **Missed fire times**: after a restart, fire times that passed while the kernel was down go
      through the job's ``coalesce`` / ``misfire_grace`` policy and are recorded ``missed``; runs
      that were in flight when the process died are recorded missed too.
    * **Retention**: each job's ``history_rows``/``history_age`` and ``results_rows``/``results_age``
      apply to the file as well (compaction every minute, or :meth:`SQLiteStore.compact`).
    * A file that is not an nbsched store, is damaged, or was written by a newer nbsched raises
      :class:`StoreError` and is left untouched.  New files are created readable by their owner only;
      a file another user owns or could write is refused (stored code runs on restore()).
    * **Faults**: a value that cannot be encoded is stored as a marked placeholder; records the file
      does not take (disk full, file deleted) stay in memory, bounded, and ``flush()`` says what is
      not written (README, "Promises under faults").

Non-goals: live syncing of job *definitions* between kernels (a restore reads them), and network
file systems (SQLite's WAL mode needs a local disk).
"""
from __future__ import annotations

import atexit
import logging
import math
import os
import socket
import sqlite3
import threading
import uuid
import weakref
from collections import deque
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ._codec import CHUNK_COLUMNS, decode_chunk, json_safe, to_json
from ._schema import (MIGRATIONS, STATE_COLUMNS, STATE_JOIN, StoreError, diagnose, immediate, open_database,
                      schema_version)
from ._targets import TargetLoader, code_hash, register_target_loader, target_code, target_label
from ._leases import NO_FENCE, acquire_leases
from ._writer import MAX_UNWRITTEN_RESULTS, MAX_UNWRITTEN_ROWS, BatchWriter, RowQueue, Rows, WriterThread
from .protocol import Store
from ..clock import SystemClock, local_zone
from ..history import ResultLog, history_frame
from ..job import describe_target

if TYPE_CHECKING:
    from ..job import Job

log = logging.getLogger("nbsched")

__all__ = ["SQLiteStore", "StoreError", "open_store", "writer_identity", "register_target_loader", "TargetLoader",
           "MIGRATIONS", "schema_version", "DEFAULT_PATH"]

#: The file used when no path is given (in the working directory).
DEFAULT_PATH = "nbsched.db"


def open_store(arg: Any = None, **options: Any) -> Any:
    """The store for ``arg``: a path (str or PathLike), an existing store object (returned as is), or
    ``None`` for ``nbsched.db`` in the working directory.  ``options`` go to :class:`SQLiteStore`."""
    if arg is None:
        return SQLiteStore(Path.cwd() / DEFAULT_PATH, **options)
    if isinstance(arg, (str, os.PathLike)):
        return SQLiteStore(arg, **options)
    if not isinstance(arg, Store):
        missing = [name for name in _STORE_MEMBERS if not hasattr(arg, name)]
        raise TypeError(f"{arg!r} is not a store: it must provide what nbsched.store.Store describes "
                        f"({', '.join(_STORE_MEMBERS)}), and it lacks {', '.join(missing) or 'none of them by name'}; "
                        "or pass a path such as 'jobs.db'")
    return arg


#: What :class:`~nbsched.store.protocol.Store` asks of a store, named in :func:`open_store`'s error.
_STORE_MEMBERS = ("persist_all", "claims_free_until", "attach", "on_job_saved", "on_job_removed", "row_key",
                  "on_row", "on_result", "claim", "restore", "close")


class _Pending(threading.Event):
    result: Any = None
    error: BaseException | None = None


class SQLiteStore:
    """An SQLite file holding job definitions, state, history and results (see the module docstring).

    ``SQLiteStore(path, *, lease_ttl=10.0, renew_every=None, checkpoint_every=30.0,
    compact_every=60.0, commit_interval=0.1, durable=False)`` - ``lease_ttl``: seconds after which
    a dead process's jobs may be taken over (renewed every ``renew_every``, default ``lease_ttl/4``);
    ``durable=True`` syncs every commit to disk (survives power loss, costs more).  ``writer`` names
    this notebook in the file (default: :func:`writer_identity`).
    """

    def __init__(self, path: str | os.PathLike, *, lease_ttl: float = 10.0, renew_every: float | None = None,
                 checkpoint_every: float = 30.0, compact_every: float = 60.0, commit_interval: float = 0.1,
                 durable: bool = False, writer: str | None = None):
        if not lease_ttl > 0:
            raise ValueError(f"invalid lease_ttl {lease_ttl!r}: a number of seconds > 0 (default 10)")
        self.path = Path(os.fspath(path)).expanduser().absolute()
        self.lease_ttl = float(lease_ttl)
        self.renew_every = float(renew_every) if renew_every else self.lease_ttl / 4
        self.lease_margin = self.lease_ttl / 5  # stop running a job this long before our lease would expire
        self.checkpoint_every = float(checkpoint_every)
        self.compact_every = float(compact_every)
        self.commit_interval = float(commit_interval)
        self.durable = durable
        self.persist_all = True
        #: Who saves job definitions through this store: ``user@host:notebook`` (the notebook path from
        #: ``$JPY_SESSION_NAME``, else the main script).  restore() names stored code another writer saved.
        self.writer = writer or writer_identity()
        self._wall = SystemClock().time
        self._sched_now: Callable[[], float] = self._wall
        self._sched: Any = None
        conn = open_database(self.path, durable=durable)
        conn.close()
        from ._schema import connect

        self._fg_lock = threading.RLock()
        self._lease_lock = threading.Lock()
        self.token = uuid.uuid4().hex
        try:
            self._fg = connect(self.path, durable=durable, check_same_thread=False)
            with self._fg_lock:
                t = self._wall()
                self._valid_until = t + self.lease_ttl - self.lease_margin
                cur = self._fg.execute("INSERT INTO owners(token, pid, host, started, heartbeat, expires, fence) "
                                       "VALUES (?,?,?,?,?,?,?)", (self.token, os.getpid(), socket.gethostname(), t,
                                                                  t, t + self.lease_ttl, t + self.lease_ttl))
                self.owner_id: int = cur.lastrowid
                top = self._fg.execute("SELECT max(id) FROM history").fetchone()[0] or 0
        except sqlite3.Error as exc:  # e.g. the disk is full: no raw sqlite3 error escapes
            fg = getattr(self, "_fg", None)
            if fg is not None:
                fg.close()
            problem, todo = diagnose(exc, self.path)
            raise StoreError(f"cannot open the store {str(self.path)!r}: {problem}. {todo}") from None
        self._file_id = _file_id(self.path)
        #: Why the file cannot be written right now (None when all is well); see flush().
        self._write_problem: str | None = None
        self._dropped_rows = 0
        self._dropped_results = 0
        self._detached: str | None = None  # set when the file was replaced under us (see _check_file)
        self._fetch_cursor = self._applied_cursor = self._session_start = top
        self._rows = RowQueue()  # history rows, appended by the loop's thread
        self._ops: deque = deque()
        self._wake = threading.Event()
        self._stop_wait = threading.Event()
        self._writer_sleeping = [True]  # the writer sets it before it waits for work
        # Leases we hold: name -> we may run its fire times after this (scheduler clock).  All are valid
        # while our owner row's heartbeat is: until _valid_until (wall clock, minus a safety margin).
        self._leases: dict[str, float] = {}
        self._jobs: dict[str, "Job"] = {}  # persisted jobs registered here
        self._pending_leases: set[str] = set()
        #: Scheduler-clock time before which ``claim()`` answers True for every fire time of every job
        #: (see the protocol): every job's lease held, none fenced or pending, the heartbeat valid.  Set
        #: on the loop's thread by ``claim()`` (:meth:`_refresh_claims`); any thread that changes the
        #: leases bumps ``_lease_changes`` and then sets it to -inf, so the next fire asks ``claim()``.
        self.claims_free_until = -math.inf
        self._lease_changes = 0
        self._claims_checked = -1
        self._targets: dict[int, tuple[Any, dict, str]] = {}  # id(func) -> (func, target, code hash)
        self._history_loaded: set[str] = set()
        self._closed = False
        #: Jobs the last restore() could not rebuild: name -> reason.
        self.restore_errors: dict[str, str] = {}
        self._writer: WriterThread | None = None
        self._hot_path()
        ref = weakref.ref(self)
        self._atexit = lambda: (ref() is not None and ref().close())
        atexit.register(self._atexit)

    # ================================================================== the scheduler's hooks
    def attach(self, scheduler: Any) -> None:
        if self._sched is not None and self._sched is not scheduler:
            raise StoreError(f"the store {str(self.path)!r} already serves another scheduler: "
                             "open the file again for a second scheduler (each gets its own leases)")
        self._check_open()
        self._sched = scheduler
        self._sched_now = scheduler.clock.time
        with self._fg_lock:  # a fresh heartbeat (we hold no leases yet: nothing can have been lost)
            t = self._wall()
            self._fg.execute("UPDATE owners SET heartbeat = ?, expires = ?, fence = ? WHERE id = ?",
                             (t, t + self.lease_ttl, self._sched_now() + self.lease_ttl, self.owner_id))
            self._valid_until = t + self.lease_ttl - self.lease_margin
        if self._writer is None:
            self._writer = WriterThread(self)
            self._writer.start()

    def on_job_saved(self, job: "Job") -> None:
        if self._closed:
            return
        name = job.name
        self._jobs[name] = job
        spec_json = self._spec_json(job)
        self._ops.append(("save", job, spec_json, self._targets[id(job.func)][2]))
        if name not in self._leases:
            self._pending_leases.add(name)  # the writer takes it within milliseconds (claim() if sooner)
            self.claims_free_until = -math.inf  # its fires ask claim() until then
        self._kick()

    def on_job_removed(self, name: str) -> None:
        if self._closed:
            return
        self._jobs.pop(name, None)
        self._leases.pop(name, None)
        self._pending_leases.discard(name)
        self._ops.append(("remove", name))
        self._kick()

    def row_key(self, job_name: str) -> int:
        """The job's slot in the row queue (see :class:`~nbsched.store._writer.RowQueue`)."""
        return self._rows.slot(job_name)

    def on_row(self, slot: int, packed: bytes, aside: tuple | None) -> None:  # replaced per instance by _hot_path()
        self._rows.append(slot, packed, aside)
        self._kick()

    def on_result(self, job_name: str, run_id: int, scheduled_ts: float, value: Any) -> None:
        if self._closed:
            self._late([("result", job_name, run_id, scheduled_ts, value)], [])
            return
        copy = getattr(value, "copy", None)  # the job may mutate what it returned: keep what it was
        if callable(copy) and (isinstance(value, dict) or type(value).__module__.startswith("pandas")):
            value = copy()
        self._ops.append(("result", job_name, run_id, scheduled_ts, value))
        self._kick()

    def claim(self, job_name: str, nominal_ts: float) -> bool:  # replaced per instance by _hot_path()
        """May this process run ``job_name`` at ``nominal_ts``?  In-memory only: leases are kept
        fresh by the writer thread."""
        return self._claimable(job_name, nominal_ts)

    def _hot_path(self) -> None:
        """``on_row`` and ``claim`` as closures over locals: the scheduler calls them on every fire,
        and a closure skips the bound-method and attribute lookups (about a third of their cost)."""
        rows = self._rows
        slots_append = rows.slots.append
        asides_append = rows.asides.append
        data_extend = rows.data.extend
        sleeping = self._writer_sleeping
        wake_set = self._wake.set
        leases_get = self._leases.get
        pending = self._pending_leases
        wall = self._wall
        store = self

        def on_row(slot: int, packed: bytes, aside: tuple | None) -> None:
            # RowQueue.append inlined: the job's slot into a typed array, then the packed row's bytes
            # into one buffer (no object per fire stays behind, none is shared with the writer)
            if aside is not None:  # a rare row with an error or a worker: its values first, then ~slot
                asides_append(aside)
                slot = ~slot
            slots_append(slot)
            data_extend(packed)
            if sleeping[0]:
                wake_set()

        def claim(job_name: str, nominal_ts: float) -> bool:
            if store._lease_changes != store._claims_checked:
                store._refresh_claims()
            after = leases_get(job_name)
            if after is None:
                if job_name not in pending:
                    return False
                store._take_pending_leases(store._fg, store._fg_lock)  # added a moment ago: no waiting
                after = leases_get(job_name)
                if after is None:
                    return False
            return nominal_ts > after and wall() < store._valid_until

        self.on_row = on_row
        self.claim = claim

    def _refresh_claims(self) -> None:
        """Recompute ``claims_free_until`` after the leases changed (the loop's thread only).

        Another thread may change the leases while this runs; it bumps ``_lease_changes`` after the
        change and then sets -inf.  So the answer is kept only if the count is still the one read
        first: either this check saw the change, or the -inf is written after this value."""
        seen = self._lease_changes
        leases = self._leases
        free = -math.inf
        if not self._pending_leases and self._jobs.keys() <= leases.keys() and (
                not leases or max(leases.values()) == NO_FENCE):
            free = self._sched_now() + (self._valid_until - self._wall())
        self._claims_checked = seen
        self.claims_free_until = free
        if self._lease_changes != seen:
            self.claims_free_until = -math.inf

    def _leases_changed(self) -> None:
        """Any thread, after changing ``_leases`` or ``_valid_until`` (holding ``_lease_lock``, so no
        count is lost between two threads): fires ask ``claim()`` again."""
        self._lease_changes += 1
        self.claims_free_until = -math.inf

    def _claimable(self, job_name: str, nominal_ts: float) -> bool:
        """claim() without taking pending leases (for the writer thread, inside its transaction)."""
        after = self._leases.get(job_name)
        return after is not None and nominal_ts > after and self._wall() < self._valid_until

    def restore(self, scheduler: Any, namespace: dict | None = None) -> list["Job"]:
        """Re-register every job defined in the file (see :func:`nbsched._store_restore.restore`)."""
        from ._restore import restore

        return restore(self, scheduler, namespace)

    def close(self) -> None:
        """Write what is pending, checkpoint job state, release this process's leases, close the file."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self.on_row = lambda slot, packed, aside: self._late(  # runs ending after close
            [], self._rows.one(slot, packed, aside))
        writer = self._writer
        if writer is not None and writer.is_alive():
            writer.stopping = True
            self._stop_wait.set()
            self._wake.set()
            writer.join(timeout=30)
        elif self._rows or self._ops:
            self._late(list(self._ops), self._rows.take())
        with self._fg_lock:
            try:
                if writer is None:
                    self._fg.execute("UPDATE owners SET closed = ? WHERE id = ?", (self._wall(), self.owner_id))
            except sqlite3.Error:
                pass
            self._fg.close()

    # ================================================================== public API
    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything recorded so far is committed to the file.

        Raises :class:`StoreError` saying what is not written and why (the disk is full, the file was
        deleted, ...): those records stay in memory - at most ``MAX_UNWRITTEN_ROWS`` run records and
        ``MAX_UNWRITTEN_RESULTS`` values, the oldest dropped beyond that and counted - and are
        written as soon as the file can be written again.
        """
        self._call_writer(lambda writer: self._raise_unwritten(), timeout)

    @property
    def write_problem(self) -> str | None:
        """Why records are waiting in memory instead of the file (``None`` when everything is written)."""
        return self._write_problem

    def compact(self, vacuum: bool = False) -> dict[str, int]:
        """Apply every job's retention to the file now; ``vacuum=True`` also rewrites the file to its
        smallest size (slow on big files).  Returns how many history/results rows were deleted."""
        return self._call_writer(lambda writer: writer.compact(vacuum=vacuum), 600.0)

    def forget(self, name: str) -> None:
        """Delete the stored history and results of a job that no longer exists."""
        if name in self._jobs:
            raise StoreError(f"job {name!r} still exists: remove it first (sched.remove({name!r})), then forget it")
        self._ops.append(("forget", name))
        self.flush()

    def history(self, name: str | None = None, *, tz: str | tzinfo | None = None):
        """Every process's run history in the file (one job or all) as a DataFrame: the columns of
        ``sched.history()`` plus ``pid`` and ``host`` of the process that recorded each row."""
        import pandas as pd

        zone = self._zone(tz)
        names = dict(self._read("SELECT id, name FROM jobs"))
        owners = {oid: (pid, host) for oid, pid, host in self._read("SELECT id, pid, host FROM owners")}
        want = None
        if name is not None:
            want = next((jid for jid, n in names.items() if n == name), -1)
        records = []  # (scheduled, run_id, attempt, seq, job name, owner, row)
        for owner, *chunk in self._read(f"SELECT owner, {CHUNK_COLUMNS} FROM history ORDER BY id"):
            job_ids, rows = decode_chunk(*chunk)
            for jid, row in zip(job_ids, rows):
                if want is None or jid == want:
                    records.append((row[1], row[0], row[6], len(records), jid, owner, row))
        records.sort()
        # one group per row, already in the frame's order, so the pid/host columns line up
        frame = history_frame(((names.get(r[4], f"<job {r[4]}>"), (r[6],)) for r in records), zone)
        frame["pid"] = pd.array([owners.get(r[5], (None, None))[0] for r in records], dtype="Int64")
        frame["host"] = pd.Series([owners.get(r[5], (None, None))[1] for r in records], dtype="string")
        return frame

    def results(self, name: str, *, tz: str | tzinfo | None = None):
        """Every process's stored results of job ``name`` as one DataFrame (like ``sched.results``)."""
        import json

        import pandas as pd

        rows = self._read("SELECT run_id, scheduled, frame, data, owner FROM results WHERE job = "
                          "(SELECT id FROM jobs WHERE name = ?) ORDER BY id", (name,))
        log = ResultLog(max_rows=None)
        for run_id, scheduled, frame, value in _result_chunks(rows, json.loads, pd):
            log.append(run_id, scheduled, value)
        return log.frame(self._zone(tz))

    def listing(self):
        """The jobs in the file and what they would run - read only, nothing is executed.

        Columns: name, trigger, kind, target, source (the full stored code: what restore() executes
        when the target cannot be imported, and always for cells), code_hash (a fingerprint of the stored
        target; restore() names jobs whose hash this notebook did not write), saved_by (the writer that
        last saved the definition), paused, finished, runs, next_fire, held_by (pid of the process whose
        lease is live, if any).  ``store.code(name)`` returns one job's code as text.
        """
        import json

        import pandas as pd

        from ..triggers import trigger_from_dict

        now = self._wall()
        rows = self._read(f"SELECT j.name, j.spec, {STATE_COLUMNS}, "
                          "(SELECT o.pid FROM leases l JOIN owners o ON o.id = l.owner WHERE l.job = j.name "
                          "AND l.released IS NULL "
                          "AND o.closed IS NULL AND o.expires > ?), "
                          "(SELECT c.writer FROM code_writes c WHERE c.job = j.name ORDER BY c.at DESC LIMIT 1) "
                          f"FROM jobs j {STATE_JOIN} WHERE j.spec IS NOT NULL ORDER BY j.id",
                          (now,))
        out = []
        for name, spec_json, paused, finished, next_ts, runs, holder, saved_by in rows:
            spec = json.loads(spec_json)
            target = spec.get("target") or {}
            try:
                trigger = trigger_from_dict(spec["trigger"]).describe()
            except Exception as exc:  # shown, not raised: the listing is for looking
                trigger = f"<unreadable trigger: {exc}>"
            out.append({"name": name, "trigger": trigger, "kind": target.get("kind"), "target": target_label(target),
                        "source": target_code(target), "code_hash": code_hash(target), "saved_by": saved_by,
                        "paused": bool(paused), "finished": bool(finished),
                        "runs": int(runs), "next_fire": next_ts, "held_by": holder})
        frame = pd.DataFrame(out, columns=["name", "trigger", "kind", "target", "source", "code_hash", "saved_by",
                                           "paused", "finished", "runs", "next_fire", "held_by"])
        next_fire = pd.to_datetime(frame["next_fire"].astype("float64"), unit="s", utc=True)
        frame["next_fire"] = next_fire.dt.tz_convert(self._zone(None))
        frame["held_by"] = frame["held_by"].astype("Int64")
        return frame

    def code(self, name: str) -> str:
        """The full stored code of job ``name`` - exactly what restore() would execute for it."""
        import json

        row = self._read("SELECT spec FROM jobs WHERE name = ? AND spec IS NOT NULL", (name,))
        if not row:
            names = [r[0] for r in self._read("SELECT name FROM jobs WHERE spec IS NOT NULL ORDER BY id")]
            raise StoreError(f"no job named {name!r} in the store {str(self.path)!r}; its jobs: "
                             f"{', '.join(map(repr, names)) or 'none'}")
        return target_code(json.loads(row[0][0]).get("target"))

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "SQLiteStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._jobs)} jobs, {len(self._leases)} leases held"
        if self._write_problem is not None and not self._closed:
            state += f"; NOT WRITING: {self._write_problem}"
        return f"<nbsched.SQLiteStore {str(self.path)!r} ({state})>"

    # ================================================================== internals
    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store {str(self.path)!r} is closed; open it again with "
                             "nbsched.store.open_store(path) or sched.attach_store(path)")

    def _kick(self) -> None:
        if self._writer_sleeping[0]:
            self._wake.set()

    def _zone(self, tz: Any) -> tzinfo:
        from ..clock import resolve_zone

        if tz is not None:
            return resolve_zone(tz)
        return self._sched.tz if self._sched is not None else local_zone()

    def _spec_json(self, job: "Job") -> str:
        func = job.func
        cached = self._targets.get(id(func))
        if cached is None or cached[0] is not func:
            target = describe_target(func)  # inspect.getsource is slow: once per function
            cached = (func, target, code_hash(target))
            if len(self._targets) > 10_000:
                self._targets.clear()
            self._targets[id(func)] = cached
        spec = {"name": job.name, "trigger": job.trigger.to_dict(), "policy": job.policy.to_dict(),
                "target": cached[1], "paused": job.paused, "meta": job.meta}
        try:
            return to_json(spec)
        except ValueError:  # e.g. a 5,000-digit int in meta: that value is lost, not the job
            spec["meta"] = {str(k): json_safe(v) for k, v in job.meta.items()}
            return to_json(spec)

    def _take_pending_leases(self, conn: sqlite3.Connection, conn_lock: Any) -> None:
        """Take the leases of newly saved jobs (on the writer's connection, or ours from claim())."""
        with self._lease_lock, conn_lock:
            pending = list(self._pending_leases)
            names = [n for n in pending if n in self._jobs]
            if not names:
                self._pending_leases.difference_update(pending)
                return
            t = self._wall()
            try:
                with immediate(conn):
                    got = acquire_leases(conn, self, names, t)
            except sqlite3.Error as exc:
                import logging

                logging.getLogger("nbsched").error("nbsched: taking the leases of %d jobs in %s failed (%s); "
                                                   "retrying at the next lease renewal", len(names), self.path, exc)
                return
            for name, valid_from in got.items():
                if name in self._jobs:
                    self._leases[name] = valid_from
            # only now: claim() treats "neither held nor pending" as "another process has it"
            self._pending_leases.difference_update(pending)
            self._leases_changed()

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        self._check_open()
        with self._fg_lock:
            try:
                return self._fg.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"reading the store {str(self.path)!r} failed: {exc}. If the file is damaged, move "
                                 "it aside and start a new store (`sqlite3 FILE .recover` can salvage rows)") from None

    def _call_writer(self, fn: Callable[[BatchWriter], Any], timeout: float) -> Any:
        self._check_open()
        writer = self._writer
        if writer is None or not writer.is_alive():
            with self._fg_lock:
                batch = BatchWriter(self, self._fg)
                batch.write(list(self._ops_drain()), self._rows.take())
                return fn(batch)
        done = _Pending()
        self._ops.append(("call", fn, done))
        self._wake.set()
        if not done.wait(timeout):
            raise StoreError(f"the store {str(self.path)!r} did not answer within {timeout:g}s: the disk may be "
                             "slow or locked by another program")
        if done.error is not None:
            raise done.error
        return done.result

    # ------------------------------------------------------------ records the file did not take
    def _unwritten_counts(self) -> tuple[int, int]:
        results = sum(1 for op in list(self._ops) if op[0] == "result")
        return len(self._rows), results

    def _raise_unwritten(self) -> None:
        problem = self._write_problem
        if problem is None:
            return
        rows, results = self._unwritten_counts()
        dropped = ""
        if self._dropped_rows or self._dropped_results:
            dropped = (f"; {self._dropped_rows} older run records and {self._dropped_results} older values were "
                       f"dropped to stay within {MAX_UNWRITTEN_ROWS} / {MAX_UNWRITTEN_RESULTS}")
        raise StoreError(f"not written to the store {str(self.path)!r}: {rows} run records and {results} returned "
                         f"values, because {problem}. They are kept in memory and written when the file can be "
                         f"written again{dropped}")

    def _set_write_problem(self, exc: BaseException) -> None:
        problem, todo = diagnose(exc, self.path)
        text = f"{problem}; {todo[0].lower()}{todo[1:]}" if todo else problem
        if text != self._write_problem:
            self._write_problem = text
            rows, results = self._unwritten_counts()
            log.error("nbsched: cannot write to the store %s: %s. %d run records and %d values are kept in "
                      "memory and retried; %s", self.path, problem, rows, results, todo)

    def _hold_unwritten(self, exc: BaseException, rows: Rows, ops: list) -> None:
        """Writer thread: a batch failed - put it back in front of newer records, within the bounds."""
        if not isinstance(exc, (sqlite3.Error, OSError)):
            log.error("nbsched: writing to the store %s failed unexpectedly", self.path, exc_info=exc)
        self._rows.put_back(rows)
        self._ops.extendleft(reversed(ops))
        over = len(self._rows) - MAX_UNWRITTEN_ROWS
        if over > 0:
            self._rows.drop_oldest(over)
            self._dropped_rows += over
        results = [i for i, op in enumerate(self._ops) if op[0] == "result"]
        over = len(results) - MAX_UNWRITTEN_RESULTS
        if over > 0:
            drop = set(results[:over])
            kept = [op for i, op in enumerate(list(self._ops)) if i not in drop]
            self._ops.clear()
            self._ops.extend(kept)
            self._dropped_results += over
        self._set_write_problem(exc)

    def _write_recovered(self) -> None:
        if self._write_problem is not None:
            log.warning("nbsched: the store %s can be written again; the records kept in memory are written%s",
                        self.path, f" ({self._dropped_rows} run records and {self._dropped_results} values "
                                   "were dropped meanwhile)" if self._dropped_rows or self._dropped_results else "")
        self._write_problem = None

    def _give_up_unwritten(self) -> None:
        """Closing while the file still cannot be written: say exactly what is lost."""
        rows, results = self._unwritten_counts()
        log.error("nbsched: closing the store %s: %d run records and %d values could not be written (%s) and are "
                  "lost", self.path, rows + self._dropped_rows, results + self._dropped_results, self._write_problem)
        self._rows.take()
        self._ops.clear()

    def _check_file(self, writer: BatchWriter) -> None:
        """Writer thread, every lease renewal: is the file we write still the file at ``path``?

        Deleted or replaced while attached, every later row would go to a file nobody can open again.
        This process then stops writing and says so (log error, :attr:`write_problem`, ``flush()``
        raises); its records stay in memory (bounded).  It does not recreate the file: the old
        ``-wal`` file next to it belongs to the deleted database, and another process may still be
        writing to it - a new database beside it would read those pages as its own.
        """
        if self._detached is not None:
            return
        now_id = _file_id(self.path)
        if now_id == self._file_id:
            return
        self._detached = (f"the store file was {'deleted' if now_id is None else 'replaced by another file'} "
                          "while in use, so this process stopped writing to it (records since then are kept in "
                          "memory only). Attach a store again, e.g. sched.attach_store(path), to go on persisting")
        self._set_write_problem(StoreError(self._detached))

    def _ops_drain(self):
        while self._ops:
            yield self._ops.popleft()

    def _late(self, ops: list, rows: Rows) -> None:
        """Records that arrive after close (runs cancelled by shutdown): written synchronously."""
        from ._schema import connect

        try:
            conn = connect(self.path, durable=self.durable)
            try:
                BatchWriter(self, conn).write([op for op in ops if op[0] != "call"], rows)
            finally:
                conn.close()
        except sqlite3.Error as exc:
            import logging

            logging.getLogger("nbsched").error("nbsched: could not record %d late rows in %s: %s", len(rows),
                                               self.path, exc)

    def _applied(self, upto: int) -> None:
        """On the loop, after the scheduler merged other processes' rows up to chunk ``upto``."""
        self._applied_cursor = max(self._applied_cursor, upto)


def writer_identity() -> str:
    """``user@host:notebook`` - the notebook path from ``$JPY_SESSION_NAME`` (set by Jupyter for the
    kernel of a notebook), else the main script's path, else ``<interactive>``."""
    import sys

    notebook = os.environ.get("JPY_SESSION_NAME")
    if not notebook:
        main = sys.modules.get("__main__")
        notebook = getattr(main, "__file__", None) or "<interactive>"
    try:
        import getpass

        user = getpass.getuser()
    except Exception:
        user = str(getattr(os, "getuid", lambda: "?")())
    return f"{user}@{socket.gethostname()}:{notebook}"


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _result_chunks(rows: list[tuple], loads: Callable[[str], Any], pd: Any):
    """(run_id, scheduled, frame, data, owner) rows in id order -> (run_id, scheduled, is_frame, value)."""
    i, n = 0, len(rows)
    while i < n:
        run_id, scheduled, frame, data, owner = rows[i]
        if not frame:
            yield run_id, scheduled, False, loads(data)
            i += 1
            continue
        j = i
        records = []
        while j < n and rows[j][2] and rows[j][0] == run_id and rows[j][4] == owner and rows[j][1] == scheduled:
            records.append(loads(rows[j][3]))
            j += 1
        yield run_id, scheduled, True, pd.DataFrame.from_records(records)
        i = j
