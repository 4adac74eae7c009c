"""Leases: which process runs which job when several share one store file.

A lease row (job -> owner) is valid while its owner's row is: not closed, ``expires`` (wall
clock) in the future.  The owner renews *all* its leases with one heartbeat (see the writer), so
renewal costs the same for 10 or 10,000 jobs.  ``claim()`` only reads memory: the job's entry in
``store._leases`` and the store's ``_valid_until``; and a scheduled fire skips it altogether while
every lease is held without a fence and the heartbeat is valid (``store.claims_free_until``).

A lease taken over from another process carries a *fence*: the last nominal fire time the old
holder may have run (its scheduler time at its last heartbeat plus the TTL, or when it released
the job).  The new holder runs only fire times after it, so no fire time runs twice even if the old
holder was merely frozen (SIGSTOP, a suspended laptop) rather than dead.
"""
from __future__ import annotations

import os
import socket
import sqlite3
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sqlite import SQLiteStore

__all__ = ["acquire_leases", "NO_FENCE"]

#: "Any fire time": the fence of a lease nobody else held.
NO_FENCE = float("-inf")
_NO_FROM = NO_FENCE


def acquire_leases(conn: sqlite3.Connection, store: "SQLiteStore", names, t: float) -> dict[str, float]:
    """Inside a transaction: take the leases of ``names`` that are free, released, or whose holder is
    gone (closed, expired, or a dead process on this host).

    Returns name -> the nominal fire time after which this process may run the job: any (-inf) for a
    lease nobody held, we held last, or whose holder died (its runs are in the history, which restore
    resumes from); otherwise the old holder's *fence* - the last fire time it may have run.
    """
    owner = store.owner_id
    current: dict[str, tuple] = {}
    chunk = list(names)
    for i in range(0, len(chunk), 500):
        part = chunk[i:i + 500]
        q = ("SELECT l.job, l.owner, l.released, o.expires, o.fence, o.closed FROM leases l "
             "LEFT JOIN owners o ON o.id = l.owner WHERE l.job IN (" + ",".join("?" * len(part)) + ")")
        for job, *rest in conn.execute(q, part):
            current[job] = rest
    got: dict[str, float] = {}
    inserts, updates = [], []
    dead: dict[int, bool] = {}
    for name in chunk:
        prev = current.get(name)
        if prev is None:
            inserts.append((name, owner))
            got[name] = _NO_FROM
            continue
        holder, released, expires, fence, closed = prev
        if holder == owner or expires is None:
            got[name] = _NO_FROM
        elif released is not None:
            got[name] = released
        elif closed is not None or expires < t:
            got[name] = fence
        else:
            if holder not in dead:
                dead[holder] = _owner_dead(conn, holder)
            if not dead[holder]:
                continue  # a live process runs it
            got[name] = _NO_FROM
        updates.append((owner, name))
    if inserts:
        conn.executemany("INSERT INTO leases(job, owner) VALUES (?,?)", inserts)
    if updates:
        conn.executemany("UPDATE leases SET owner = ?, released = NULL WHERE job = ?", updates)
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
