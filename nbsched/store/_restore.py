"""``Scheduler.restore()``: jobs back from the store, with their history, results and missed fire times.

Steps: flush what this process still has queued; read the definitions, history and results in a
few sequential scans; rebuild triggers, policies and callables (user code runs here, and only
here - see :mod:`nbsched._store_targets`); take the leases in one transaction; then, on the
scheduler's loop, register every job with its logs filled and hand the scheduler its *resume point*:

* the stored next fire time, or the first fire time after the newest history row when that is
  later (the state is checkpointed every ``checkpoint_every`` seconds; the history is exact);
* a resume point in the past makes the first timer fire at once, and the scheduler's own overdue
  logic applies the job's ``coalesce`` and ``misfire_grace`` and records the rest ``missed``;
* a job whose lease a live process holds is scheduled from now (that process is running it).

A job that cannot be rebuilt (module gone and no source, unknown target kind, unknown executor) is
skipped with an :class:`~nbsched.errors.NbschedWarning` and stays in the file; its reason is in
``store.restore_errors``.
"""
from __future__ import annotations

import gc
import json
import sqlite3
import warnings
from typing import TYPE_CHECKING, Any

from ._codec import CHUNK_COLUMNS, decode_packed
from ._schema import STATE_COLUMNS, STATE_JOIN, StoreError, immediate
from ._targets import code_hash, load_target, target_code
from ._leases import acquire_leases
from ..errors import NbschedWarning, PolicyError
from ..history import ROW_BYTES, Outcome, PackedRows, packed_column
from ..job import JobPolicy, StoredJob
from ..triggers import trigger_from_dict

if TYPE_CHECKING:
    from ..job import Job
    from .sqlite import SQLiteStore

__all__ = ["restore"]

_NOT_RUNS = (Outcome.MISSED.value, Outcome.SKIPPED.value)  # rows hold plain outcome strings
_POLICY_KEYS = set(JobPolicy.names())


def _hashable(value: Any) -> Any:
    """A policy value from JSON as a cache key (``resources`` comes back as lists of pairs)."""
    return tuple(map(_hashable, value)) if isinstance(value, list) else value


_NO_ROWS = PackedRows(b"")


def _counts_as_run(row: tuple) -> bool:
    """A stored row that the run count includes: a first attempt (retries are the same run) that ran."""
    return row[6] <= 1 and row[5] not in _NOT_RUNS


def restore(store: "SQLiteStore", sched: Any, namespace: dict | None = None) -> list["Job"]:
    if namespace is None:
        import __main__

        namespace = __main__.__dict__
    store._check_open()
    if store._sched is None:
        store.attach(sched)
    store.flush()
    was_enabled = gc.isenabled()
    gc.disable()  # a million small tuples: generational GC passes would cost a third of the time
    try:
        return _restore(store, sched, namespace)
    finally:
        if was_enabled:
            gc.enable()


def _restore(store: "SQLiteStore", sched: Any, namespace: dict) -> list["Job"]:
    known = set(sched.history_names())
    early = {jid for jid, name, *_ in _jobs_table(store) if name in known}
    jobs, by_job, results, upto, max_run_id = _read_all(store, early)
    names = {jid: name for jid, name, *_ in jobs}
    plans, errors = [], {}
    trig_cache: dict[str, Any] = {}
    func_cache: dict[str, Any] = {}
    policy_cache: dict[str, JobPolicy] = {}
    specs = {}
    for jid, name, spec_json, paused, finished, next_ts, runs in jobs:
        if spec_json is None or name in sched:
            continue
        try:
            specs[name] = json.loads(spec_json)
        except ValueError as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
    _name_unfamiliar_code(store, specs)  # before any stored code is executed
    for jid, name, spec_json, paused, finished, next_ts, runs in jobs:
        if name not in specs:
            continue
        try:
            spec = specs[name]
            tkey = json.dumps(spec["trigger"], sort_keys=True)
            trig = trig_cache.get(tkey)
            if trig is None:
                trig = trig_cache[tkey] = trigger_from_dict(spec["trigger"])
            pkey = tuple(sorted((k, _hashable(v)) for k, v in (spec.get("policy") or {}).items()))
            policy = policy_cache.get(pkey)
            if policy is None:  # frozen values: jobs with the same options share one
                options = {k: v for k, v in (spec.get("policy") or {}).items() if k in _POLICY_KEYS}
                policy = policy_cache[pkey] = JobPolicy.build(**options)
            executors = sched.executors
            if policy.executor not in executors:
                raise PolicyError(f"unknown executor {policy.executor!r} (this scheduler has "
                                  f"{', '.join(map(repr, executors))}): add it before restoring")
            fkey = _target_key(spec.get("target"))
            func = func_cache.get(fkey)
            if func is None:
                func = func_cache[fkey] = load_target(spec.get("target"), namespace)
        except Exception as exc:  # reported together below; the job stays in the file
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        plans.append((jid, name, spec, trig, policy, func, bool(paused), bool(finished), next_ts, runs))
    store.restore_errors = errors
    with store._lease_lock, store._fg_lock:
        conn = store._fg
        t = store._wall()
        try:
            with immediate(conn):
                got = acquire_leases(conn, store, [p[1] for p in plans], t)
        except sqlite3.Error as exc:
            raise StoreError(f"restoring from {str(store.path)!r} failed while taking the job leases: {exc}. "
                             "Another program may hold the file locked; try again") from None
        store._leases.update(got)
        store._leases_changed()
    restored = _register(store, sched, plans, by_job, results, names, upto, max_run_id, known)
    if errors:
        shown = "; ".join(f"{n!r} ({why})" for n, why in list(errors.items())[:5])
        warnings.warn(NbschedWarning(
            f"restore: {len(errors)} job(s) could not be rebuilt and were left in {str(store.path)!r}: {shown}"
            f"{' ...' if len(errors) > 5 else ''}. Define what they need (or register a target loader) and call "
            "restore() again, or look at store.listing()"), stacklevel=3)
    return restored


def _name_unfamiliar_code(store: "SQLiteStore", specs: dict[str, dict]) -> None:
    """Warn, naming each job and the code it is about to execute, when the stored code is not what
    this notebook (``store.writer``) last saved for that job - another notebook, another process or
    someone editing the file changed it, or this notebook never wrote it."""
    mine = dict(store._read("SELECT job, code_hash FROM code_writes WHERE writer = ?", (store.writer,)))
    last = {job: writer for job, writer in store._read(
        "SELECT job, writer FROM code_writes c WHERE at = (SELECT max(at) FROM code_writes d WHERE d.job = c.job)")}
    notes = []
    for name, spec in specs.items():
        target = spec.get("target")
        code = target_code(target)
        if not code and not (isinstance(target, dict) and target.get("kind") == "cell"):
            continue  # an importable function with no stored source: the module's own code runs
        digest = code_hash(target)
        if mine.get(name) == digest:
            continue
        why = ("this notebook never saved it" if name not in mine else
               f"this notebook last saved code {mine[name]}")
        shown = "\n    ".join(code.splitlines()[:12]) + ("\n    ..." if code.count("\n") >= 12 else "")
        notes.append(f"{name!r} (code {digest}, saved by {last.get(name) or 'an unknown writer'}; {why}):\n    {shown}")
    if notes:
        warnings.warn(NbschedWarning(
            f"restore() is about to execute stored code from {str(store.path)!r} that this notebook "
            f"({store.writer}) did not write:\n" + "\n".join(notes) +
            "\nSee the full code with store.code(name) or store.listing(); if it is not yours, stop, and "
            "remove the job from the file"), stacklevel=4)


def _target_key(target: Any) -> Any:
    if isinstance(target, dict):
        try:
            key = tuple(sorted(target.items()))
            hash(key)
            return key
        except TypeError:  # unhashable parts (a notebook job's parameters dict): compare the JSON text
            return json.dumps(target, sort_keys=True, default=str)
    return repr(target)


def _jobs_table(store: "SQLiteStore") -> list[tuple]:
    return store._read(f"SELECT j.id, j.name, j.spec, {STATE_COLUMNS} FROM jobs j {STATE_JOIN} ORDER BY j.id")


def _read_all(store: "SQLiteStore", early: set[int]):
    """One consistent snapshot, in sequential scans: job rows, history rows by job id (packed, see
    :func:`_by_job`; rows of ``early`` jobs - registered before restore - only from chunks written
    before this session), result rows, cursor, max run id."""
    owner = store.owner_id
    with store._fg_lock:
        conn = store._fg
        try:
            conn.execute("BEGIN")
            try:
                jobs = _jobs_table(store)
                upto = store._applied_cursor
                chunks = [(cid, *decode_packed(*chunk)) for cid, *chunk in conn.execute(
                    f"SELECT id, {CHUNK_COLUMNS} FROM history WHERE owner != ? AND id <= ? ORDER BY id", (owner, upto))]
                results: dict[int, list] = {}
                for r in conn.execute("SELECT job, run_id, scheduled, frame, data, owner FROM results "
                                      "WHERE owner != ? ORDER BY id", (owner,)):
                    results.setdefault(r[0], []).append(r[1:])
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"restoring from {str(store.path)!r} failed: {exc}. If the file is damaged, move it "
                             "aside and start a new store (`sqlite3 FILE .recover` can salvage rows)") from None
    by_job, max_run_id = _by_job(chunks, early, store._session_start)
    return jobs, by_job, results, upto, max_run_id


def _by_job(chunks: list[tuple[int, bytes, PackedRows]], early: set[int], session_start: int):
    """The chunks' rows grouped by job id, each job's rows in chunk order, as :class:`PackedRows`;
    and the largest run id.  Grouped with numpy (one stable sort of every row by job): a million rows
    are a few array operations, not a million tuples."""
    import numpy as np

    if not chunks:
        return {}, 0
    counts = [len(rows) for _, _, rows in chunks]
    ids = np.frombuffer(b"".join(job for _, job, _ in chunks), dtype="<i4")
    data = np.frombuffer(b"".join(rows.data for _, _, rows in chunks), dtype=f"V{ROW_BYTES}")
    if len(ids) != len(data):
        raise StoreError(f"restoring from the store failed: a history chunk lists {len(ids)} jobs for {len(data)} "
                         "rows. The file is damaged: move it aside and start a new store")
    run_ids = np.frombuffer(packed_column(data.tobytes(), "run_id"), dtype="<i8")
    max_run_id = int(run_ids.max()) if len(run_ids) else 0
    aside: dict[int, tuple] = {}
    at = 0
    for (_, _, rows), n in zip(chunks, counts):
        for i, values in (rows.aside or {}).items():
            aside[at + i] = values
        at += n
    keep = np.ones(len(ids), dtype=bool)
    if early:  # jobs registered before restore(): only rows written before this session (the rest are in memory)
        chunk_ids = np.repeat(np.array([cid for cid, _, _ in chunks], dtype=np.int64), counts)
        keep = ~np.isin(ids, np.fromiter(early, dtype=np.int64, count=len(early))) | (chunk_ids <= session_start)
    order = np.argsort(ids, kind="stable")
    order = order[keep[order]]
    ids, data = ids[order], data[order].tobytes()
    jobs, starts = np.unique(ids, return_index=True)
    ends = np.append(starts[1:], len(ids))
    extra: dict[int, dict[int, tuple]] = {}  # group -> {row within the group: values kept aside}
    if aside:
        position = np.full(len(keep), -1, dtype=np.int64)
        position[order] = np.arange(len(order))
        where = position[np.fromiter(aside, dtype=np.int64, count=len(aside))]  # each row's place, kept or -1
        groups = np.searchsorted(starts, where, side="right") - 1
        within = where - starts[np.maximum(groups, 0)]
        for values, p, group, i in zip(aside.values(), where.tolist(), groups.tolist(), within.tolist()):
            if p >= 0:
                extra.setdefault(group, {})[i] = values
    out = {}
    for group, (jid, start, end) in enumerate(zip(jobs.tolist(), starts.tolist(), ends.tolist())):
        out[jid] = PackedRows(data[start * ROW_BYTES:end * ROW_BYTES], extra.get(group))
    return out, max_run_id


def _register(store, sched, plans, by_job, results, names, upto, max_run_id, known) -> list["Job"]:
    """Build the stored jobs and hand them to the engine in one ``load()`` (nothing fires half-loaded)."""
    import pandas as pd

    from .sqlite import _result_chunks

    now = sched.clock.time()
    stored = []
    for jid, name, spec, trig, policy, func, paused, finished, next_ts, runs in plans:
        rows = by_job.pop(jid, None) or _NO_ROWS
        last = None
        if rows:
            scheduled = rows.column("scheduled")
            last = max(scheduled)
            if next_ts is not None and last >= next_ts:  # runs since the last checkpoint of the run count
                runs += sum(1 for i, t in enumerate(scheduled) if t >= next_ts and _counts_as_run(rows.row(i)))
        values = tuple((run_id, scheduled, value) for run_id, scheduled, _is_frame, value
                       in _result_chunks(results.pop(jid, []), json.loads, pd))
        resume_at = None if paused or finished else _resume_point(store, trig, name, last, next_ts, now)
        stored.append(StoredJob(name, func, trig, policy, spec.get("meta"), paused, finished, resume_at, runs,
                                rows, values))
    # jobs registered before restore(): their earlier history (this session's rows are in memory);
    # and a removed job's history stays queryable, as within a session
    older: dict[str, PackedRows] = {}
    for jid, rows in by_job.items():
        name = names.get(jid)
        if name is not None and rows and not (name in known and name in store._history_loaded):
            older[name] = rows
    loaded = sched.load(stored, history=older, run_ids_above=max_run_id)
    for job in loaded:
        store._jobs[job.name] = job
    store._history_loaded.update(job.name for job in loaded)
    store._history_loaded.update(older)
    store._applied_cursor = max(store._applied_cursor, upto)
    return loaded


def _resume_point(store, trig, name: str, last: float | None, next_ts: float | None, now: float) -> float | None:
    """Where a restored job picks up (overdue fire times then go through its misfire/coalesce policy)."""
    if name not in store._leases:
        return trig.next_timestamp(now)  # a live process runs it; we stand by from now on
    if next_ts is not None and (last is None or next_ts > last):
        return next_ts
    if last is not None:
        return trig.next_timestamp(last)
    return trig.next_timestamp(now)
