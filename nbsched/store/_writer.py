"""The store's writer thread: group commits, leases, job-state checkpoints, compaction.

The scheduler's hot path only appends a row to the :class:`RowQueue` (``store.on_row``) and, while
``store.claims_free_until`` is behind it, reads a dict (``store.claim``).  Everything that touches
the disk happens here, on one thread with its own connection:

* **Group commit.**  The thread wakes when the first item arrives and writes everything that
  accumulated in one transaction - at once when it was idle, otherwise no sooner than
  ``commit_interval`` (100 ms) after its previous commit, so under load each commit carries many
  records, packed into one history chunk.  In WAL mode with ``synchronous=NORMAL`` a commit
  survives the process being killed; a power cut may lose the last commits (``durable=True``).
* **Leases**: one heartbeat statement every ``renew_every`` seconds keeps all of this process's
  leases alive (they live as long as its owner row's ``expires``); jobs it wants but another process
  holds are taken over once that process is gone: closed, expired, or dead (same host, no pid).
* **Checkpoints** write each job's next fire time and run count every ``checkpoint_every`` seconds
  and on close (the fire-by-fire changes are not written one by one; a restore completes them from
  the history rows).
* **Compaction** deletes history and results rows beyond each job's retention every
  ``compact_every`` seconds and returns free pages to the file system now and then.
* **Merging**: rows other processes wrote are fetched and appended to this scheduler's history.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from array import array
from collections import deque
from itertools import repeat
from operator import call
from time import sleep
from typing import TYPE_CHECKING, Any

from ._codec import (CHUNK_COLUMNS, MISSED_CODE, chunk_times, decode_chunk, encode_chunk, encode_joined,
                     encode_value_rows, to_json, unencodable)
from ._leases import acquire_leases
from ._schema import StoreError, connect, immediate
from ..clock import perf_counter
from ..history import ROW_BYTES

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

log = logging.getLogger("nbsched")

_INSERT_CHUNK = ("INSERT INTO history(owner, n, first_scheduled, last_scheduled, job, run_id, scheduled, started, "
                 "finished, lateness, outcome, attempt, errors, reason, workers) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
_CHUNK_ROWS = 20_000



class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NULL_LOCK = _NullLock()


def _drain(queue: deque) -> list:
    """Everything in ``queue`` now (others only append; the loop runs in C)."""
    return list(map(call, repeat(queue.popleft, len(queue))))


class Rows:
    """History rows taken from a :class:`RowQueue`: ``slots[i]`` is row i's job slot (``~slot`` for a
    rare row with values kept aside), ``data`` the packed rows one after the other, ``asides`` the
    values kept aside of the ``~slot`` rows, in order, and ``names`` the slots' job names."""

    __slots__ = ("slots", "data", "asides", "names")

    def __init__(self, slots: array, data: "bytes | bytearray", asides: list, names: list):
        self.slots = slots
        self.data = data
        self.asides = asides
        self.names = names

    def __len__(self) -> int:
        return len(self.slots)

    def aside_pairs(self) -> "list[tuple[int, tuple]] | None":
        """(row index, values kept aside) of the rows that have any, or None."""
        if not self.asides:
            return None
        return list(zip(_flagged(self.slots).tolist(), self.asides))

    def job_slots(self):
        """Every row's job slot, as a numpy array (the ``~`` of the rows with values aside undone)."""
        import numpy as np

        slots = _as_numpy(self.slots)
        return np.where(slots < 0, ~slots, slots) if self.asides else slots


def _as_numpy(slots: array):
    """``slots`` viewed as a numpy int32 array (no copy)."""
    import numpy as np

    return np.frombuffer(slots, dtype=np.int32) if slots else np.zeros(0, np.int32)


def _flagged(slots: array):
    """The indices of the ``~slot`` entries of ``slots`` (rows with values kept aside), as a numpy array."""
    import numpy as np

    return np.flatnonzero(_as_numpy(slots) < 0)


class RowQueue:
    """History rows waiting for the writer, as the loop's thread hands them over: the job's slot (a
    small int this queue gives each job name once, ``slot(name)``, which the engine keeps with the
    job: the store's ``row_key``) into a typed array, then the packed row into one bytearray.
    Nothing the loop's thread uses on a fire crosses to the writer's thread: no object per row, no
    job name (whose reference count the loop's thread changes on every fire: reading it from the
    writer's thread would pull that memory back and forth between the cores).  The writer takes
    complete rows from the front (a row whose slot is in and bytes are not yet waits for the next
    batch); the loop's thread only ever appends, and each array, bytearray or deque call is atomic.
    A rare row with values kept aside (an error, a worker) appends them first, then ``~slot``."""

    __slots__ = ("slots", "data", "asides", "slot_of", "names")

    def __init__(self) -> None:
        self.slots = array("i")
        self.data = bytearray()
        self.asides: deque = deque()
        self.slot_of: dict[str, int] = {}  # job name -> slot; only the loop's thread adds
        self.names: list[str] = []  # slot -> job name (appended before the slot is handed out)

    def __len__(self) -> int:
        return min(len(self.slots), len(self.data) // ROW_BYTES)

    def slot(self, name: str) -> int:
        """The job's slot (the loop's thread)."""
        slot = self.slot_of.get(name)
        if slot is None:
            slot = len(self.names)
            self.names.append(name)
            self.slot_of[name] = slot
        return slot

    def append(self, slot: int, packed: bytes, aside: "tuple | None") -> None:
        """A row of the job in ``slot`` (the loop's thread; ``SQLiteStore`` inlines this in its hot-path closure)."""
        if aside is not None:
            self.asides.append(aside)
            slot = ~slot
        self.slots.append(slot)
        self.data.extend(packed)

    def one(self, slot: int, packed: bytes, aside: "tuple | None") -> Rows:
        """A single row as :class:`Rows`, not queued (rows written synchronously after close)."""
        return Rows(array("i", [slot if aside is None else ~slot]), packed, [] if aside is None else [aside],
                    self.names)

    def take(self) -> Rows:
        """Every complete row now, removed from the queue."""
        n = len(self)
        size = n * ROW_BYTES
        slots = self.slots[:n]  # copies: the loop's thread goes on appending
        data = self.data[:size]
        del self.data[:size]
        del self.slots[:n]
        return Rows(slots, data, self._pop_asides(slots), self.names)

    def _pop_asides(self, slots: array) -> list:
        # each ~slot row's values went in before its slot, so they are the oldest ones queued
        if not self.asides:
            return []
        popleft = self.asides.popleft
        return [popleft() for _ in range(len(_flagged(slots)))]

    def put_back(self, rows: Rows) -> None:
        """Rows a failed write took: back in front of the newer ones (the writer's thread)."""
        self.asides.extendleft(reversed(rows.asides))
        self.data[:0] = rows.data
        self.slots[:0] = rows.slots

    def drop_oldest(self, n: int) -> None:
        self._pop_asides(self.slots[:n])
        del self.data[:n * ROW_BYTES]
        del self.slots[:n]


class BatchWriter:
    """Writes batches of queued items with one connection (used by the thread, and after close)."""

    def __init__(self, store: "SQLiteStore", conn: sqlite3.Connection):
        self.store = store
        self.conn = conn
        self.ids: dict[str, int] = dict(conn.execute("SELECT name, id FROM jobs"))
        self.names: dict[int, str] = {v: k for k, v in self.ids.items()}
        self.states: dict[str, tuple] = {}  # name -> (paused, finished, next_ts, runs) last written
        self._slot_ids: Any = ()  # see slot_ids()
        self._stale_slots: set[int] = set()

    # -------------------------------------------------------------------------------- helpers
    def job_id(self, name: str) -> int:
        jid = self.ids.get(name)
        if jid is None:
            self.conn.execute("INSERT INTO jobs(name) VALUES (?) ON CONFLICT(name) DO NOTHING", (name,))
            jid = self.conn.execute("SELECT id FROM jobs WHERE name = ?", (name,)).fetchone()[0]
            self.ids[name] = jid
            self.names[jid] = name
        return jid

    def name_of(self, jid: int) -> str | None:
        name = self.names.get(jid)
        if name is None:
            row = self.conn.execute("SELECT name FROM jobs WHERE id = ?", (jid,)).fetchone()
            if row is not None:
                name = row[0]
                self.names[jid] = name
                self.ids[name] = jid
        return name

    # -------------------------------------------------------------------------------- a batch
    def write(self, ops: list, rows: "Rows | None") -> list:
        """One transaction with ``ops`` (in order) and ``rows``; returns the ops to complete after COMMIT."""
        conn = self.conn
        store = self.store
        owner = store.owner_id
        after = []
        if store._detached is not None:
            raise StoreError(store._detached)
        with immediate(conn):
            for op in ops:
                kind = op[0]
                if kind == "save":
                    self._save(op[1], op[2], op[3])
                elif kind == "result":
                    _, name, run_id, scheduled, value = op
                    self._result(name, run_id, scheduled, value)
                elif kind == "remove":
                    conn.execute("UPDATE jobs SET spec = NULL, saved_by = ?, saved_at = ? WHERE name = ?",
                                 (owner, store._wall(), op[1]))
                    conn.execute("UPDATE leases SET released = ? WHERE job = ? AND owner = ?",
                                 (store._sched_now(), op[1], owner))
                    self.states.pop(op[1], None)
                elif kind == "forget":
                    jid = self.ids.pop(op[1], None)
                    if jid is not None:
                        self.names.pop(jid, None)
                        self._forget_slot(op[1])
                        self._filter_history(lambda job_id, scheduled: job_id != jid)
                        conn.execute("DELETE FROM results WHERE job = ?", (jid,))
                        if conn.execute("DELETE FROM jobs WHERE id = ? AND spec IS NULL", (jid,)).rowcount:
                            conn.execute("DELETE FROM job_state WHERE id = ?", (jid,))
                else:
                    after.append(op)
            if rows:
                self._rows(rows, owner)
        return after

    def _save(self, job: Any, spec_json: str, code_hash: str) -> None:
        store = self.store
        name = job.name
        self.job_id(name)
        self.conn.execute("INSERT INTO code_writes(job, writer, code_hash, owner, at) VALUES (?,?,?,?,?) "
                          "ON CONFLICT(job, writer) DO UPDATE SET code_hash = excluded.code_hash, "
                          "owner = excluded.owner, at = excluded.at",
                          (name, store.writer, code_hash, store.owner_id, store._wall()))
        self.conn.execute("UPDATE jobs SET spec = ?, saved_by = ?, saved_at = ? WHERE name = ?",
                          (spec_json, store.owner_id, store._wall(), name))
        if name in store._leases:
            state = _state(job)
            self.conn.execute(_UPSERT_STATE, (*state, self.ids[name]))
            self.states[name] = state
        # else another process runs it: the new definition is taken, its live state left alone

    def _result(self, name: str, run_id: int, scheduled: float, value: Any) -> None:
        problems: list = []
        try:
            frame, datas = encode_value_rows(value, problems)
        except Exception as exc:  # an odd value costs itself, never the writer: a marked placeholder
            problems.append(exc)
            frame, datas = 0, [to_json({"value": unencodable(value, exc)})]
        if problems:
            exc = problems[0]
            log.error("nbsched: the value returned by job %r (run %s) cannot be stored (%s: %s); a marked "
                      "placeholder was stored instead", name, run_id, type(exc).__name__, str(exc)[:200])
        jid = self.job_id(name)
        owner = self.store.owner_id
        self.conn.executemany("INSERT INTO results(job, owner, run_id, scheduled, frame, data) VALUES (?,?,?,?,?,?)",
                              [(jid, owner, run_id, scheduled, frame, d) for d in datas])

    def slot_ids(self, names: list) -> Any:
        """Job id by job slot (a numpy int32 array covering every slot in ``names``, the queue's
        slot -> name list): ids looked up once per slot, not once per row."""
        import numpy as np

        table = self._slot_ids
        known = len(table)
        count = len(names)  # read once: the loop's thread hands out new slots meanwhile (a later take has them)
        if known < count or self._stale_slots:
            grown = np.empty(count, np.int32)
            grown[:known] = table
            for slot in [*range(known, count), *self._stale_slots]:
                grown[slot] = self.job_id(names[slot])
            self._stale_slots.clear()
            self._slot_ids = table = grown
        return table

    def _forget_slot(self, name: str) -> None:
        """A job's id is gone (``forget``): its slot, if any, is looked up again before its next row."""
        slot = self.store._rows.slot_of.get(name)
        if slot is not None and slot < len(self._slot_ids):
            self._stale_slots.add(slot)

    def _rows(self, rows: Rows, owner: int) -> None:
        """Store ``rows`` as history chunks (see :func:`encode_joined`)."""
        slots = rows.job_slots()
        all_ids = self.slot_ids(rows.names)[slots]
        all_asides = rows.aside_pairs()
        data = rows.data
        for start in range(0, len(slots), _CHUNK_ROWS):
            end = start + _CHUNK_ROWS
            job_ids = all_ids[start:end]
            part = data[start * ROW_BYTES:end * ROW_BYTES]
            asides = None if all_asides is None else [(i - start, a) for i, a in all_asides if start <= i < end]
            values = encode_joined(job_ids, part, asides or None)
            codes = values[9]
            if MISSED_CODE in codes:  # missed fire times of a job another process owns are its to record
                claimable = self.store._claimable
                scheduled = chunk_times(values)
                names = rows.names
                part_slots = slots[start:end].tolist()
                keep = [i for i, code in enumerate(codes)
                        if code != MISSED_CODE or claimable(names[part_slots[i]], scheduled[i])]
                if len(keep) < len(job_ids):
                    if not keep:
                        continue
                    where = {i: k for k, i in enumerate(keep)}
                    values = encode_joined(job_ids[keep],
                                           b"".join(part[i * ROW_BYTES:(i + 1) * ROW_BYTES] for i in keep),
                                           [(where[i], a) for i, a in asides or () if i in where] or None)
            self.conn.execute(_INSERT_CHUNK, (owner, *values))

    # -------------------------------------------------------------------------------- leases
    def maintain_leases(self) -> None:
        """Heartbeat (renews every lease we hold in one statement) and take over the leases we want.

        Our leases are valid while our owner row's ``expires`` is in the future.  If it lapsed (this
        process stalled longer than the TTL), others may have taken some over: check which we still hold.
        """
        store = self.store
        conn = self.conn
        owner = store.owner_id
        with store._lease_lock:
            t = store._wall()
            ttl = store.lease_ttl
            leases = store._leases
            with immediate(conn):
                before = conn.execute("SELECT expires FROM owners WHERE id = ?", (owner,)).fetchone()
                conn.execute("UPDATE owners SET heartbeat = ?, expires = ?, fence = ? WHERE id = ?",
                             (t, t + ttl, store._sched_now() + ttl, owner))
                if before is None or before[0] is None or before[0] < t:
                    held = {r[0] for r in conn.execute(
                        "SELECT job FROM leases WHERE owner = ? AND released IS NULL", (owner,))}
                    for name in list(leases):
                        if name not in held:
                            leases.pop(name, None)  # taken over while we stalled
                acquired = {}
                if len(store._jobs) > len(leases):  # some job we want is held elsewhere (or new)
                    missing = set(list(store._jobs)) - set(list(leases))
                    acquired = acquire_leases(conn, store, missing, t) if missing else {}
            leases.update(acquired)
            store._valid_until = t + ttl - store.lease_margin
            store._leases_changed()

    def release_all(self) -> None:
        """Closing: our leases become free at once, fenced at the scheduler's current time."""
        store = self.store
        t = store._wall()
        self.conn.execute("UPDATE owners SET closed = ?, heartbeat = ?, expires = ?, fence = ? WHERE id = ?",
                          (t, t, t, store._sched_now(), store.owner_id))
        with store._lease_lock:
            store._leases.clear()
            store._valid_until = 0.0
            store._leases_changed()

    # -------------------------------------------------------------------------------- checkpoints
    def checkpoint(self) -> None:
        """Write next fire time / run count / paused / finished of the jobs whose state changed (in
        ``job_state``, narrow rows: the job's definition is not rewritten with them).

        Reading the jobs' state and binding it is Python work on this thread, and while this thread
        holds the interpreter the loop's thread, woken for a fire, waits for it up to the switch
        interval (5 ms).  So it goes :data:`CHECKPOINT_STEP` jobs at a time with a short sleep in
        between (``sleep(0)`` would take the interpreter straight back before the loop's thread
        wakes up): the loop waits for at most one step."""
        store = self.store
        leases = store._leases
        states = self.states
        items = list(store._jobs.items())
        steps = []
        for start in range(0, len(items), CHECKPOINT_STEP):
            if start:
                sleep(_HAND_OVER)
            params = []
            for name, job in items[start:start + CHECKPOINT_STEP]:
                if name not in leases:
                    continue
                state = _state(job)
                if states.get(name) != state:
                    states[name] = state
                    params.append((*state, self.job_id(name)))
            if params:
                steps.append(params)
        if not steps:
            return
        conn = self.conn
        with immediate(conn):
            for i, params in enumerate(steps):
                if i:
                    sleep(_HAND_OVER)
                conn.executemany(_UPSERT_STATE, params)

    # -------------------------------------------------------------------------------- merging
    def fetch_foreign(self) -> None:
        """Hand rows other processes wrote since the last look to the scheduler's loop."""
        store = self.store
        sched = store._sched
        if sched is None or not sched.running:
            return
        top = self.conn.execute("SELECT max(id) FROM history").fetchone()[0] or 0
        start = store._fetch_cursor
        if top <= start:
            return
        lately = store._wall() - 2 * (store.lease_ttl + store.renew_every)
        others = self.conn.execute("SELECT count(*) FROM owners WHERE id != ? AND heartbeat > ?",
                                   (store.owner_id, lately)).fetchone()[0]
        named: list = []
        if others:  # else nobody else wrote lately: skip reading our own chunks
            for chunk in self.conn.execute(
                    f"SELECT {CHUNK_COLUMNS} FROM history WHERE id > ? AND id <= ? AND owner != ? ORDER BY id",
                    (start, top, store.owner_id)):
                job_ids, rows = decode_chunk(*chunk)
                named.extend(zip(map(self.name_of, job_ids), rows))
        store._fetch_cursor = top
        sched.merge_history(named, lambda: store._applied(top))

    # -------------------------------------------------------------------------------- compaction
    def compact(self, vacuum: bool = False) -> dict[str, int]:
        """Delete the rows each job's retention has dropped from its in-memory logs.

        For every job this process holds, the oldest row its history (results) log still keeps
        gives a cut-off time; older rows of that job go.  (The logs apply ``history_rows`` /
        ``history_age`` and ``results_rows`` / ``results_age``.)  History chunks that start before
        the newest cut-off are read and deleted or rewritten; results rows are deleted by one
        DELETE over the rows older than the newest cut-off (no per-job index, see the schema).
        """
        store = self.store
        cut_h: dict[int, float] = {}
        cut_r: dict[int, float] = {}
        for name, job in list(store._jobs.items()):
            jid = self.ids.get(name)
            if jid is None or name not in store._leases:
                continue
            try:
                cut = job.log.retention_cut()
                if cut is not None:
                    cut_h[jid] = cut
                res = job.results_log
                if res.chunks and (res.max_age is not None or (res.max_rows is not None and res.rows >= res.max_rows)):
                    cut_r[jid] = res.chunks[0][1]
            except IndexError:  # emptied meanwhile by the loop thread
                continue
        deleted = {"history": self._compact_history(cut_h), "results": self._delete_results(cut_r)}
        conn = self.conn
        if vacuum:
            conn.execute("VACUUM")
        else:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if free > 256 and free * 4 > pages:
                conn.execute("PRAGMA incremental_vacuum").fetchall()
        return deleted

    def _compact_history(self, cuts: dict[int, float]) -> int:
        if not cuts:
            return 0
        conn = self.conn
        with immediate(conn):
            get = cuts.get
            gone = self._filter_history(lambda jid, scheduled: scheduled >= get(jid, scheduled),
                                        "first_scheduled < ?", (max(cuts.values()),))
        return gone

    def _filter_history(self, keep, where: str = "1", args: tuple = ()) -> int:
        """Inside a transaction: drop the records of the chunks matching ``where`` for which
        ``keep(job_id, scheduled)`` is false (a chunk is deleted, or rewritten with what remains)."""
        conn = self.conn
        gone = 0
        for cid, owner, *chunk in conn.execute(f"SELECT id, owner, {CHUNK_COLUMNS} FROM history WHERE {where}",
                                               args).fetchall():
            job_ids, rows = decode_chunk(*chunk)
            kept = [i for i, (jid, r) in enumerate(zip(job_ids, rows)) if keep(jid, r[1])]
            if len(kept) == len(rows):
                continue
            gone += len(rows) - len(kept)
            if not kept:
                conn.execute("DELETE FROM history WHERE id = ?", (cid,))
            else:
                values = encode_chunk([job_ids[i] for i in kept], [rows[i] for i in kept])
                conn.execute("UPDATE history SET n = ?, first_scheduled = ?, last_scheduled = ?, job = ?, run_id = ?, "
                             "scheduled = ?, started = ?, finished = ?, lateness = ?, outcome = ?, attempt = ?, "
                             "errors = ?, reason = ?, workers = ? WHERE id = ?", (*values, cid))
        return gone

    def _delete_results(self, cuts: dict[int, float]) -> int:
        if not cuts:
            return 0
        conn = self.conn
        bound = self._first_id_at(max(cuts.values()))
        with immediate(conn):
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS cut (job INTEGER PRIMARY KEY, before REAL NOT NULL)")
            conn.execute("DELETE FROM temp.cut")
            conn.executemany("INSERT INTO temp.cut VALUES (?, ?)", cuts.items())
            cur = conn.execute("DELETE FROM results WHERE id < ? AND scheduled < "
                               "(SELECT before FROM temp.cut WHERE cut.job = results.job)", (bound,))
        return max(cur.rowcount, 0)

    def _first_id_at(self, when: float, table: str = "results") -> int:
        """Binary search (rowids are ~time-ordered): an id before which every row is scheduled before ``when``.

        Rows are appended roughly in scheduled order, so this bounds the scan; a row out of order
        above the bound is simply left for a later pass."""
        conn = self.conn
        lo, hi = conn.execute(f"SELECT min(id), max(id) FROM {table}").fetchone()
        if lo is None:
            return 0
        hi += 1
        while lo < hi:
            mid = (lo + hi) // 2
            row = conn.execute(f"SELECT id, scheduled FROM {table} WHERE id >= ? ORDER BY id LIMIT 1",
                               (mid,)).fetchone()
            if row is None or row[1] >= when:
                hi = mid
            else:
                lo = row[0] + 1
        return lo


#: Run records kept in memory while the file cannot be written (disk full, I/O errors); beyond this
#: many the oldest are dropped, counted, and reported by ``flush()`` and the log.
MAX_UNWRITTEN_ROWS = 100_000
#: Returned values kept in memory the same way (they are larger than run records).
MAX_UNWRITTEN_RESULTS = 10_000
#: Longest wait between two attempts to write records held back by a failure.
MAX_RETRY_WAIT = 5.0


class WriterThread(threading.Thread):
    """Runs a :class:`BatchWriter` until the store closes (see the module docstring).

    Nothing a batch does can end the thread: a failed write (disk full, read-only, I/O error) keeps
    the batch in memory (bounded by :data:`MAX_UNWRITTEN_ROWS` / :data:`MAX_UNWRITTEN_RESULTS`) and
    retries with a growing wait (at most :data:`MAX_RETRY_WAIT`); ``flush()`` raises a
    :class:`StoreError` saying what is not written, and the records go to the file once it can be
    written again.
    """

    def __init__(self, store: "SQLiteStore"):
        super().__init__(name=f"nbsched-store-writer:{store.path.name}", daemon=True)
        self.store = store
        self.writer: BatchWriter | None = None
        self.stopping = False
        self._failures = 0
        self._retry_at = 0.0

    def run(self) -> None:
        store = self.store
        try:
            conn = connect(store.path, durable=store.durable)
        except sqlite3.Error as exc:  # the store opened a moment ago: the file vanished or the disk broke
            store._set_write_problem(exc)
            log.error("nbsched: the store writer cannot open %s (%s); nothing more is written", store.path, exc)
            return
        self.writer = writer = BatchWriter(store, conn)
        import numpy  # noqa: F401 - the chunks' columns are cut with it: imported here, not in the first commit
        now = perf_counter()
        next_lease = now + store.renew_every
        next_ckpt = now + store.checkpoint_every
        next_compact = now + store.compact_every
        wake = store._wake
        sleeping = store._writer_sleeping
        last_commit = 0.0
        try:
            while True:
                backoff = self._retry_at - perf_counter() if self._failures else 0.0
                if backoff > 0 and not self.stopping and not _call_waiting(store):
                    # records are held back by a failure: retry later (a flush() wakes us at once)
                    wake.wait(min(backoff, max(0.0, min(next_lease, next_ckpt) - perf_counter())))
                    wake.clear()
                elif not store._rows and not store._ops and not self.stopping:
                    sleeping[0] = True  # from now on, on_row() wakes us; check once more, then wait
                    if not store._rows and not store._ops:
                        wake.wait(max(0.0, min(next_lease, next_ckpt, next_compact) - perf_counter()))
                    wake.clear()
                    sleeping[0] = False
                gap = last_commit + store.commit_interval - perf_counter()
                if gap > 0 and not self.stopping and not _call_waiting(store):
                    store._stop_wait.wait(gap)  # busy: let a group of rows gather
                now = perf_counter()
                if (not self._failures or now >= self._retry_at or self.stopping or _call_waiting(store)) \
                        and self._commit_once():
                    now = last_commit = perf_counter()
                try:
                    if now >= next_lease:
                        next_lease = now + store.renew_every
                        store._check_file(writer)
                        writer.maintain_leases()
                        writer.fetch_foreign()
                    if now >= next_ckpt:
                        next_ckpt = now + store.checkpoint_every
                        writer.checkpoint()
                    if now >= next_compact:
                        writer.compact()
                        took = perf_counter() - now
                        next_compact = now + max(store.compact_every, 50 * took)  # at most ~2% of a core
                except Exception:
                    log.exception("nbsched: store maintenance on %s failed (will retry)", store.path)
                if self.stopping and not store._rows and not store._ops:
                    break
                if self.stopping and self._failures:
                    store._give_up_unwritten()
                    break
            try:
                writer.checkpoint()
                with immediate(writer.conn):
                    writer.release_all()
                writer.conn.execute("PRAGMA optimize")
            except sqlite3.Error as exc:
                log.error("nbsched: closing the store %s: the last job states and lease releases were not written "
                          "(%s); other processes take the leases over after lease_ttl", store.path, exc)
        finally:
            writer.conn.close()

    def _commit_once(self) -> bool:
        store = self.store
        writer = self.writer
        if store._pending_leases:  # new jobs: take their leases first, so their state is saved with them
            try:
                store._take_pending_leases(writer.conn, _NULL_LOCK)
            except Exception:
                log.exception("nbsched: taking new leases in %s failed (will retry)", store.path)
        ops = _drain(store._ops)
        rows = store._rows.take()
        if not ops and not rows:
            return False
        try:
            after = writer.write(ops, rows)
        except Exception as exc:  # disk full, read-only, I/O error - or a bug: keep everything, retry
            self._failures += 1
            self._retry_at = perf_counter() + min(MAX_RETRY_WAIT, 0.05 * 2 ** self._failures)
            store._hold_unwritten(exc, rows, [op for op in ops if op[0] != "call"])
            after = [op for op in ops if op[0] == "call"]
        else:
            if self._failures:
                store._write_recovered()
            self._failures = 0
        for op in after:
            _, fn, done = op
            try:
                done.result = fn(writer)
            except BaseException as exc:  # handed back to the caller waiting on it
                done.error = exc
            done.set()
        return True


def _call_waiting(store: "SQLiteStore") -> bool:
    return any(op[0] == "call" for op in list(store._ops))


#: Jobs a checkpoint reads (and writes) between two pauses of :data:`_HAND_OVER` seconds, which let
#: the loop's thread take the interpreter (see :meth:`BatchWriter.checkpoint`).
CHECKPOINT_STEP = 250
_HAND_OVER = 0.0003

#: A job's live state, by job id (see the schema's version 5).
_UPSERT_STATE = ("INSERT INTO job_state(paused, finished, next_ts, runs, id) VALUES (?,?,?,?,?) ON CONFLICT(id) "
                 "DO UPDATE SET paused = excluded.paused, finished = excluded.finished, next_ts = excluded.next_ts, "
                 "runs = excluded.runs")


def _state(job: Any) -> tuple:
    """The job state a checkpoint keeps: paused, finished, next fire time, scheduled runs."""
    return (int(job.paused), int(job.finished), job.next_fire_timestamp, job.runs)
