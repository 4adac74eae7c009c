"""nbsched.watch: patterns and debouncing with a FakeClock (fast), then real files in real time on
both backends (marked realtime; each test waits for batches, never for nothing)."""
import asyncio
import logging
import os
import shutil
import sys

import pytest

from nbsched.clock import SystemClock
from nbsched.errors import DurationError, TriggerError
from nbsched.testing import FakeClock
from nbsched import watch
from nbsched.watch import FileWatch, check_pattern


# ------------------------------------------------------------------------------------------ patterns
def test_relative_patterns_are_taken_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_pattern("data/*.csv") == f"{tmp_path}/data/*.csv"
    assert check_pattern("  ./data/../in/**/*.parquet  ") == f"{tmp_path}/in/**/*.parquet"
    assert check_pattern("/srv//landing/./x.csv") == "/srv/landing/x.csv"
    assert check_pattern(check_pattern("data/*.csv")) == f"{tmp_path}/data/*.csv"  # idempotent
    monkeypatch.setenv("HOME", "/home/ada")
    assert check_pattern("~/in/*.csv") == "/home/ada/in/*.csv"


@pytest.mark.parametrize("pattern, message", [
    ("", "empty file pattern '': give a glob such as 'data/*.csv' (relative to the working directory) "
         "or '/srv/landing/**/*.parquet'"),
    ("   ", "empty file pattern '   ': give a glob such as 'data/*.csv' (relative to the working directory) "
            "or '/srv/landing/**/*.parquet'"),
    ("/../etc/*.conf", "file pattern '/../etc/*.conf' climbs above the file-system root ('/../etc/*.conf'): "
                       "remove the extra '..' or give an absolute path such as '/data/*.csv'"),
    ("/data/*/../x.csv", "file pattern '/data/*/../x.csv' has '..' right after the wildcard '*': "
                         "write the directory it means instead"),
    ("/", "file pattern '/' names the file-system root, not files: add a file glob such as '/data/*.csv'"),
    (None, "file pattern must be a string glob such as 'data/*.csv', not NoneType None"),
])
def test_bad_patterns_are_refused_with_the_next_step(pattern, message):
    with pytest.raises(TriggerError) as info:
        check_pattern(pattern)
    assert str(info.value) == message


def test_a_relative_pattern_climbing_above_the_root_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    climb = "../" * (len(tmp_path.parts) + 1) + "x/*.csv"
    with pytest.raises(TriggerError, match=r"climbs above the file-system root"):
        check_pattern(climb)


@pytest.mark.parametrize("pattern, base, globs, recursive", [
    ("/d/*.csv", "/d", ("*.csv",), False),
    ("/d/today.csv", "/d", ("today.csv",), False),
    ("/d/2026-*/part-*.csv", "/d", ("2026-*", "part-*.csv"), True),
    ("/d/in/**/*.csv", "/d/in", ("**", "*.csv"), True),
    ("/*.csv", "/", ("*.csv",), False),
])
def test_pattern_splits_into_the_directory_to_watch_and_the_globs(pattern, base, globs, recursive):
    p = watch._Pattern(pattern)
    assert (p.base, p.globs, p.recursive) == (base, globs, recursive)


@pytest.mark.parametrize("path, expected", [
    ("/d/a.csv", True),
    ("/d/a.csv.tmp", False),
    ("/d/.a.csv", False),            # wildcards do not match a leading dot (temporary files)
    ("/d/sub/a.csv", False),          # '*' stays in one directory
    ("/d", False),
    ("/dx/a.csv", False),
])
def test_star_matches_visible_files_in_one_directory(path, expected):
    assert watch._Pattern("/d/*.csv").matches(path) is expected


@pytest.mark.parametrize("path, expected", [
    ("/d/a.csv", True),               # '**' matches zero directories
    ("/d/x/a.csv", True),
    ("/d/x/y/z/a.csv", True),
    ("/d/.hidden/a.csv", False),
    ("/d/x/a.txt", False),
])
def test_double_star_matches_any_depth(path, expected):
    assert watch._Pattern("/d/**/*.csv").matches(path) is expected


def test_only_directories_that_can_hold_matches_are_entered():
    p = watch._Pattern("/d/2026-*/part-*.csv")
    assert [p.may_contain(x) for x in ("/d", "/d/2026-01", "/d/2025-01", "/d/2026-01/sub", "/e")] == \
        [True, True, False, False, False]


def test_filesystem_type_reads_the_longest_mount(tmp_path):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "40 27 0:50 / /mnt/nfs\\040share rw,relatime shared:1 - nfs4 srv:/export rw\n"
    )
    assert watch._filesystem_type("/mnt/nfs share/in/x", str(mountinfo)) == "nfs4"
    assert watch._filesystem_type("/mnt/nfs", str(mountinfo)) == "ext4"


def test_backend_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("WATCHFILES_FORCE_POLLING", raising=False)
    monkeypatch.setattr(watch, "_filesystem_type", lambda path: "ext4")
    assert watch._choose_backend(str(tmp_path), None) == ("native", "native notifications")
    assert watch._choose_backend(str(tmp_path), 5.0) == ("polling", "poll=5s was given")
    monkeypatch.setattr(watch, "_filesystem_type", lambda path: "nfs4")
    assert watch._choose_backend("/mnt/in", None) == ("polling", "'/mnt/in' is on a nfs4 file system")
    monkeypatch.setattr(watch, "_filesystem_type", lambda path: "ext4")
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "1")
    assert watch._choose_backend(str(tmp_path), None) == ("polling", "WATCHFILES_FORCE_POLLING is set")
    monkeypatch.setenv("WATCHFILES_FORCE_POLLING", "false")
    assert watch._choose_backend(str(tmp_path), None)[0] == "native"


@pytest.mark.parametrize("kwargs, message", [
    ({"debounce": -1}, "debounce must be a number of seconds >= 0 (e.g. 1.0), not -1"),
    ({"debounce": "2s"}, "debounce must be a number of seconds >= 0 (e.g. 1.0), not '2s'"),
    ({"debounce": 1, "poll": 0}, "poll must be a number of seconds > 0 (e.g. 5.0) or None, not 0"),
])
async def test_bad_debounce_or_poll_is_refused(kwargs, message):
    with pytest.raises(DurationError) as info:
        FileWatch("/d/*.csv", on_batch=print, clock=FakeClock(), loop=asyncio.get_running_loop(), **kwargs)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------ batching
async def test_a_batch_is_delivered_once_nothing_changed_for_the_debounce():
    clock = FakeClock(start=1000.0)
    got = []
    batch = watch._Batcher(2.0, clock, asyncio.get_running_loop(), lambda paths: got.append((clock.time(), paths)))
    batch.add(["/d/b.csv"])
    await clock.advance(1.5)
    batch.add(["/d/a.csv", "/d/b.csv"])       # b changed again: the quiet period restarts
    await clock.advance(1.9)
    assert got == []
    batch.add(["/d/c.csv"])
    batch.discard(["/d/c.csv"])               # deleted before it settled: not delivered
    await clock.advance(1.99)
    assert got == []
    await clock.advance(0.01)
    assert got == [(1000.0 + 1.5 + 1.9 + 2.0, ["/d/a.csv", "/d/b.csv"])]
    await clock.advance(60)
    assert len(got) == 1 and clock.pending == 0
    batch.add([])                             # nothing changed: no timer
    assert clock.pending == 0


async def test_a_file_still_changing_when_its_batch_falls_due_pushes_the_batch_back():
    clock = FakeClock(start=1000.0)
    got = []
    disk = {"/d/a.csv": (1,), "/d/b.csv": (1,)}

    async def verify(paths):
        return {p: disk.get(p) for p in paths}

    batch = watch._Batcher(2.0, clock, asyncio.get_running_loop(),
                           lambda paths: got.append((clock.time(), paths)), verify)
    batch.add({"/d/a.csv": (1,), "/d/b.csv": (1,)})
    disk["/d/a.csv"] = (2,)                   # written again, and no event for it arrived (yet)
    await clock.advance(2.0)
    assert got == []                          # checked at 1002: a.csv changed, due again at 1004
    del disk["/d/b.csv"]                      # b.csv deleted: it leaves the batch
    await clock.advance(1.99)
    assert got == []
    await clock.advance(0.01)
    assert got == [(1004.0, ["/d/a.csv"])]


async def test_a_polling_batch_waits_for_a_scan_that_started_after_its_quiet_period():
    clock = FakeClock(start=1000.0)
    got = []
    batch = watch._Batcher(1.0, clock, asyncio.get_running_loop(),
                           lambda paths: got.append((clock.time(), paths)), gated=True)
    batch.add({"/d/a.csv": (1,)})             # found by the scan that started at 1000
    batch.observed(1000.0)
    await clock.advance(1.5)
    batch.add({"/d/b.csv": (1,)})             # the scan started at 1001.2 finds b.csv: one batch
    batch.observed(1001.2)
    await clock.advance(1.2)                  # 1002.7: quiet since 1001.5, but no scan has shown it
    assert got == []
    batch.observed(1002.6)                    # a scan started after 1002.5 found nothing new
    assert got == [(1002.7, ["/d/a.csv", "/d/b.csv"])]


async def test_a_native_batch_also_waits_for_events_still_on_their_way():
    clock = FakeClock(start=1000.0)
    got = []
    batch = watch._Batcher(1.0, clock, asyncio.get_running_loop(),
                           lambda paths: got.append((clock.time(), paths)), lag=0.5)
    batch.add({"/d/a.csv": (1,)})
    await clock.advance(1.2)
    batch.add({"/d/b.csv": (1,)})             # made at 1000.9, reported at 1001.2: same batch
    await clock.advance(1.49)
    assert got == []
    await clock.advance(0.01)
    assert got == [(1002.7, ["/d/a.csv", "/d/b.csv"])]


async def test_a_failing_callback_is_logged_and_the_watch_goes_on(caplog):
    clock = FakeClock(start=1000.0)
    calls = []

    def on_batch(paths):
        calls.append(paths)
        if len(calls) == 1:
            raise ValueError("callback bug")

    w = FileWatch("/nowhere/*.csv", debounce=1, on_batch=on_batch, clock=clock, loop=asyncio.get_running_loop())
    with caplog.at_level(logging.ERROR, logger="nbsched"):
        w._deliver(["/nowhere/a.csv"])      # what the batcher calls with each batch
        w._deliver(["/nowhere/b.csv"])
    assert calls == [["/nowhere/a.csv"], ["/nowhere/b.csv"]]
    assert "the callback for files '/nowhere/*.csv' raised (the watch goes on)" in caplog.text
    assert "ValueError: callback bug" in caplog.text


# -------------------------------------------------------------------------------- real files, real time
DEBOUNCE = 0.25
POLL = 0.1


class Batches:
    """on_batch for the real-time tests: records (clock time, paths) and lets a test await the next."""

    def __init__(self, clock):
        self.clock = clock
        self.got: list[tuple[float, list[str]]] = []
        self._new = asyncio.Event()

    def __call__(self, paths):
        self.got.append((self.clock.time(), paths))
        self._new.set()

    async def next(self, timeout=10.0):
        seen = len(self.got)
        while len(self.got) == seen:
            self._new.clear()
            await asyncio.wait_for(self._new.wait(), timeout)
        return self.got[seen]


@pytest.fixture(params=["native", "polling"])
def backend(request):
    return request.param


@pytest.fixture
async def start_watch(backend):
    """start_watch(pattern, debounce=...) -> (FileWatch, Batches), started and ready; closed after."""
    started = []

    async def make(pattern, debounce=DEBOUNCE):
        clock = SystemClock()
        batches = Batches(clock)
        w = FileWatch(str(pattern), debounce=debounce, on_batch=batches, clock=clock,
                      loop=asyncio.get_running_loop(), poll=None if backend == "native" else POLL)
        assert w.backend == backend
        started.append(w)
        w.start()
        await asyncio.wait_for(w.wait_ready(), 10)
        return w, batches

    yield make
    for w in started:
        await w.aclose()


def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(text)


@pytest.mark.realtime
async def test_a_new_file_fires_after_the_quiet_period_and_present_files_do_not(tmp_path, start_watch):
    data = tmp_path / "data"
    write(data / "old.csv")
    write(data / "notes.txt")
    w, batches = await start_watch(data / "*.csv")
    write(data / "notes.txt", "more")            # not matching
    written = batches.clock.time()
    write(data / "new.csv")
    at, paths = await batches.next()
    assert paths == [str(data / "new.csv")]        # old.csv was there before: it never fires
    assert at - written >= DEBOUNCE


@pytest.mark.realtime
async def test_modifying_a_present_file_fires_it_alone(tmp_path, start_watch):
    data = tmp_path / "data"
    for name in ("a.csv", "b.csv"):
        write(data / name)
    w, batches = await start_watch(data / "*.csv")
    write(data / "a.csv", "appended")
    assert (await batches.next())[1] == [str(data / "a.csv")]


@pytest.mark.realtime
async def test_rename_into_place_counts_and_hidden_temporaries_do_not(tmp_path, start_watch):
    data, staging = tmp_path / "data", tmp_path / "staging"
    data.mkdir()
    w, batches = await start_watch(data / "*.csv")
    write(data / ".x.csv.part", "half")            # a writer's hidden temporary file...
    os.replace(data / ".x.csv.part", data / "x.csv")   # ...renamed into place
    assert (await batches.next())[1] == [str(data / "x.csv")]
    write(staging / "y.csv")                        # moved in from another directory
    os.replace(staging / "y.csv", data / "y.csv")
    assert (await batches.next())[1] == [str(data / "y.csv")]


@pytest.mark.realtime
async def test_a_burst_of_100_files_is_one_batch(tmp_path, start_watch):
    data = tmp_path / "data"
    data.mkdir()
    w, batches = await start_watch(data / "*.csv")
    names = [f"part-{i:03d}.csv" for i in range(100)]
    for i, name in enumerate(reversed(names)):      # five rounds of 20, 0.15 s apart (< the debounce)
        write(data / name)
        if i % 20 == 19:
            await batches.clock.sleep(0.15)
    assert (await batches.next())[1] == [str(data / n) for n in names]
    write(data / "sentinel.csv")                    # the next batch holds only what came after
    assert (await batches.next())[1] == [str(data / "sentinel.csv")]
    assert len(batches.got) == 2


@pytest.mark.realtime
async def test_no_batch_while_a_file_keeps_changing(tmp_path, start_watch):
    data = tmp_path / "data"
    data.mkdir()
    w, batches = await start_watch(data / "*.csv", debounce=0.4)
    clock = batches.clock
    for i in range(8):                              # a write every 0.1 s for 0.8 s: never quiet
        write(data / "growing.csv", f"row {i}\n")
        last = clock.time()
        await clock.sleep(0.1)
    assert batches.got == []
    at, paths = await batches.next()
    assert paths == [str(data / "growing.csv")]
    assert at - last >= 0.4


@pytest.mark.realtime
async def test_a_deleted_directory_is_waited_for_and_its_new_files_fire(tmp_path, start_watch):
    data = tmp_path / "data"
    write(data / "old.csv")
    w, batches = await start_watch(data / "*.csv")
    shutil.rmtree(data)
    await batches.clock.sleep(0.2)                  # let the watch see the directory go
    write(data / "old.csv")                         # recreated: everything in it is new
    write(data / "new.csv")
    assert (await batches.next())[1] == [str(data / "new.csv"), str(data / "old.csv")]
    write(data / "later.csv")                       # and the watch goes on in the new directory
    assert (await batches.next())[1] == [str(data / "later.csv")]


@pytest.mark.realtime
async def test_a_missing_directory_is_waited_for(tmp_path, start_watch):
    land = tmp_path / "land" / "2026"
    w, batches = await start_watch(land / "*.csv")
    write(land / "a.csv")
    assert (await batches.next())[1] == [str(land / "a.csv")]


@pytest.mark.realtime
async def test_double_star_sees_new_subdirectories_and_directories_moved_in(tmp_path, start_watch):
    data = tmp_path / "data"
    write(data / "2026" / "old.csv")
    w, batches = await start_watch(data / "**" / "*.csv")
    write(data / "2026" / "12" / "a.csv")           # created in a new subdirectory
    assert (await batches.next())[1] == [str(data / "2026" / "12" / "a.csv")]
    staging = tmp_path / "staging" / "run-7"
    write(staging / "p1.csv")
    write(staging / "p2.csv")
    os.replace(staging, data / "run-7")             # a whole directory renamed into place
    assert (await batches.next())[1] == [str(data / "run-7" / "p1.csv"), str(data / "run-7" / "p2.csv")]


def _inotify_fds() -> int:
    fds = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            pass
    return fds


@pytest.mark.realtime
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts inotify descriptors")
async def test_stop_releases_the_os_watch_and_delivers_nothing_more(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    before = _inotify_fds()
    clock = SystemClock()
    batches = Batches(clock)
    w = FileWatch(str(data / "*.csv"), debounce=0.05, on_batch=batches, clock=clock, loop=asyncio.get_running_loop())
    assert w.backend == "native"
    w.start()
    await w.wait_ready()
    assert _inotify_fds() == before + 1
    write(data / "a.csv")
    assert (await batches.next())[1] == [str(data / "a.csv")]
    write(data / "b.csv")
    w.stop()
    w.stop()                                        # idempotent
    await w.aclose()
    for _ in range(200):                            # notify's own thread closes the descriptor just after
        if _inotify_fds() == before:
            break
        await clock.sleep(0.01)
    assert _inotify_fds() == before
    assert w._batch.pending == frozenset()
    await clock.sleep(0.5)                          # b.csv's batch would have been due long ago
    assert [paths for _, paths in batches.got] == [[str(data / "a.csv")]]
    with pytest.raises(RuntimeError, match="was stopped: create a new FileWatch"):
        w.start()


@pytest.mark.realtime
async def test_native_failure_falls_back_to_polling(tmp_path, monkeypatch, caplog):
    import watchfiles

    async def broken(*args, **kwargs):
        raise OSError("OS file watch limit reached")
        yield  # pragma: no cover

    monkeypatch.setattr(watchfiles, "awatch", broken)
    data = tmp_path / "data"
    data.mkdir()
    clock = SystemClock()
    batches = Batches(clock)
    w = FileWatch(str(data / "*.csv"), debounce=0.05, on_batch=batches, clock=clock, loop=asyncio.get_running_loop())
    try:
        with caplog.at_level(logging.WARNING, logger="nbsched"):
            w.start()
            await w.wait_ready()
            write(data / "a.csv")
            assert (await batches.next())[1] == [str(data / "a.csv")]
        assert w.backend == "polling"
        assert (f"native file watching failed for '{data}/*.csv' (OSError: OS file watch limit reached); "
                "polling every 1s instead") in caplog.text
    finally:
        await w.aclose()


@pytest.mark.realtime
async def test_polling_slower_than_the_debounce_still_waits_for_quiet(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    clock = SystemClock()
    batches = Batches(clock)
    w = FileWatch(str(data / "*.csv"), debounce=0.2, on_batch=batches, clock=clock,
                  loop=asyncio.get_running_loop(), poll=0.5)
    try:
        w.start()
        await w.wait_ready()
        for i in range(10):                         # a new file every 0.15 s for 1.5 s: 3 scans see some
            write(data / f"f{i}.csv")
            last = clock.time()
            await clock.sleep(0.15)
        assert batches.got == []
        at, paths = await batches.next()
        assert paths == [str(data / f"f{i}.csv") for i in range(10)]
        assert at - last >= 0.2
    finally:
        await w.aclose()
