"""Watching files for ``on file PATTERN`` triggers: "run when new data lands".

    watch = FileWatch("data/*.csv", debounce=1.0, on_batch=print, clock=clock, loop=loop)
    watch.start()              # on the loop's thread; files present now never fire
    await watch.wait_ready()   # optional: the OS watch is armed (or the first scan is done)
    ...                        # on_batch(["/abs/data/a.csv", "/abs/data/b.csv"]) once a batch settles
    watch.stop()               # or ``await watch.aclose()`` to also wait until the OS watch is closed

The contract:

* **Pattern.** A glob, absolute or relative to the working directory when :func:`check_pattern`
  runs (``~`` expands), normalised lexically (``a/./b/../c`` is ``a/c``).  ``*``, ``?`` and
  ``[...]`` match within one path component, ``**`` (a whole component) matches any number of
  directories.  As in the shell, wildcards do not match a leading ``.``, so the hidden temporary
  files that writers rename into place (``.part-0001.csv.tmp``) are not data.  Only regular files
  fire (directories never do).  A pattern matching nothing, or whose directory does not exist
  yet, is fine: the watch waits.  An empty pattern, or one whose ``..`` climbs above the
  file-system root, is a :class:`~nbsched.errors.TriggerError`.
* **What fires.** A matching file created, modified (data or metadata, e.g. ``touch``) or renamed
  into place.  Deleting a file never fires (and removes it from a batch still settling).
  Files present when the watch starts do not fire until they change.
* **Debounce.** Changes are collected into one batch; the batch is delivered once *no* matching
  change has been seen for ``debounce`` seconds, as ``on_batch(sorted absolute paths)`` on the
  loop's thread, timed by the injected clock.  A file written continuously therefore delays its
  batch until the writer pauses for ``debounce``; a writer that pauses longer than ``debounce``
  mid-file should write elsewhere and rename into place.  An exception from ``on_batch`` is
  logged (logger ``nbsched``) with its traceback and the watch goes on.
* **Directories that come and go.** If the pattern's directory is missing, or is deleted while
  watched, the watch waits (checking every ``poll`` seconds, default 1 s) and resumes when it
  reappears; every matching file in the reappeared directory is new, so it fires.

Backends (``FileWatch.backend``):

* ``"native"``: the operating system's notifications (inotify on Linux, FSEvents on macOS,
  ReadDirectoryChangesW on Windows) through the maintained ``watchfiles`` package.  Idle cost,
  whatever the number of files: a helper thread (one per watch) wakes every 200 ms to collect
  events, and the directory is checked to be the same one every 10 s (bench/bench_watch.py
  measures it).  Events reach nbsched up to two wake-ups late, so a batch is handed over 0.5 s
  after its quiet period ends (a change made late in the quiet period is then still in time to
  join the batch): about 0.6-0.9 s after the debounce in all.  Only the directories the pattern
  can reach are watched: ``data/*.csv`` watches ``data`` alone, ``data/**/*.csv`` the tree below.
* ``"polling"``: a ``stat`` scan of the directories the pattern can reach every ``poll`` seconds,
  in a worker thread (about 10 ms of CPU per 1,000 files per scan); a batch is handed over after
  the first scan that started once its quiet period was over (so a poll interval longer than the
  debounce cannot split a batch; that scan is made as soon as the quiet period ends).
  Used when ``poll`` is given, when the directory is on a network or VM-shared file system
  (NFS, SMB/CIFS, sshfs, 9p, virtiofs, ...: the kernel there does not see changes made by other
  machines, see :data:`NETWORK_FILESYSTEMS`), when the environment variable
  ``WATCHFILES_FORCE_POLLING`` is set, when ``watchfiles`` cannot be imported, or when native
  watching fails (e.g. the inotify watch limit ``fs.inotify.max_user_watches`` is reached: a
  warning is logged and the watch switches to polling for good).  ``watchfiles``' own polling
  mode is not used: it refuses a directory that does not exist yet and rescans the whole tree.

This module is bottom layer: it imports only :mod:`nbsched.clock` and :mod:`nbsched.errors`
(``watchfiles`` lazily), and never reads the wall clock itself.
"""
from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
import stat
from typing import Awaitable, Callable, Iterable, Mapping

from .clock import Clock
from .errors import DurationError, TriggerError

__all__ = ["FileWatch", "check_pattern", "DEFAULT_DEBOUNCE", "DEFAULT_POLL", "NETWORK_FILESYSTEMS"]

log = logging.getLogger("nbsched")

#: Seconds a batch must stay quiet before it is delivered (the issue's default).
DEFAULT_DEBOUNCE = 1.0
#: Seconds between polling scans, and between checks for a missing watched directory.
DEFAULT_POLL = 1.0

#: File-system types (as in /proc/self/mountinfo) where native notifications miss changes made
#: elsewhere, so the polling backend is used.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "coda", "9p", "virtiofs", "drvfs",
    "vboxsf", "prl_fs", "vmhgfs", "ceph", "glusterfs", "lustre", "gpfs", "beegfs", "ocfs2", "gfs2",
    "fuse.sshfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.glusterfs", "fuse.juicefs",
    "fuse.cephfs", "fuse.vmhgfs-fuse", "fuse.mergerfs",
})

_WILDCARD = re.compile(r"[*?\[]")
# watchfiles' change codes (watchfiles.Change: added=1, modified=2, deleted=3)
_ADDED, _MODIFIED, _DELETED = 1, 2, 3
# watchfiles timing, in milliseconds: how often its thread looks for new events (its idle wake-up:
# 50 ms, watchfiles' default, cost 5x the idle CPU for 150 ms less latency), and the longest it
# groups a continuous stream of events before handing them over.
_STEP_MS = 200
_GROUP_MS = 400
#: Seconds between checks that the watched directory is still the one the OS watch is on.  Deleting
#: or renaming it is reported at once; this catches a parent directory renamed or replaced.
_RECHECK_S = 10.0


# ------------------------------------------------------------------------------------------ patterns
def check_pattern(pattern: str) -> str:
    """Validate and normalise a file pattern: the absolute glob :class:`FileWatch` watches.

    Relative patterns are taken from the current working directory (now), ``~`` expands, and
    ``.``/``..`` components are resolved lexically.  Raises :class:`~nbsched.errors.TriggerError`
    for a non-string or empty pattern, a ``..`` that climbs above the file-system root, a ``..``
    right after a wildcard, or a pattern naming only the root.  A pattern that matches nothing,
    or whose directory does not exist, is valid (the watch waits for it).
    """
    if not isinstance(pattern, str):
        raise TriggerError(
            f"file pattern must be a string glob such as 'data/*.csv', not {type(pattern).__name__} {pattern!r}"
        )
    text = pattern.strip()
    if not text:
        raise TriggerError(
            f"empty file pattern {pattern!r}: give a glob such as 'data/*.csv' "
            "(relative to the working directory) or '/srv/landing/**/*.parquet'"
        )
    if "\0" in text:
        raise TriggerError(f"file pattern {pattern!r} contains a NUL character: remove it")
    expanded = os.path.expanduser(text)
    absolute = expanded if os.path.isabs(expanded) else os.path.join(os.getcwd(), expanded)
    drive, path = os.path.splitdrive(absolute)
    parts: list[str] = []
    for part in re.split(r"[\\/]" if os.altsep else "/", path):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise TriggerError(
                    f"file pattern {pattern!r} climbs above the file-system root ({absolute!r}): "
                    "remove the extra '..' or give an absolute path such as '/data/*.csv'"
                )
            if _WILDCARD.search(parts[-1]):
                raise TriggerError(
                    f"file pattern {pattern!r} has '..' right after the wildcard {parts[-1]!r}: "
                    "write the directory it means instead"
                )
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        raise TriggerError(
            f"file pattern {pattern!r} names the file-system root, not files: "
            "add a file glob such as '/data/*.csv'"
        )
    return drive + os.sep + os.sep.join(parts)


def _name_matches(glob: str, name: str) -> bool:
    if name.startswith(".") and not glob.startswith("."):
        return False  # shell rule: wildcards do not match a leading dot
    return fnmatch.fnmatchcase(name, glob)


def _matches(globs: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Do path components ``names`` match pattern components ``globs`` (``**``: any directories)?"""
    if not globs:
        return not names
    head = globs[0]
    if head == "**":
        if _matches(globs[1:], names):
            return True
        return bool(names) and not names[0].startswith(".") and _matches(globs, names[1:])
    return bool(names) and _name_matches(head, names[0]) and _matches(globs[1:], names[1:])


def _may_contain(globs: tuple[str, ...], names: tuple[str, ...]) -> bool:
    """Can the directory ``names`` (below the base) hold files that match ``globs``?"""
    if not names:
        return True
    if not globs:
        return False
    head = globs[0]
    if head == "**":
        return all(not n.startswith(".") for n in names) or _may_contain(globs[1:], names)
    return len(globs) > 1 and _name_matches(head, names[0]) and _may_contain(globs[1:], names[1:])


class _Pattern:
    """A normalised pattern split into the literal directory to watch and the globs below it."""

    def __init__(self, pattern: str):
        drive, path = os.path.splitdrive(pattern)
        parts = [p for p in path.split(os.sep) if p]
        first = next((i for i, p in enumerate(parts) if _WILDCARD.search(p)), len(parts) - 1)
        self.base = drive + os.sep + os.sep.join(parts[:first])
        self.globs = tuple(parts[first:])
        #: whether files can sit in subdirectories of the base (then the native watch is recursive)
        self.recursive = len(self.globs) > 1 or "**" in self.globs
        # the common one-component case ('data/*.csv') as one compiled regex: scans stay cheap
        single = len(self.globs) == 1 and self.globs[0] != "**"
        self._single = re.compile(fnmatch.translate(self.globs[0])).match if single else None
        self._dot_ok = self.globs[0].startswith(".")

    def _names(self, path: str) -> tuple[str, ...] | None:
        if path == self.base:
            return ()
        prefix = self.base if self.base.endswith(os.sep) else self.base + os.sep
        if not path.startswith(prefix):
            return None
        return tuple(n for n in path[len(prefix):].split(os.sep) if n)

    def matches(self, path: str) -> bool:
        names = self._names(path)
        return names is not None and self.matches_names(names)

    def may_contain(self, path: str) -> bool:
        names = self._names(path)
        return names is not None and _may_contain(self.globs, names)

    def matches_names(self, names: tuple[str, ...]) -> bool:
        """Do the components ``names`` below the base match?"""
        if self._single is not None:
            return (len(names) == 1 and (self._dot_ok or not names[0].startswith("."))
                    and self._single(names[0]) is not None)
        return bool(names) and _matches(self.globs, names)


# --------------------------------------------------------------------------------------- file system
def _signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def _scan(pattern: _Pattern, top: str | None = None) -> dict[str, tuple]:
    """Every regular file matching ``pattern`` below ``top`` (default its base): path -> signature.

    Reads only directories the pattern can reach; a missing or unreadable directory is empty.
    Runs in a worker thread (it may stat thousands of files).
    """
    found: dict[str, tuple] = {}
    seen_dirs: set[tuple[int, int]] = set()  # symlink loops under '**'

    def walk(directory: str, names: tuple[str, ...]) -> None:
        try:
            entries = os.scandir(directory)
        except OSError:
            return
        with entries:
            for entry in entries:
                child = (*names, entry.name)
                try:
                    if entry.is_dir():
                        if _may_contain(pattern.globs, child):
                            st = entry.stat()
                            if (st.st_dev, st.st_ino) not in seen_dirs:
                                seen_dirs.add((st.st_dev, st.st_ino))
                                walk(entry.path, child)
                    elif pattern.matches_names(child):
                        st = entry.stat()
                        if stat.S_ISREG(st.st_mode):
                            found[entry.path] = _signature(st)
                except OSError:
                    continue  # vanished between listing and stat

    top = top or pattern.base
    start = pattern._names(top)
    if start is not None:
        walk(top, start)
    return found


def _classify(pattern: _Pattern, paths: list[str]) -> tuple[dict[str, tuple], list[str]]:
    """(matching regular files -> signature, paths that no longer exist) among ``paths``;
    directories that may hold matches are scanned and their files included.  Worker thread."""
    files: dict[str, tuple] = {}
    missing: list[str] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if stat.S_ISREG(st.st_mode):
            if pattern.matches(path):
                files[path] = _signature(st)
        elif stat.S_ISDIR(st.st_mode) and pattern.recursive and pattern.may_contain(path):
            files.update(_scan(pattern, path))
    return files, missing


def _signatures(paths: list[str]) -> dict[str, tuple | None]:
    """path -> signature now (None if it is no longer a regular file).  Worker thread."""
    out: dict[str, tuple | None] = {}
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out[path] = None
            continue
        out[path] = _signature(st) if stat.S_ISREG(st.st_mode) else None
    return out


def _directory_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the directory at ``path``, or None if there is no directory there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def _filesystem_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the file system holding ``path`` (the mount point that is its longest prefix),
    from ``mountinfo`` (Linux); None where that cannot be read."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    path = os.path.realpath(path)  # a directory not created yet will be on the mount holding its place
    best, best_type = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, best_type = mount, right.split()[0]
    return best_type


def _choose_backend(base: str, poll: float | None) -> tuple[str, str]:
    """("native" | "polling", why) for a watch of ``base``."""
    if poll is not None:
        return "polling", f"poll={poll:g}s was given"
    forced = os.environ.get("WATCHFILES_FORCE_POLLING", "")
    if forced and forced.lower() not in ("false", "disable", "disabled"):
        return "polling", "WATCHFILES_FORCE_POLLING is set"
    fstype = _filesystem_type(base)
    if fstype in NETWORK_FILESYSTEMS:
        return "polling", f"{base!r} is on a {fstype} file system"
    try:
        import watchfiles  # noqa: F401
    except ImportError as exc:
        return "polling", f"watchfiles cannot be imported ({exc})"
    return "native", "native notifications"


# ------------------------------------------------------------------------------------------ batching
class _Batcher:
    """Collects changed files and hands them over once nothing has changed for ``debounce`` s.

    One timer at a time: a change only moves the due time; when the timer fires early (because
    changes came in since it was armed, or the clock capped its horizon) it re-arms for the due time.

    Events arrive late and in steps, so a quiet gap between arrivals alone does not prove the files
    were quiet.  Three guards, each optional:

    * ``lag``: events may take up to this long to arrive (native reads): the batch waits for the
      quiet period plus ``lag``, so a change made inside the quiet period is seen before it ends;
    * :meth:`observed`: the caller reports up to what time changes are known (polling: the start of
      the last completed scan); a batch is handed over only once that reaches the end of its quiet
      period, so a scan interval longer than the debounce cannot split a batch;
    * ``verify`` (async: paths -> {path: signature now, or None if gone}): when the batch falls due
      each file is checked; one that changed since it was last seen pushes the batch back by another
      ``debounce`` (a native read reports a file once however often it was written), one that is
      gone leaves the batch.
    """

    def __init__(self, debounce: float, clock: Clock, loop: asyncio.AbstractEventLoop,
                 emit: Callable[[list[str]], None],
                 verify: Callable[[list[str]], Awaitable[dict[str, tuple | None]]] | None = None,
                 lag: float = 0.0, gated: bool = False):
        self._debounce = debounce
        self._clock = clock
        self._loop = loop
        self._emit = emit
        self._verify = verify
        self._lag = lag
        self._observed = float("-inf") if gated else None
        self._parked = False  # due, waiting for observed() to catch up
        self._pending: dict[str, tuple | None] = {}  # path -> signature when last seen changing
        self._due = 0.0
        self._timer = None
        self._checking: asyncio.Task | None = None

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    @property
    def due(self) -> float | None:
        """When the pending batch's quiet period ends (None: nothing pending)."""
        return self._due if self._pending else None

    def add(self, changes: Mapping[str, tuple | None] | Iterable[str]) -> None:
        """Record changed files (a mapping path -> signature, or just paths) and restart the quiet period."""
        items = changes.items() if isinstance(changes, Mapping) else [(path, None) for path in changes]
        if not items:
            return
        self._pending.update(items)
        self._due = self._clock.time() + self._debounce
        self._arm()

    def discard(self, paths: Iterable[str]) -> None:
        for path in paths:
            self._pending.pop(path, None)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._checking is not None:
            self._checking.cancel()
            self._checking = None
        self._pending.clear()

    def observed(self, until: float) -> None:
        """Changes up to clock time ``until`` have all been reported (ignored unless ``gated``)."""
        if self._observed is None:
            return
        self._observed = until
        if self._parked and until >= self._due:
            self._parked = False
            self._fire()

    def _arm(self) -> None:
        if self._timer is None and self._checking is None:
            self._parked = False
            self._timer = self._clock.call_at(self._due + self._lag, self._fire, self._loop)

    def _fire(self) -> None:
        self._timer = None
        if self._clock.time() < self._due + self._lag:
            self._arm()
        elif self._observed is not None and self._observed < self._due:
            self._parked = True  # observed() fires it
        elif self._verify is None:
            self._hand_over()
        elif self._pending:
            self._checking = self._loop.create_task(self._check(dict(self._pending)))

    async def _check(self, seen: dict[str, tuple | None]) -> None:
        try:
            now = await self._verify(list(seen))
        except Exception:  # never lose the batch over a failed check: hand it over unverified
            log.exception("nbsched: checking that changed files are quiet failed")
            now = seen
        finally:
            self._checking = None
        for path, signature in now.items():
            if path not in self._pending or self._pending[path] != seen[path]:
                continue  # deleted or changed again while we looked: the newer news wins
            if signature is None:
                del self._pending[path]
            elif signature != seen[path]:
                self._pending[path] = signature
                self._due = max(self._due, self._clock.time() + self._debounce)
        if self._clock.time() < self._due + self._lag:
            self._arm()
        else:
            self._hand_over()

    def _hand_over(self) -> None:
        paths = sorted(self._pending)
        self._pending.clear()
        if paths:
            self._emit(paths)


# ------------------------------------------------------------------------------------------ the watch
class FileWatch:
    """Watch ``pattern`` and call ``on_batch(sorted paths)`` once each batch of changes settles.

    ``debounce``: seconds of quiet before a batch is delivered.  ``clock``: times the debounce and
    the polling.  ``loop``: where everything runs (``on_batch`` too).  ``poll``: ``None`` picks the
    backend automatically (see the module docstring); a number forces the polling backend with that
    interval in seconds.  ``backend`` says which backend is in use (``"native"`` or ``"polling"``;
    it changes to ``"polling"`` if native watching fails).

    :meth:`start`, :meth:`stop` and :meth:`aclose` must be called on the loop's thread.
    """

    def __init__(self, pattern: str, *, debounce: float, on_batch: Callable[[list[str]], None],
                 clock: Clock, loop: asyncio.AbstractEventLoop, poll: float | None = None):
        self.pattern = check_pattern(pattern)
        if isinstance(debounce, bool) or not isinstance(debounce, (int, float)) or not debounce >= 0:
            raise DurationError(f"debounce must be a number of seconds >= 0 (e.g. 1.0), not {debounce!r}")
        if poll is not None and (isinstance(poll, bool) or not isinstance(poll, (int, float)) or not poll > 0):
            raise DurationError(f"poll must be a number of seconds > 0 (e.g. 5.0) or None, not {poll!r}")
        self.debounce = float(debounce)
        self.poll = None if poll is None else float(poll)
        self._on_batch = on_batch
        self._clock = clock
        self._loop = loop
        self._pattern = _Pattern(self.pattern)
        self._interval = self.poll if self.poll is not None else DEFAULT_POLL
        self.backend, self._why = _choose_backend(self._pattern.base, self.poll)
        self._batch = self._batcher()
        self._task: asyncio.Task | None = None
        self._ready: asyncio.Future | None = None
        self._stop_event: asyncio.Event | None = None
        self._closing: set[asyncio.Future] = set()  # native reads still finishing after stop()
        self._stopped = False

    def _batcher(self) -> _Batcher:
        if self.backend == "native":  # a read reports events within two watchfiles steps
            return _Batcher(self.debounce, self._clock, self._loop, self._deliver, self._signatures,
                            lag=2 * _STEP_MS / 1000 + 0.1)
        return _Batcher(self.debounce, self._clock, self._loop, self._deliver, gated=True)

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._task else "new"
        return f"FileWatch({self.pattern!r}, backend={self.backend!r}, debounce={self.debounce:g}, {state})"

    # -- public --------------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin watching on the loop (call on its thread).  Files present now never fire."""
        if self._stopped:
            raise RuntimeError(f"{self!r} was stopped: create a new FileWatch to watch again")
        if self._task is not None:
            return
        self._ready = self._loop.create_future()
        self._task = self._loop.create_task(self._run(), name=f"nbsched:watch {self.pattern}")

    async def wait_ready(self) -> None:
        """Return once changes are being watched: the OS watch is armed (or the missing directory is
        being waited for), or the polling backend's first scan is done."""
        if self._ready is None:
            raise RuntimeError(f"{self!r} was not started: call start() first")
        await asyncio.shield(self._ready)

    def stop(self) -> None:
        """Stop watching (idempotent).  No batch is delivered after this; a batch still settling is
        dropped.  The OS watch is released within one watchfiles step, 200 ms (:meth:`aclose`
        waits for that)."""
        if self._stopped:
            return
        self._stopped = True
        self._batch.cancel()
        if self._stop_event is not None:
            self._stop_event.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._mark_ready()  # nothing more to wait for

    async def aclose(self) -> None:
        """:meth:`stop`, then wait until the watch's task and its reads have ended (the OS watch is
        then closed: the notification library's own thread releases it moments later)."""
        self.stop()
        waits = [f for f in (self._task, *self._closing) if f is not None]
        if waits:
            await asyncio.wait(waits)

    # -- delivery ------------------------------------------------------------------------------------
    def _deliver(self, paths: list[str]) -> None:
        if self._stopped:
            return
        try:
            self._on_batch(paths)
        except Exception:
            log.exception("nbsched: the callback for files %r raised (the watch goes on)", self.pattern)

    def _mark_ready(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    async def _changed(self, changes: Iterable[tuple[int, str]]) -> None:
        """Feed one group of native changes to the batch.  Deleted paths leave it at once; added or
        modified ones are looked at in a worker thread (never stat on the loop): regular files that
        match join the batch, directories that appeared are scanned (their files raise no events of
        their own), paths gone again leave it."""
        kinds: dict[str, set[int]] = {}
        for change, path in changes:
            kinds.setdefault(path, set()).add(change)
        pattern = self._pattern
        gone, look = [], []
        for path, seen in kinds.items():
            if seen == {_DELETED}:
                gone.append(path)
            elif pattern.matches(path) or (pattern.recursive and pattern.may_contain(path)):
                look.append(path)  # with both 'deleted' and 'added' in one group, the disk decides
        self._batch.discard(gone)
        if look:
            files, missing = await self._loop.run_in_executor(None, _classify, pattern, look)
            if not self._stopped:
                self._batch.discard(missing)
                self._batch.add(files)

    async def _signatures(self, paths: list[str]) -> dict[str, tuple | None]:
        return await self._loop.run_in_executor(None, _signatures, paths)

    async def _scan(self, top: str | None = None) -> dict[str, tuple]:
        return await self._loop.run_in_executor(None, _scan, self._pattern, top)

    # -- the task ------------------------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            if self.backend == "native":
                await self._run_native()
            if not self._stopped:
                await self._run_polling()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not vanish inside a task nobody awaits
            log.exception("nbsched: watching files %r failed; no more batches will be delivered", self.pattern)
            self._mark_ready()

    async def _run_native(self) -> None:
        """Watch with OS notifications until stopped; return to fall back to polling."""
        import watchfiles

        base = self._pattern.base
        fresh = False  # True once the base (re)appeared after start: every file in it is new
        while not self._stopped:
            identity = _directory_identity(base)
            if identity is None:
                self._mark_ready()
                fresh = True
                await self._clock.sleep(self._interval)
                continue
            self._stop_event = stop_event = asyncio.Event()
            changes = watchfiles.awatch(
                base, watch_filter=None, debounce=_GROUP_MS, step=_STEP_MS, stop_event=stop_event,
                rust_timeout=int(_RECHECK_S * 1000), yield_on_timeout=True,
                recursive=self._pattern.recursive, force_polling=False, ignore_permission_denied=True,
            )
            # awatch opens the OS watch synchronously in its first step, before it waits in a thread.
            # Callbacks run in order, so once `opened` has run that first step has run too.
            first = self._read(changes)
            opened = self._loop.create_future()
            self._loop.call_soon(opened.set_result, None)
            await opened
            if self._stopped:
                return
            if first.done() and first.exception() is not None:
                exc = first.exception()
                if isinstance(exc, FileNotFoundError):  # the directory went away in between
                    fresh = True
                    await self._clock.sleep(self._interval)
                    continue
                self._fall_back(exc)
                return
            try:
                if fresh:
                    self._batch.add(await self._scan())
                fresh = False
                self._mark_ready()
                reader = first
                while True:
                    try:
                        batch = await asyncio.shield(reader)
                    except StopAsyncIteration:
                        return  # stopped
                    except (OSError, RuntimeError) as exc:  # e.g. the inotify watch limit, a queue overflow
                        self._fall_back(exc)
                        return
                    # The directory itself deleted or renamed away: its OS watch is dead (and a new
                    # directory there may even reuse its inode number).  Otherwise, every _RECHECK_S,
                    # make sure it is still the same directory (a parent may have been replaced).
                    if any(change == _DELETED and path == base for change, path in batch) or (
                            not batch and _directory_identity(base) != identity):
                        fresh = True
                        break
                    reader = self._read(changes)  # keep the OS watch drained while we look
                    await self._changed(batch)
            finally:
                stop_event.set()  # this OS watch is done with (its read ends within one step)

    def _read(self, changes) -> asyncio.Future:
        """The next item of the awatch generator, as a task that finishes even if we are cancelled
        (so the generator always gets to close its OS watch); kept until done."""
        task = asyncio.ensure_future(changes.__anext__(), loop=self._loop)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        task.add_done_callback(_consume)
        return task

    def _fall_back(self, exc: BaseException) -> None:
        log.warning("nbsched: native file watching failed for %r (%s: %s); polling every %gs instead",
                    self.pattern, type(exc).__name__, exc, self._interval)
        self.backend, self._why = "polling", f"native watching failed ({exc})"
        pending = self._batch.pending
        self._batch.cancel()
        self._batch = self._batcher()
        self._batch.add(pending)

    async def _run_polling(self) -> None:
        known = await self._scan()  # files present now never fire
        self._mark_ready()
        while not self._stopped:
            # A pending batch needs one scan after its quiet period to be handed over: do not make
            # it wait a whole interval for that scan (but never scan more than 10x as often).
            delay, due = self._interval, self._batch.due
            if due is not None:
                delay = min(delay, max(due - self._clock.time(), self._interval / 10))
            await self._clock.sleep(delay)
            started = self._clock.time()
            now = await self._scan()
            if self._stopped:
                return
            self._batch.discard([p for p in known if p not in now])
            self._batch.add({p: sig for p, sig in now.items() if known.get(p) != sig})
            self._batch.observed(started)
            known = now


def _consume(task: asyncio.Future) -> None:
    """Mark a read's exception retrieved (a read abandoned by stop() must not log 'never retrieved')."""
    if not task.cancelled():
        task.exception()
