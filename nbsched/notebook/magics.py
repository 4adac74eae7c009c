"""``%%schedule`` and ``%schedule``: thin adapters over the Python API.

The cell magic parses its line, compiles the body once (:mod:`nbsched.notebook.cell`), wraps it so its output
goes to the job's own area (:mod:`nbsched.notebook.kernel`), calls :meth:`Scheduler.add` and returns the
job's live card.  Bad input raises ``UsageError`` (so "Run All" stops) and adds nothing.
"""
from __future__ import annotations

import hashlib
import inspect
import logging
import re
import shlex
import sys
import threading
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from .. import events as ev
from .._durations import parse_duration
from ..errors import NbschedError
from ..job import COALESCE_CHOICES, TRIGGER_RULES, Job
from ..engine import Scheduler, get_scheduler

log = logging.getLogger("nbsched")

SUBCOMMANDS = ("list", "pause", "resume", "run", "remove", "history", "results", "timeline", "preview", "stop",
               "dashboard", "store", "restore", "backfill", "notebook", "graph", "cluster", "help")


def _state() -> "_KernelState":
    global _STATE
    if _STATE is None:
        _STATE = _KernelState()
    return _STATE


_STATE: "_KernelState | None" = None


class _KernelState:
    """What the extension keeps per kernel: the scheduler, cards, --into bindings, the cell id."""

    def __init__(self) -> None:
        self.shell = None
        self.cards: dict[str, Any] = {}
        self.into: dict[str, str] = {}
        self.cell_id: str | None = None
        self.subscription = None
        self.refresher = None
        self.cluster = None  # a LocalCluster started by %schedule cluster (closed with the scheduler)
        self.client = None  # the asynchronous client %schedule cluster opened

    def close_cluster(self) -> None:
        """Close the cluster %schedule cluster started (an existing cluster is left running)."""
        cluster, self.cluster = self.cluster, None
        client, self.client = self.client, None
        if client is not None and client.status not in ("closed", "closing"):
            import asyncio

            closing = None
            try:
                closing = client.close()  # an asynchronous client returns the coroutine to run
                if inspect.isawaitable(closing):
                    asyncio.ensure_future(closing)
            except Exception:  # noqa: BLE001 - best effort (no running loop: the kernel is going away)
                if inspect.iscoroutine(closing):
                    closing.close()
        if cluster is not None:
            try:
                cluster.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the processes end with the kernel
                pass

    def scheduler(self) -> Scheduler:
        from .kernel import kernel_loop

        sched = get_scheduler(create=False)
        if sched is None:
            loop = kernel_loop()
            # the kernel's main loop runs on the main thread; calls from subshells are handed over
            # outside a kernel (terminal IPython) there is no running loop: the scheduler gets its own
            sched = get_scheduler(loop=loop, loop_thread=threading.main_thread().ident if loop is not None else None,
                                  background=loop is None)
            self._watch(sched)
        elif self.subscription is None or self.subscription._bus is not sched.events:
            self._watch(sched)
        return sched

    def _watch(self, sched: Scheduler) -> None:
        # only the jobs with a card or an --into binding: the events of every other job (thousands
        # added with the Python API) are then never built, so their fires cost the kernel nothing extra
        if self.subscription is not None:
            self.subscription.unsubscribe()
        self.subscription = sched.subscribe(self._on_event, kinds=ev.JobEvent, jobs=self)

    def __contains__(self, name: object) -> bool:
        """Whether job ``name`` has a card or an --into binding (what the subscription listens to)."""
        return name in self.cards or name in self.into

    def _on_event(self, event: ev.JobEvent) -> None:
        var = self.into.get(event.job)
        if var is not None and isinstance(event, (ev.JobExecuted,)) and self.shell is not None:
            sched = self.scheduler()
            try:
                self.shell.user_ns[var] = sched.results(event.job)
            except Exception:
                pass
        card = self.cards.get(event.job)
        if card is not None:
            card.mark_dirty()
        if isinstance(event, (ev.JobRemoved,)):
            self.into.pop(event.job, None)


# ---------------------------------------------------------------------------------- the cell job
class CellJob:
    """A compiled cell as a job function: output routed to the job's sink, interruptible, errors shown."""

    def __init__(self, compiled: Any, sink: Any, source: str, line: str, name: str):
        self.compiled = compiled
        self.sink = sink
        self.__name__ = name
        self.__qualname__ = name
        self.__nbsched_target__ = {"kind": "cell", "source": source, "line": line, "name": name}

    def __call__(self) -> Any:
        from .kernel import route_output, sync_job_running

        sink = self.sink
        try:
            with route_output(sink), sync_job_running():
                value = self.compiled()
        except BaseException as exc:
            self._show(exc)
            raise
        if inspect.isawaitable(value):
            return self._await(value)
        return value

    def nbsched_remote(self) -> Any:
        """One run's shipment to a cluster worker (used by the dask executor; see nbsched.notebook.remote)."""
        from .remote import prepare

        return prepare(self.compiled, self.sink, self.__name__)

    async def _await(self, coro: Any) -> Any:
        from .kernel import interruptible, route_output

        sink = self.sink
        with route_output(sink):
            try:
                return await interruptible(coro)
            except BaseException as exc:
                self._show(exc)
                raise

    def _show(self, exc: BaseException) -> None:
        """Show a failure where the job's output goes: its area in a kernel, stderr in a terminal."""
        if self.sink is not None:
            self.sink.show_exception(exc)
        elif isinstance(exc, Exception):  # (a cancellation or interrupt is recorded, not shouted)
            import sys
            import traceback

            sys.stderr.write(f"[nbsched] job {self.__name__!r} failed:\n"
                             + "".join(traceback.format_exception(exc)))


def _default_name(body: str, cell_id: str | None) -> str:
    """A readable name, stable for the cell: the first assigned/called name + a short hash."""
    base = "cell"
    try:
        import ast

        tree = ast.parse(body)
        for node in tree.body:
            target = None
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                tgt = node.targets[0] if isinstance(node, ast.Assign) else node.target
                target = getattr(tgt, "id", None) or getattr(tgt, "attr", None)
            elif isinstance(node, ast.Expr):
                value = node.value.value if isinstance(node.value, ast.Await) else node.value
                if isinstance(value, ast.Call):
                    fn = value.func
                    target = getattr(fn, "id", None) or getattr(fn, "attr", None)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if target:
                base = re.sub(r"[^A-Za-z0-9_]", "", target)[:24] or "cell"
                break
    except SyntaxError:
        pass
    key = cell_id or body
    return f"{base}-{hashlib.sha1(key.encode()).hexdigest()[:4]}"


def _split_line(line: str) -> tuple[str, list[str]]:
    """SPEC words up to the first ``--option``; the rest are options."""
    try:
        tokens = shlex.split(line, posix=True)
    except ValueError as exc:
        raise UsageError(f"cannot read the %%schedule line {line!r}: {exc}") from None
    for i, tok in enumerate(tokens):
        if tok.startswith("--"):
            return " ".join(tokens[:i]), tokens[i:]
    return " ".join(tokens), []


def _policy_options(args: Any, sched: Scheduler, keys: tuple[str, ...]) -> dict[str, Any]:
    """The policy options a magic line gave (``keys`` as they are, plus --until and --rule)."""
    options = {key: getattr(args, key) for key in keys if getattr(args, key) is not None}
    if args.until is not None:
        options["until"] = _until(args.until, sched, args.tz)
    if args.rule is not None:
        options["trigger_rule"] = args.rule
    return options


def _until(value: str, sched: Scheduler, tz: Any) -> float:
    from ..triggers import parse_trigger

    try:
        return parse_trigger(f"at {value}", tz=tz or sched.tz, now=sched.clock.time()).next_timestamp(float("-inf"))
    except NbschedError:
        pass
    try:
        return sched.clock.time() + parse_duration(value, what="--until")
    except NbschedError:
        raise UsageError(
            f"invalid --until {value!r}: give a date/time ('2026-12-01 18:00', '18:00') or a duration from now ('2h')"
        ) from None


def _parse_options(magic: Any, tokens: list[str]) -> Any:
    """Parse the ``--options`` of ``%%schedule``; a mistyped option gets a "did you mean" hint."""
    try:
        # the tokens are already split the shell's way (quotes removed): parse them as they are
        # (IPython's parse_argstring would split again without POSIX rules and keep the quotes)
        return magic.parser.parse_args(tokens)
    except UsageError as exc:
        import difflib

        known = [opt for action in magic.parser._actions for opt in action.option_strings if opt.startswith("--")]
        for token in tokens:
            option = token.split("=", 1)[0]
            if option.startswith("--") and option not in known:
                close = difflib.get_close_matches(option, known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}? " if close else ""
                raise UsageError(f"unknown %%schedule option {option!r}: {hint}(options: {', '.join(known)}; "
                                 "see '%%schedule?')") from None
        raise UsageError(f"{exc} (see '%%schedule?')") from None


@magics_class
class ScheduleMagics(Magics):
    @magic_arguments(name="%schedule")  # the usage line then reads '%%schedule' (IPython adds one '%')
    @argument("SPEC", nargs="*", help="when to run: 'every 5m', 'cron 0 9 * * mon-fri', 'daily at 09:30', "
                                       "'at 2026-12-01 09:00', 'in 10m', 'after prices' (see nbsched.parse_trigger)")
    @argument("--name", help="job name (default: derived from the cell, stable when the cell is re-run)")
    @argument("--tz", help="IANA time zone for cron/at/daily specs (default: the scheduler's, local)")
    @argument("--max-runs", type=int, help="stop after this many runs")
    @argument("--until", help="no runs after this time ('2026-12-01 18:00', '18:00', or a duration like '2h')")
    @argument("--retries", type=int, help="further attempts after a failure (default 0)")
    @argument("--retry-delay", help="wait before the first retry (default 1s)")
    @argument("--backoff", type=float, help="multiply the retry delay by this each time (default 2)")
    @argument("--max-retry-delay", help="longest wait between retries (default 5m)")
    @argument("--timeout", help="stop a run after this long (e.g. 30s)")
    @argument("--jitter", help="random delay up to this much added to each fire time")
    @argument("--max-instances", type=int, help="runs allowed at once (default 1; extra fires are skipped)")
    @argument("--coalesce", choices=COALESCE_CHOICES, help="after the kernel was busy: run the latest missed "
                                                            "fire time (default), the earliest, or all")
    @argument("--misfire-grace", help="how late a run may start before it is recorded as missed")
    @argument("--executor", help="loop (default), thread, or a registered executor")
    @argument("--rule", choices=TRIGGER_RULES, help="for 'after' jobs: when to run (Airflow's trigger rules; "
                                                     "default all_success)")
    @argument("--now", action="store_true", help="also run once immediately")
    @argument("--start", help="first fire time ('2026-11-01', '2026-11-01 02:00'): anchors the schedule")
    @argument("--end", help="no fire times after this ('2026-12-31')")
    @argument("--catchup", action="store_true", help="with a past --start: run every fire time since then first")
    @argument("--debounce", help="for 'on file' jobs: how long files must stay unchanged (default 1s)")
    @argument("--max-active-runs", type=int, help="catch-up runs at once (default 1)")
    @argument("--into", metavar="VAR", help="after each run, bind the job's results frame to VAR")
    @argument("--quiet", action="store_true", help="show no card")
    @argument("--persist", action="store_true", help="save the job, its history and results to the store")
    @argument("--paused", action="store_true", help="add the job paused")
    @cell_magic
    def schedule(self, line: str, cell: str) -> Any:
        """Turn this cell into a job that runs on the kernel's event loop, in the notebook namespace.

        The body runs on every fire (top-level ``await`` allowed; assignments land in the namespace;
        the last expression's value goes into the job's results frame).  Re-running the cell
        replaces its job.  The output is the job's live card with its own output area.
        """
        st = _state()
        spec, option_tokens = _split_line(line)
        if not spec:
            raise UsageError("%%schedule needs a SPEC, e.g. '%%schedule every 5m' or '%%schedule cron 0 9 * * mon-fri' "
                             "(see '%%schedule?')")
        args = _parse_options(self.schedule, option_tokens)
        if args.SPEC:
            raise UsageError(f"unexpected words after the options: {' '.join(args.SPEC)!r}; put the SPEC first")
        sched = st.scheduler()
        options = _policy_options(args, sched, ("max_runs", "retries", "retry_delay", "backoff", "max_retry_delay",
                                                "timeout", "jitter", "max_instances", "coalesce", "misfire_grace",
                                                "executor"))
        if args.catchup:
            options["catchup"] = True
        if args.max_active_runs is not None:
            options["max_active_runs"] = args.max_active_runs
        if args.into is not None and not args.into.isidentifier():
            raise UsageError(f"invalid --into {args.into!r}: give a Python variable name (e.g. --into prices)")
        if not cell.strip():
            raise UsageError("the %%schedule cell is empty: put the code to run on schedule below the magic line")
        name = args.name or _default_name(cell, st.cell_id)
        from .cell import compile_cell

        try:
            compiled = compile_cell(cell, self.shell.user_ns, filename=f"<schedule {name}>")
        except SyntaxError as exc:
            raise UsageError(f"syntax error in the %%schedule cell (line {exc.lineno}): {exc.msg}; "
                             "no job was created") from None
        executor = options.get("executor", "loop")
        if executor == "dask" and "dask" not in sched.executors:
            raise UsageError("there is no 'dask' executor yet: run '%schedule cluster' (a local Dask cluster) or "
                             "'%schedule cluster tcp://host:8786' (an existing one) first; no job was created")
        if executor == "process":
            raise UsageError("a cell cannot run in the process executor (it is not importable): "
                             "use --executor thread, or schedule an imported function with nbsched.get_scheduler().add")
        if compiled.is_async and executor != "loop":
            raise UsageError(f"this cell uses top-level await, so it runs on the kernel's loop: drop --executor {executor}")
        from .kernel import OutputSink, console_echo, kernel_loop

        in_kernel = kernel_loop() is not None
        old = sched.find(name)
        sink = old.output if old is not None and getattr(old, "output", None) is not None else None
        if sink is None and in_kernel:  # outside a kernel (terminal IPython) jobs print where you are
            sink = OutputSink(loop=kernel_loop())
        if sink is not None:
            # typed in a console (no widgets): the job's output also goes there as text lines
            sink.echo = console_echo(name)
        func = CellJob(compiled, sink, cell, line, name)
        try:
            job = sched.add(func, spec, name=name, tz=args.tz, now=args.now, paused=args.paused,
                            start=args.start, end=args.end, debounce=args.debounce,
                            persist=True if args.persist else None, **options)
        except NbschedError as exc:
            raise UsageError(str(exc)) from None
        job.output = sink
        if args.into:
            st.into[name] = args.into
            self.shell.user_ns[args.into] = sched.results(name)
        else:
            st.into.pop(name, None)
        from .card import JobCard, TextCard, ensure_refresher

        if not in_kernel:
            return None if args.quiet else TextCard(sched, name)
        card = JobCard(sched, name)
        old_card = st.cards.get(name)
        if old_card is not None:
            old_card.retire("replaced by a newer run of its cell")
        st.cards[name] = card
        ensure_refresher(st)
        if args.quiet:
            return None
        return card

    @line_magic("schedule")
    def schedule_line(self, line: str) -> Any:
        """%schedule list | pause NAME | resume NAME | run NAME | remove NAME [--cascade] | remove --all |
        history [NAME] | results NAME | timeline [NAME] | preview NAME [N] | stop | dashboard | store [PATH] |
        restore [PATH] | backfill NAME --start DATE --end DATE [--max-active N] [--no-downstream] |
        notebook PATH SPEC [--param k=v ...] [--name N] [--output-dir DIR] [--kernel K] [--rule R] [--retries N]
        [--timeout T] ... | graph [NAME] |
        cluster [ADDRESS]  (a Dask cluster as executor 'dask': a local one sized to this machine, or tcp://host:8786)"""
        st = _state()
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot read {line!r}: {exc}") from None
        if not words:
            raise UsageError(f"%schedule needs a subcommand: {', '.join(SUBCOMMANDS)} (or use %%schedule SPEC on a cell)")
        cmd, rest = words[0], words[1:]
        if cmd not in SUBCOMMANDS:
            raise UsageError(f"unknown %schedule subcommand {cmd!r}: choose one of {', '.join(SUBCOMMANDS)}")
        sched = st.scheduler()
        try:
            return getattr(self, "_cmd_" + cmd)(sched, rest)
        except NbschedError as exc:
            raise UsageError(str(exc)) from None

    # -- subcommands ---------------------------------------------------------------------------
    def _one(self, sched: Scheduler, rest: list[str], cmd: str) -> Job:
        if len(rest) != 1:
            names = ", ".join(j.name for j in sched.jobs) or "none yet"
            raise UsageError(f"%schedule {cmd} needs one job name (jobs: {names})")
        return sched.get(rest[0])

    def _card(self, sched: Scheduler, name: str) -> Any:
        from .card import JobCard, TextCard
        from .kernel import kernel_loop

        if kernel_loop() is None:
            return TextCard(sched, name)

        card = _state().cards.get(name)
        if card is None or card.retired:
            card = JobCard(sched, name)
        card.refresh(force=True)
        return card

    def _cmd_help(self, sched: Scheduler, rest: list[str]) -> str:
        print(self.schedule_line.__doc__)

    def _cmd_list(self, sched: Scheduler, rest: list[str]):
        from .card import jobs_table

        return jobs_table(sched)

    def _cmd_pause(self, sched, rest):
        job = self._one(sched, rest, "pause")
        sched.pause(job.name)
        return self._card(sched, job.name)

    def _cmd_resume(self, sched, rest):
        job = self._one(sched, rest, "resume")
        sched.resume(job.name)
        return self._card(sched, job.name)

    def _cmd_run(self, sched, rest):
        job = self._one(sched, rest, "run")
        sched.run_now(job.name)
        return self._card(sched, job.name)

    def _cmd_remove(self, sched, rest):
        before = [j.name for j in sched.jobs]
        if rest == ["--all"]:
            for name in before:
                if name in sched:
                    sched.remove(name, cascade=True)
        else:
            cascade = "--cascade" in rest
            job = self._one(sched, [r for r in rest if r != "--cascade"], "remove")
            try:
                sched.remove(job.name, cascade=cascade)
            except NbschedError as exc:
                raise UsageError(str(exc).replace(f"remove({job.name!r}, cascade=True) (%schedule remove "
                                                  f"{job.name} --cascade)", f"%schedule remove {job.name} --cascade"))
        gone = [name for name in before if name not in sched]
        for name in gone:
            card = _state().cards.pop(name, None)
            if card is not None:
                card.retire("removed")
        print(f"removed {len(gone)} job(s)" if rest == ["--all"] else
              "removed " + ", ".join(f"job {name!r}" for name in gone))

    def _cmd_notebook(self, sched, rest):
        """%schedule notebook PATH SPEC [options]: run a notebook file in a fresh kernel on SPEC."""
        if not rest or rest[0].startswith("--"):
            raise UsageError("usage: %schedule notebook PATH SPEC [--param name=value ...] [--name N] "
                             "[--output-dir DIR], e.g. %schedule notebook etl.ipynb daily at 02:00 --param region=eu")
        path, words = rest[0], rest[1:]
        cut = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
        spec, option_words = " ".join(words[:cut]), words[cut:]
        if not spec:
            raise UsageError(f"%schedule notebook {path} needs a SPEC after the path, e.g. 'daily at 02:00', "
                             "'every 1h' or 'after etl'")
        args = _notebook_parser().parse_args(option_words)
        parameters = dict(_parse_param(p) for p in args.param or ())
        options = _policy_options(args, sched, ("retries", "retry_delay", "timeout", "max_instances", "coalesce",
                                                "misfire_grace", "max_runs"))
        job = sched.add_notebook(path, spec, name=args.name, parameters=parameters, output_dir=args.output_dir,
                                 kernel_name=args.kernel, tz=args.tz, now=args.now, paused=args.paused,
                                 persist=True if args.persist else None, **options)
        from .card import JobCard, ensure_refresher

        st = _state()
        old_card = st.cards.get(job.name)
        if old_card is not None:
            old_card.retire("replaced")
        card = st.cards[job.name] = JobCard(sched, job.name)
        ensure_refresher(st)
        return None if args.quiet else card

    def _cmd_graph(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("usage: %schedule graph [NAME]  (NAME: only the jobs connected to it)")
        return sched.graph(rest[0] if rest else None)

    def _cmd_history(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("%schedule history takes at most one job name")
        return sched.history(rest[0] if rest else None)

    def _cmd_timeline(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("usage: %schedule timeline [NAME]  (every job when no name is given)")
        return sched.timeline(rest[0] if rest else None)

    def _cmd_results(self, sched, rest):
        if len(rest) != 1:
            raise UsageError(f"%schedule results needs one job name (jobs: {', '.join(j.name for j in sched.jobs) or 'none yet'})")
        return sched.results(rest[0])

    def _cmd_preview(self, sched, rest):
        if not rest or len(rest) > 2:
            raise UsageError("usage: %schedule preview NAME [N]")
        job = sched.get(rest[0])
        n = 5
        if len(rest) == 2:
            if not rest[1].isdigit() or int(rest[1]) < 1:
                raise UsageError(f"invalid N {rest[1]!r}: give a positive whole number, e.g. %schedule preview {job.name} 10")
            n = int(rest[1])
        import pandas as pd

        return pd.DataFrame({"fire_time": job.preview(n)})

    def _cmd_cluster(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("usage: %schedule cluster [ADDRESS]  (no address: a local Dask cluster sized to this "
                             "machine; or an existing scheduler, e.g. %schedule cluster tcp://host:8786)")
        from ..dask import DaskExecutor, require_distributed

        try:
            distributed = require_distributed("%schedule cluster")
        except ImportError as exc:
            raise UsageError(str(exc)) from None
        st = _state()
        if rest:
            address = _check_scheduler_address(rest[0])
            cluster = None
        else:
            cluster = distributed.LocalCluster(processes=True)  # workers and threads sized to the cores
            address = cluster.scheduler_address
        client = distributed.Client(address, asynchronous=True, set_as_default=False)  # connects on the loop
        old = sched.executors.get("dask")
        sched.add_executor("dask", DaskExecutor(client, address=address))
        if isinstance(old, DaskExecutor):
            old.shutdown()
        st.close_cluster()
        st.cluster, st.client = cluster, client
        if cluster is not None:
            workers = cluster.scheduler_info.get("workers", {})
            threads = sum(w.get("nthreads", 0) for w in workers.values())
            where = f"a local Dask cluster at {address}: {len(workers)} worker processes, {threads} threads"
            link = cluster.dashboard_link
        else:
            where = f"the Dask cluster at {address}"
            link = None
        print(f"executor 'dask' is {where}" + (f"; dashboard {link}" if link else "")
              + "\nrun a cell there with: %%schedule every 10m --executor dask")

    def _cmd_stop(self, sched, rest):
        n = len(sched.jobs)
        sched.shutdown(wait=False)
        st = _state()
        st.close_cluster()
        for card in st.cards.values():
            card.retire("scheduler stopped")
        st.cards.clear()
        print(f"scheduler stopped ({n} job(s) ended); the next %%schedule starts a new one")

    def _cmd_backfill(self, sched, rest):
        import argparse

        from .progress import BackfillProgress

        parser = argparse.ArgumentParser(prog="%schedule backfill", add_help=False, exit_on_error=False)
        parser.add_argument("name")
        parser.add_argument("--start", required=True)
        parser.add_argument("--end", required=True)
        parser.add_argument("--max-active", type=int, default=1)
        parser.add_argument("--no-downstream", action="store_true")
        try:
            args, extra = parser.parse_known_args(rest)
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"{exc}; usage: %schedule backfill NAME --start 2026-10-01 --end 2026-10-31 "
                             "[--max-active 2] [--no-downstream]") from None
        if extra:
            raise UsageError(f"unexpected {' '.join(extra)!r}; usage: %schedule backfill NAME --start DATE --end DATE "
                             "[--max-active N] [--no-downstream]")
        handle = sched.backfill(args.name, args.start, args.end, max_active=args.max_active,
                                downstream=not args.no_downstream)
        return BackfillProgress(handle, sched.clock)

    def _cmd_dashboard(self, sched, rest):
        from .dashboard import Dashboard

        return Dashboard(sched)

    def _cmd_store(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("usage: %schedule store [PATH]  (default: nbsched.db in the working directory)")
        store = sched.attach_store(rest[0] if rest else None, persist_all=True)
        print(f"store attached: {getattr(store, 'path', store)} - every job added from now on is persisted")
        return None

    def _cmd_restore(self, sched, rest):
        if len(rest) > 1:
            raise UsageError("usage: %schedule restore [PATH]")
        path = rest[0] if rest else None
        if path is not None:
            import os

            if not os.path.exists(path):
                raise UsageError(f"no store at {path!r}: give the path of an nbsched store file "
                                 "(default: nbsched.db in the working directory)")
        jobs = sched.restore(path, namespace=self.shell.user_ns)
        from .card import JobCard, ensure_refresher, jobs_table

        from .kernel import console_echo

        st = _state()
        for job in jobs:
            sink = getattr(job.func, "sink", None)
            if sink is not None:
                sink.echo = console_echo(job.name)  # restored from a console: output there as text
                job.output = sink
            st.cards[job.name] = JobCard(sched, job.name)
        ensure_refresher(st)
        print(f"restored {len(jobs)} job(s) from {getattr(sched.store, 'path', path)}")
        return jobs_table(sched)


def _check_scheduler_address(address: str) -> str:
    """``tcp://host:port`` (or ``host:port``) of a scheduler that accepts connections, else UsageError."""
    import socket

    text = address if "://" in address else f"tcp://{address}"
    scheme, _, rest = text.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls") or not host or not port.isdigit():
        raise UsageError(f"invalid Dask scheduler address {address!r}: give tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot reach a Dask scheduler at {text}: {exc}. Start one there ('dask scheduler', then "
            f"'dask worker {text}' on each worker machine) or check the address; no executor was registered"
        ) from None
    return text


def _notebook_parser() -> Any:
    from IPython.core.magic_arguments import MagicArgumentParser

    p = MagicArgumentParser(prog="%schedule notebook PATH SPEC")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="a parameter injected after the cell tagged 'parameters' (VALUE is read as JSON when it "
                        "parses - 3, true, [1, 2] - else as text); repeat for more")
    p.add_argument("--name", help="job name (default: the file's stem)")
    p.add_argument("--output-dir", help="where executed notebooks are kept (default: nbsched-runs/ next to the file)")
    p.add_argument("--kernel", help="kernel to run it with (default: the notebook's own)")
    p.add_argument("--rule", choices=TRIGGER_RULES, help="for 'after' specs: the trigger rule (default all_success)")
    p.add_argument("--tz", help="IANA time zone for cron/at/daily specs")
    p.add_argument("--retries", type=int)
    p.add_argument("--retry-delay")
    p.add_argument("--timeout", help="stop (and kill the kernel of) a run after this long, e.g. 10m")
    p.add_argument("--max-instances", type=int)
    p.add_argument("--coalesce", choices=COALESCE_CHOICES)
    p.add_argument("--misfire-grace")
    p.add_argument("--max-runs", type=int)
    p.add_argument("--until")
    p.add_argument("--now", action="store_true")
    p.add_argument("--paused", action="store_true")
    p.add_argument("--persist", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def _parse_param(text: str) -> tuple[str, Any]:
    """``--param name=value``: the value as JSON when it parses (numbers, true/false, lists), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"invalid --param {text!r}: write NAME=VALUE, e.g. --param region=eu or --param days=7")
    import json

    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def _load_cell_target(target: dict, namespace: dict) -> CellJob:
    """Rebuild a stored ``%%schedule`` cell (for ``%schedule restore``) with its own output area."""
    from .cell import compile_cell
    from .kernel import OutputSink, kernel_loop

    source = target["source"]
    name = target.get("name") or "restored-cell"
    compiled = compile_cell(source, namespace, filename=f"<schedule {name}>")
    return CellJob(compiled, OutputSink(loop=kernel_loop()), source, target.get("line", ""), name)


def _post_run_cell(result: Any) -> None:
    from .kernel import kernel_loop, request_finished

    if kernel_loop() is not None:
        # (still part of the cell's request) jobs the cell added with the Python API get their card here
        from . import api_jobs

        try:
            api_jobs.cell_finished(_state())
        except Exception:  # noqa: BLE001 - never break the cell for it
            log.exception("nbsched: showing the cards of the jobs this cell added failed")
    request_finished()


def _pre_run_cell(info: Any) -> None:
    from .kernel import kernel_loop, remember_request

    st = _state()
    st.cell_id = getattr(info, "cell_id", None)
    remember_request()
    sched = get_scheduler(create=False)
    if sched is not None and kernel_loop() is not None:
        from . import api_jobs

        api_jobs.cell_started(sched)  # note the jobs this cell adds with the Python API
    # bring every card's static summary up to date in the cell starting now (a notebook executor
    # keeps what is parented to it), so a saved notebook has each job's state as of its last cell
    for card in list(st.cards.values()):
        try:
            card.refresh(cell_start=True)
        except Exception:  # noqa: BLE001 - a broken card must not stop the cell
            log.exception("nbsched: refreshing the card of %r failed", card.name)
    if "nbsched.notebook.progress" in sys.modules:  # (only once a backfill was shown)
        try:
            sys.modules["nbsched.notebook.progress"].resync_all()
        except Exception:  # noqa: BLE001 - a broken bar must not stop the cell
            log.exception("nbsched: re-sending the backfill progress failed")


def load(ipython: Any) -> None:
    from .kernel import install_interrupt_handler, install_router, kernel_loop

    st = _state()
    st.shell = ipython
    ipython.register_magics(ScheduleMagics)
    try:
        ipython.events.register("pre_run_cell", _pre_run_cell)
        ipython.events.register("post_run_cell", _post_run_cell)
    except Exception:
        pass
    from ..store import register_target_loader

    register_target_loader("cell", _load_cell_target)
    loop = kernel_loop()
    st.scheduler()
    if loop is not None:
        install_router(ipython)
        install_interrupt_handler(loop, _is_job_task, _on_interrupt)


def _is_job_task(task: Any) -> bool:
    return task is not None and task.get_name().startswith("nbsched:")


def _on_interrupt(task: Any) -> None:
    # the run itself is recorded 'interrupted' and its job paused by the scheduler; refresh cards
    for card in list(_state().cards.values()):
        card.mark_dirty()


def unload(ipython: Any) -> None:
    from .kernel import uninstall_interrupt_handler, uninstall_router

    st = _state()
    sched = get_scheduler(create=False)
    if sched is not None:
        sched.shutdown(wait=False)
    for card in st.cards.values():
        card.retire("extension unloaded")
    st.cards.clear()
    st.close_cluster()
    if st.refresher is not None:
        st.refresher.cancel()
        st.refresher = None
    if st.subscription is not None:
        st.subscription.unsubscribe()
        st.subscription = None
    try:
        ipython.events.unregister("pre_run_cell", _pre_run_cell)
        ipython.events.unregister("post_run_cell", _post_run_cell)
    except Exception:
        pass
    from . import api_jobs

    api_jobs.stop()
    uninstall_router()
    uninstall_interrupt_handler()
