"""The store's writer thread: group commits, leases, job-state checkpoints, compaction.

The scheduler's hot path only appends to a deque (``store.on_row``) and reads a dict
(``store.claim``).  Everything that touches the disk happens here, on one thread with its own
connection:

* **Group commit.**  The thread wakes when the first item arrives, waits ``commit_delay`` for
  company, and writes everything that accumulated in one transaction.  Rows are inserted many per
  statement.  In WAL mode with ``synchronous=NORMAL`` a commit survives the process being killed; a
  power cut may lose the last commits (``durable=True`` syncs every commit).
* **Leases** (job -> owner, expires) are renewed every ``renew_every`` seconds in one statement;
  jobs this process wants but another holds are taken over once that lease has expired.
* **Checkpoints** write each job's next fire time and run count every ``checkpoint_every`` seconds
  and on close (the fire-by-fire changes are not written one by one; a restore completes them from
  the history rows).
* **Compaction** deletes history and results rows beyond each job's retention every
  ``compact_every`` seconds and returns free pages to the file system now and then.
* **Merging**: rows other processes wrote are fetched and appended to this scheduler's history.
"""
from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from ._store_codec import CODE_OF, decode_history_rows, encode_value_rows
from ._store_schema import connect
from .clock import perf_counter
from .job import JobPolicy

if TYPE_CHECKING:
    from .store import SQLiteStore

log = logging.getLogger("nbsched")

_FAST_COLS = "job, owner, run_id, scheduled, started, finished, lateness, outcome, attempt"
_FULL_COLS = _FAST_COLS + ", error_type, error_message, traceback"
_PER_STATEMENT = 100  # rows per INSERT statement (one statement binds many rows: far fewer calls)
_NO_FROM = float("-inf")
_DEFAULT_POLICY = JobPolicy()


class _NullLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


_NULL_LOCK = _NullLock()


def _drain(queue: deque) -> list:
    out = []
    pop = queue.popleft
    try:
        while True:
            out.append(pop())
    except IndexError:
        return out


def acquire_leases(conn: sqlite3.Connection, store: "SQLiteStore", names, t: float) -> dict[str, float]:
    """Inside a transaction: take the leases of ``names`` that are free, expired or held by a dead process.

    Returns name -> the nominal fire time after which this process may run the job: any for a
    lease nobody held, we held last, or whose holder is known dead (its runs are in the history,
    which a restore resumes from); the old holder's *fence* for a lease that expired or was released.
    """
    owner = store.owner_id
    current: dict[str, tuple[int, float, float]] = {}
    chunk = list(names)
    for i in range(0, len(chunk), 500):
        part = chunk[i:i + 500]
        q = "SELECT job, owner, expires, fence FROM leases WHERE job IN (" + ",".join("?" * len(part)) + ")"
        for job, holder, expires, fence in conn.execute(q, part):
            current[job] = (holder, expires, fence)
    got: dict[str, float] = {}
    inserts, updates = [], []
    dead: dict[int, bool] = {}
    expires, fence = t + store.lease_ttl, store._sched_now() + store.lease_ttl
    for name in chunk:
        prev = current.get(name)
        if prev is None:
            inserts.append((name, owner, expires, fence))
            got[name] = _NO_FROM
            continue
        holder, until, their_fence = prev
        if holder == owner:
            got[name] = _NO_FROM
        elif until < t:
            got[name] = their_fence
        else:
            if holder not in dead:
                dead[holder] = _owner_dead(conn, holder)
            if not dead[holder]:
                continue  # a live process runs it
            got[name] = _NO_FROM
        updates.append((owner, expires, fence, name))
    if inserts:
        conn.executemany("INSERT INTO leases(job, owner, expires, fence) VALUES (?,?,?,?)", inserts)
    if updates:
        conn.executemany("UPDATE leases SET owner = ?, expires = ?, fence = ? WHERE job = ?", updates)
    return got


def _owner_dead(conn: sqlite3.Connection, owner: int) -> bool:
    """True when ``owner`` closed the store, or was a process on this host that no longer exists."""
    row = conn.execute("SELECT pid, host, closed FROM owners WHERE id = ?", (owner,)).fetchone()
    if row is None:
        return True
    pid, host, closed = row
    if closed is not None:
        return True
    if host != socket.gethostname() or pid is None or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # e.g. another user's process: it exists
        return False
    return False


class BatchWriter:
    """Writes batches of queued items with one connection (used by the thread, and after close)."""

    def __init__(self, store: "SQLiteStore", conn: sqlite3.Connection):
        self.store = store
        self.conn = conn
        self.ids: dict[str, int] = dict(conn.execute("SELECT name, id FROM jobs"))
        self.names: dict[int, str] = {v: k for k, v in self.ids.items()}
        self._sql: dict[tuple[str, int], str] = {}
        self.counts: dict[int, list[int]] | None = None  # job id -> [history rows, result rows]
        self.states: dict[str, tuple] = {}  # name -> (paused, finished, next_ts, runs) last written

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

    def _insert_sql(self, cols: str, n: int) -> str:
        key = (cols, n)
        sql = self._sql.get(key)
        if sql is None:
            one = "(" + ",".join("?" * (cols.count(",") + 1)) + ")"
            sql = self._sql[key] = f"INSERT INTO history({cols}) VALUES " + ",".join([one] * n)
        return sql

    def _bump(self, jid: int, which: int, n: int) -> None:
        if self.counts is not None:
            c = self.counts.get(jid)
            if c is None:
                c = self.counts[jid] = [0, 0]
            c[which] += n

    # -------------------------------------------------------------------------------- a batch
    def write(self, ops: list, rows: list) -> list:
        """One transaction with ``ops`` (in order) and ``rows``; returns the ops to complete after COMMIT."""
        conn = self.conn
        store = self.store
        owner = store.owner_id
        after = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                kind = op[0]
                if kind == "save":
                    self._save(op[1], op[2])
                elif kind == "result":
                    _, name, run_id, scheduled, value = op
                    self._result(name, run_id, scheduled, value)
                elif kind == "remove":
                    conn.execute("UPDATE jobs SET spec = NULL, saved_by = ?, saved_at = ? WHERE name = ?",
                                 (owner, store._wall(), op[1]))
                    conn.execute("UPDATE leases SET expires = 0, fence = ? WHERE job = ? AND owner = ?",
                                 (store._sched_now(), op[1], owner))
                    self.states.pop(op[1], None)
                elif kind == "forget":
                    jid = self.ids.pop(op[1], None)
                    if jid is not None:
                        self.names.pop(jid, None)
                        conn.execute("DELETE FROM history WHERE job = ?", (jid,))
                        conn.execute("DELETE FROM results WHERE job = ?", (jid,))
                        conn.execute("DELETE FROM jobs WHERE id = ? AND spec IS NULL", (jid,))
                        if self.counts is not None:
                            self.counts.pop(jid, None)
                else:
                    after.append(op)
            if rows:
                self._rows(rows, owner)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return after

    def _save(self, job: Any, spec_json: str) -> None:
        store = self.store
        name = job.name
        self.job_id(name)
        state = (int(job._paused), int(job._finished), job._next_ts, job.runs)
        if name in store._leases:
            self.conn.execute(
                "UPDATE jobs SET spec = ?, paused = ?, finished = ?, next_ts = ?, runs = ?, saved_by = ?, "
                "saved_at = ? WHERE name = ?", (spec_json, *state, store.owner_id, store._wall(), name))
            self.states[name] = state
        else:  # another process runs it: take the new definition, leave its live state alone
            self.conn.execute("UPDATE jobs SET spec = ?, saved_by = ?, saved_at = ? WHERE name = ?",
                              (spec_json, store.owner_id, store._wall(), name))

    def _result(self, name: str, run_id: int, scheduled: float, value: Any) -> None:
        try:
            frame, datas = encode_value_rows(value)
        except Exception:  # an odd value must not break the writer: recorded as its text
            log.exception("nbsched: could not encode the value returned by job %r for the store", name)
            frame, datas = 0, [encode_value_rows({"value": repr(value)})[1][0]]
        jid = self.job_id(name)
        owner = self.store.owner_id
        self.conn.executemany("INSERT INTO results(job, owner, run_id, scheduled, frame, data) VALUES (?,?,?,?,?,?)",
                              [(jid, owner, run_id, scheduled, frame, d) for d in datas])
        self._bump(jid, 1, len(datas))

    def _rows(self, rows: list, owner: int) -> None:
        ids = self.ids
        codes = CODE_OF
        fast: list = []
        full: list = []
        fast_ext = fast.extend
        counts = self.counts
        for name, r in rows:
            jid = ids.get(name)
            if jid is None:
                jid = self.job_id(name)
            if r[7] is None and r[2] is not None and r[3] is not None:
                fast_ext((jid, owner, r[0], r[1], r[2], r[3], r[4], codes[r[5]], r[6]))
            else:
                err = r[7]
                full.extend((jid, owner, r[0], r[1], r[2], r[3], r[4], codes[r[5]], r[6],
                             None if err is None else err[0], None if err is None else err[1],
                             None if err is None else err[2]))
            if counts is not None:
                c = counts.get(jid)
                if c is None:
                    c = counts[jid] = [0, 0]
                c[0] += 1
        self._insert_many(_FAST_COLS, 9, fast)
        self._insert_many(_FULL_COLS, 12, full)

    def _insert_many(self, cols: str, width: int, params: list) -> None:
        execute = self.conn.execute
        step = width * _PER_STATEMENT
        n = len(params)
        for start in range(0, n - n % step, step):
            execute(self._insert_sql(cols, _PER_STATEMENT), params[start:start + step])
        rest = n % step
        if rest:
            execute(self._insert_sql(cols, rest // width), params[n - rest:])

    # -------------------------------------------------------------------------------- leases
    def maintain_leases(self) -> None:
        """Renew our leases, take over expired ones we want, release the ones we no longer want."""
        store = self.store
        conn = self.conn
        owner = store.owner_id
        with store._lease_lock:
            t = store._wall()
            ttl = store.lease_ttl
            wanted = set(list(store._jobs))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("UPDATE owners SET heartbeat = ? WHERE id = ?", (t, owner))
                conn.execute("UPDATE leases SET expires = ?, fence = ? WHERE owner = ? AND expires >= ?",
                             (t + ttl, store._sched_now() + ttl, owner, t))
                held = {r[0] for r in conn.execute("SELECT job FROM leases WHERE owner = ? AND expires >= ?",
                                                   (owner, t))}
                unwanted = held - wanted
                if unwanted:
                    conn.executemany("UPDATE leases SET expires = 0, fence = ? WHERE job = ? AND owner = ?",
                                     [(store._sched_now(), n, owner) for n in unwanted])
                    held -= unwanted
                acquired = acquire_leases(conn, store, wanted - held, t) if wanted - held else {}
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            until = t + ttl - store.lease_margin
            leases = store._leases
            for name in list(leases):
                if name not in held:
                    leases.pop(name, None)  # lost (we stalled past expiry and someone took it) or released
            for name in held:
                old = leases.get(name)
                leases[name] = (_NO_FROM if old is None else old[0], until)
            for name, valid_from in acquired.items():
                leases[name] = (valid_from, until)

    def release_all(self) -> None:
        store = self.store
        self.conn.execute("UPDATE leases SET expires = 0, fence = ? WHERE owner = ? AND expires > 0",
                          (store._sched_now(), store.owner_id))
        self.conn.execute("UPDATE owners SET closed = ?, heartbeat = ? WHERE id = ?",
                          (store._wall(), store._wall(), store.owner_id))
        store._leases.clear()

    # -------------------------------------------------------------------------------- checkpoints
    def checkpoint(self) -> None:
        """Write next fire time / run count / paused / finished of the jobs whose state changed."""
        store = self.store
        params = []
        for name, job in list(store._jobs.items()):
            if name not in store._leases:
                continue
            state = (int(job._paused), int(job._finished), job._next_ts, job.runs)
            if self.states.get(name) != state:
                self.states[name] = state
                params.append((*state, name))
        if params:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                self.conn.executemany("UPDATE jobs SET paused = ?, finished = ?, next_ts = ?, runs = ? WHERE name = ?",
                                      params)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    # -------------------------------------------------------------------------------- merging
    def fetch_foreign(self) -> None:
        """Hand rows other processes wrote since the last look to the scheduler's loop."""
        store = self.store
        sched = store._sched
        loop = getattr(sched, "_loop", None)
        if loop is None or loop.is_closed():
            return
        top = self.conn.execute("SELECT max(id) FROM history").fetchone()[0] or 0
        start = store._fetch_cursor
        if top <= start:
            return
        rows = self.conn.execute(
            "SELECT job, run_id, scheduled, started, finished, lateness, outcome, attempt, error_type, "
            "error_message, traceback FROM history WHERE id > ? AND id <= ? AND owner != ? ORDER BY id",
            (start, top, store.owner_id)).fetchall()
        store._fetch_cursor = top
        named = []
        if rows:
            decoded = decode_history_rows(r[1:] for r in rows)
            named = [(self.name_of(r[0]), row) for r, row in zip(rows, decoded)]
        try:
            loop.call_soon_threadsafe(store._apply_foreign, named, top)
        except RuntimeError:  # the loop closed meanwhile
            pass

    # -------------------------------------------------------------------------------- compaction
    def _load_counts(self) -> None:
        counts: dict[int, list[int]] = {}
        for jid, n in self.conn.execute("SELECT job, count(*) FROM history GROUP BY job"):
            counts[jid] = [n, 0]
        for jid, n in self.conn.execute("SELECT job, count(*) FROM results GROUP BY job"):
            counts.setdefault(jid, [0, 0])[1] = n
        self.counts = counts

    def compact(self, slack: float = 0.1, vacuum: bool = False) -> dict[str, int]:
        """Apply each job's retention (rows and age) to the file; returns the rows deleted."""
        if self.counts is None:
            self._load_counts()
        store = self.store
        conn = self.conn
        now = store._sched_now()
        jobs = dict(store._jobs)
        deleted = {"history": 0, "results": 0}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for jid, (n_hist, n_res) in list(self.counts.items()):
                name = self.name_of(jid)
                job = jobs.get(name)
                policy = job.policy if job is not None else _DEFAULT_POLICY
                for which, table, n, keep, age in ((0, "history", n_hist, policy.history_rows, policy.history_age),
                                                   (1, "results", n_res, policy.results_rows, policy.results_age)):
                    gone = 0
                    if keep is not None and n > keep * (1 + slack):
                        cur = conn.execute(
                            f"DELETE FROM {table} WHERE job = ? AND id <= (SELECT id FROM {table} WHERE job = ? "
                            "ORDER BY id DESC LIMIT 1 OFFSET ?)", (jid, jid, keep))
                        gone += max(cur.rowcount, 0)
                    if age is not None and n - gone > 0:
                        cur = conn.execute(f"DELETE FROM {table} WHERE job = ? AND scheduled < ?", (jid, now - age))
                        gone += max(cur.rowcount, 0)
                    if gone:
                        self.counts[jid][which] -= gone
                        deleted[table] += gone
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if vacuum:
            conn.execute("VACUUM")
        else:
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if free > 256 and free * 4 > pages:
                conn.execute("PRAGMA incremental_vacuum").fetchall()
        return deleted


class WriterThread(threading.Thread):
    """Runs a :class:`BatchWriter` until the store closes (see the module docstring)."""

    def __init__(self, store: "SQLiteStore"):
        super().__init__(name=f"nbsched-store-writer:{store.path.name}", daemon=True)
        self.store = store
        self.writer: BatchWriter | None = None
        self.stopping = False
        self._failures = 0

    def run(self) -> None:
        store = self.store
        conn = connect(store.path, durable=store.durable)
        self.writer = writer = BatchWriter(store, conn)
        now = perf_counter()
        next_lease = now + store.renew_every
        next_ckpt = now + store.checkpoint_every
        next_compact = now + store.compact_every
        wake = store._wake
        try:
            while True:
                timeout = max(0.0, min(next_lease, next_ckpt, next_compact) - perf_counter())
                wake.wait(timeout)
                wake.clear()
                if store.commit_delay and not self.stopping:
                    if len(store._rows) < 5000:
                        store._stop_wait.wait(store.commit_delay)  # let a group of rows gather
                self._commit_once()
                now = perf_counter()
                try:
                    if now >= next_lease:
                        next_lease = now + store.renew_every
                        writer.maintain_leases()
                        writer.fetch_foreign()
                    if now >= next_ckpt:
                        next_ckpt = now + store.checkpoint_every
                        writer.checkpoint()
                    if now >= next_compact:
                        next_compact = now + store.compact_every
                        writer.compact()
                except sqlite3.Error:
                    log.exception("nbsched: store maintenance on %s failed (will retry)", store.path)
                if self.stopping and not store._rows and not store._ops:
                    break
            try:
                writer.checkpoint()
                conn.execute("BEGIN IMMEDIATE")
                writer.release_all()
                conn.execute("COMMIT")
            except sqlite3.Error:
                log.exception("nbsched: closing the store %s cleanly failed", store.path)
        finally:
            conn.close()

    def _commit_once(self) -> None:
        store = self.store
        writer = self.writer
        ops = _drain(store._ops)
        rows = _drain(store._rows)
        if not ops and not rows:
            if store._pending_leases:
                store._take_pending_leases(writer.conn, _NULL_LOCK)
            return
        try:
            after = writer.write(ops, rows)
            if store._pending_leases:
                store._take_pending_leases(writer.conn, _NULL_LOCK)
            self._failures = 0
        except sqlite3.Error as exc:
            self._failures += 1
            keep = self._failures < 5
            log.error("nbsched: writing %d run records to the store %s failed (%s); %s", len(rows), store.path, exc,
                      "will retry" if keep else "dropping them")
            if keep:
                store._rows.extendleft(reversed(rows))
                store._ops.extendleft(reversed([op for op in ops if op[0] != "call"]))
            after = [op for op in ops if op[0] == "call"]
        for op in after:
            _, fn, done = op
            try:
                done.result = fn(writer)
            except BaseException as exc:  # handed back to the caller waiting on it
                done.error = exc
            done.set()
