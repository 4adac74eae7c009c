"""The store under faults: values it cannot encode, a full disk, a read-only file system, the file
deleted while attached, files other users could write.  Real files; real (tmpfs) mounts where the
machine allows them (root); real time only where the writer thread must retry (flush waits for it).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbsched
from nbsched.store import SQLiteStore, StoreError

UNENCODABLE_PREFIX = "<nbsched: not stored: "  # the marked placeholder (nbsched.store._codec)

pytestmark = pytest.mark.store

NOBODY = 65534


# ------------------------------------------------------------------------- values it cannot encode
class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("repr refused")

    __str__ = __repr__


def huge_int():
    return 10 ** 5000


def unprintable():
    return {"ok": 1, "bad": Unprintable()}


def fine():
    return {"n": 1}


async def test_a_value_the_store_cannot_encode_costs_that_value_only(clock, db, caplog):
    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=db)
    sched.add(huge_int, "every 10s")
    sched.add(unprintable, "every 10s")
    sched.add(fine, "every 10s")
    await clock.advance(10)
    sched.store.flush()  # the writer thread is alive and answers
    await clock.advance(10)
    sched.store.flush()
    assert sched.store.write_problem is None
    sched.shutdown()
    with SQLiteStore(db) as store:
        history = store.history()
        assert history["outcome"].astype(str).value_counts().to_dict() == {"success": 6}
        big = store.results("huge_int")["value"].tolist()
        assert len(big) == 2 and all(v.startswith(UNENCODABLE_PREFIX + "builtins.int: ValueError: ") for v in big)
        odd = store.results("unprintable")
        assert odd["ok"].tolist() == [1, 1]
        assert odd["bad"].tolist() == [f"{UNENCODABLE_PREFIX}test_store_faults.Unprintable: RuntimeError: repr refused>"] * 2
        assert store.results("fine")["n"].tolist() == [1, 1]
    assert "the value returned by job 'huge_int' (run 1) cannot be stored" in caplog.text


# ------------------------------------------------------------------------------- real mounts
def _can_mount() -> str | None:
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    return None


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted for the test (root only), unmounted afterwards."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk: Path) -> Path:
    """Fill the file system until writing fails; returns the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == 28  # ENOSPC
    finally:
        os.close(fd)
    return filler


def payload():
    return {"text": "x" * 300}


async def test_disk_full_flush_says_what_is_not_written_and_nothing_is_lost(clock, small_disk):
    db = small_disk / "jobs.db"
    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=db)
    sched.add(payload, "every 1s")
    await clock.advance(5)
    sched.store.flush()
    filler = _fill(small_disk)
    await clock.advance(200)
    with pytest.raises(StoreError) as info:
        sched.store.flush()
    message = str(info.value)
    assert message.startswith(f"not written to the store {str(db)!r}: ")
    assert "because the disk is full" in message and "They are kept in memory and written when" in message
    held = int(message.split(": ", 1)[1].split(" run records")[0])
    assert 0 < held <= 200
    assert sched.store.write_problem.startswith("the disk is full")
    # reopening on the full disk is a StoreError too, never a raw sqlite3 error
    with pytest.raises(StoreError, match="the disk is full"):
        SQLiteStore(db)
    filler.unlink()  # space returns: the records held in memory are written
    sched.store.flush()
    assert sched.store.write_problem is None
    sched.shutdown()
    with SQLiteStore(db) as store:
        assert len(store.history("payload")) == 205
        assert len(store.results("payload")) == 205


async def test_read_only_file_system_is_diagnosed_as_read_only(clock, small_disk):
    db = small_disk / "jobs.db"
    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=db)
    sched.add(fine, "every 1s")
    await clock.advance(3)
    sched.shutdown()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(StoreError) as info:
        SQLiteStore(db)
    message = str(info.value)
    assert message == (f"cannot use {str(db)!r} as an nbsched store: it is on a read-only file system, so nbsched "
                       "cannot record runs in it. Remount the file system read-write, or copy the file to a "
                       "writable disk and pass that path (the file was not changed)")
    assert "damaged" not in message and "move it aside" not in message
    with pytest.raises(StoreError) as info:
        SQLiteStore(small_disk / "new.db")
    assert str(info.value) == (f"cannot create the store {str(small_disk / 'new.db')!r}: it is on a read-only file "
                               "system. Remount the file system read-write, or pass a path on a writable disk")


# ------------------------------------------------------------------------------- deleted file
async def test_the_file_deleted_while_attached_is_noticed_and_said(clock, db, caplog):
    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, lease_ttl=0.4))
    sched.add(fine, "every 1s")
    await clock.advance(3)
    sched.store.flush()
    db.unlink()
    # the writer looks at the file at every lease renewal (every lease_ttl / 4 = 0.1 s)
    sched.store._call_writer(lambda writer: sched.store._check_file(writer), 5)
    await clock.advance(2)
    with pytest.raises(StoreError) as info:
        sched.store.flush()
    assert str(info.value).startswith(f"not written to the store {str(db)!r}: 2 run records and 2 returned values, "
                                      "because the store file was deleted while in use, so this process stopped "
                                      "writing to it")
    assert "Attach a store again, e.g. sched.attach_store(path)" in str(info.value)
    assert "the store file was deleted while in use" in caplog.text
    sched.shutdown()
    assert "2 run records and 2 values could not be written" in caplog.text


@pytest.mark.realtime
async def test_the_writer_notices_a_deleted_file_by_itself(clock, db):
    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, lease_ttl=0.4))
    sched.add(fine, "every 1s")
    await clock.advance(1)
    sched.store.flush()
    db.unlink()
    import threading

    noticed = threading.Event()
    for _ in range(500):  # the writer thread looks every 0.1 s (lease renewal); give it up to 10 s
        if sched.store.write_problem is not None or noticed.wait(0.02):
            break
    assert sched.store.write_problem is not None and "deleted while in use" in sched.store.write_problem
    sched.shutdown()


# ------------------------------------------------------------------------------- other users' files
def _as_root_only() -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("giving a file to another user (chown) needs root")


def test_a_store_owned_by_another_user_is_refused(db):
    _as_root_only()
    SQLiteStore(db).close()
    os.chown(db, NOBODY, NOBODY)
    with pytest.raises(StoreError) as info:
        SQLiteStore(db)
    assert str(info.value).startswith(f"refusing the store {str(db)!r}: the file belongs to ")
    assert "uid 65534" in str(info.value) and "its stored code would run as you on restore()" in str(info.value)


def test_a_store_others_can_write_is_refused(db):
    SQLiteStore(db).close()
    os.chmod(db, 0o666)
    with pytest.raises(StoreError) as info:
        SQLiteStore(db)
    assert str(info.value) == (f"refusing the store {str(db)!r}: other users can write to it (mode 0o666); its stored "
                               f"code would run as you on restore(). If you trust its contents, run `chmod go-w "
                               f"{str(db)!r}`, then open it again")
    os.chmod(db, 0o600)
    SQLiteStore(db).close()


def test_a_symlink_into_another_users_file_is_not_followed(tmp_path):
    _as_root_only()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # a world-writable directory, like /tmp
    theirs = shared / "theirs.db"
    SQLiteStore(theirs).close()
    os.chown(theirs, NOBODY, NOBODY)
    os.chmod(theirs, 0o666)
    before = theirs.read_bytes()
    link = tmp_path / "mine.db"
    link.symlink_to(theirs)
    with pytest.raises(StoreError) as info:
        SQLiteStore(link)
    assert str(info.value).startswith(f"refusing the store {str(link)!r} (a symbolic link to {str(theirs)!r}): the "
                                      "file belongs to ")
    assert theirs.read_bytes() == before
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(shared / "missing.db")
    with pytest.raises(StoreError, match="it is a symbolic link to a missing file"):
        SQLiteStore(dangling)
    assert not (shared / "missing.db").exists()


def test_a_symlinked_wal_file_is_refused(db):
    SQLiteStore(db).close()
    elsewhere = db.parent / "elsewhere"
    elsewhere.write_bytes(b"")
    Path(str(db) + "-wal").symlink_to(elsewhere)
    with pytest.raises(StoreError, match=r"its -wal file is a symbolic link"):
        SQLiteStore(db)


# ------------------------------------------------------------------------------- stored code
class _Described:
    """A callable that describes itself as a stored function target (as a notebook function does)."""

    def __init__(self, source: str):
        self.__nbsched_target__ = {"kind": "function", "module": "module_that_is_gone", "qualname": "job",
                                   "source": source}
        self.__name__ = "job"

    def __call__(self):
        return 1


HONEST = "def job():\n    return 1\n"
PAYLOAD = ("def job(when=__import__('builtins').__dict__.setdefault('NBSCHED_PAYLOAD', []).append('ran') or 1):\n"
           "    return when\n")


async def test_listing_shows_the_full_code_and_restore_names_code_this_notebook_did_not_write(clock, db):
    import builtins
    import warnings

    from nbsched.errors import NbschedWarning

    alice = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, writer="alice@host:/nb/report.ipynb"))
    alice.add(_Described(HONEST), "every 10s", name="job")
    alice.shutdown()
    mallory = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, writer="mallory@host:/tmp/x.ipynb"))
    mallory.add(_Described(PAYLOAD), "every 10s", name="job")
    mallory.shutdown()

    with SQLiteStore(db, writer="alice@host:/nb/report.ipynb") as store:
        listing = store.listing()
        assert listing.loc[0, "source"] == PAYLOAD  # the whole code, default arguments included
        assert store.code("job") == PAYLOAD
        digest = listing.loc[0, "code_hash"]
        assert len(digest) == 16 and listing.loc[0, "saved_by"] == "mallory@host:/tmp/x.ipynb"
        with pytest.raises(StoreError, match=r"no job named 'nope' in the store .*; its jobs: 'job'"):
            store.code("nope")

    sched = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, writer="alice@host:/nb/report.ipynb"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NbschedWarning)
        with pytest.raises(NbschedWarning) as info:
            sched.restore(namespace={})
    assert not hasattr(builtins, "NBSCHED_PAYLOAD")  # named before anything was executed
    message = str(info.value)
    assert message.startswith(f"restore() is about to execute stored code from {str(db)!r} that this notebook "
                              "(alice@host:/nb/report.ipynb) did not write:\n")
    assert (f"'job' (code {digest}, saved by mallory@host:/tmp/x.ipynb; this notebook last saved code "
            in message)
    assert "def job(when=__import__('builtins')" in message
    assert "See the full code with store.code(name) or store.listing()" in message
    sched.shutdown()

    # the writer of the current code restores without a word
    again = nbsched.Scheduler(clock=clock, tz="UTC", store=SQLiteStore(db, writer="mallory@host:/tmp/x.ipynb"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", NbschedWarning)
        try:
            assert [j.name for j in again.restore(namespace={})] == ["job"]
        finally:
            builtins.__dict__.pop("NBSCHED_PAYLOAD", None)
    again.shutdown()
