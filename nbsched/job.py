"""Jobs: a function, a trigger and a policy - plus live state.  Definitions are plain data
(:meth:`Job.definition` is JSON; code objects are never serialised)."""
from __future__ import annotations

import enum
import inspect
from inspect import CO_COROUTINE
from types import FunctionType
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from ._durations import parse_duration
from .clock import to_timestamp
from .errors import PolicyError
from .history import Outcome, PackedRows, ResultLog, RunLog

if TYPE_CHECKING:
    from .triggers import Trigger

__all__ = ["JobPolicy", "JobState", "Job", "StoredJob", "COALESCE_CHOICES", "TRIGGER_RULES"]

COALESCE_CHOICES = ("latest", "earliest", "all")
#: Airflow's trigger rules for jobs that run after other jobs (see the README, Workflows).
TRIGGER_RULES = ("all_success", "all_done", "all_failed", "one_success", "one_failed", "none_failed", "always")
#: The rule of a job that runs after other jobs unless it says otherwise.
DEFAULT_TRIGGER_RULE = TRIGGER_RULES[0]


class JobState(str, enum.Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILING = "failing"
    REMOVED = "removed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class JobPolicy:
    """How a job runs.  Durations are seconds here; :meth:`build` accepts ``"5s"``, numbers, timedeltas.

    - ``max_instances``: runs of this job allowed at once; a fire time beyond it is recorded ``skipped``.
    - ``misfire_grace``: how late a run may start; later fire times are recorded ``missed`` (None: any).
    - ``coalesce``: several fire times overdue at once (the loop was blocked) ->
      ``latest`` runs the newest and records the rest missed, ``earliest`` the oldest, ``all`` runs each.
    - ``jitter``: a random delay in [0, jitter] added to each fire time.
    - ``max_runs`` / ``until``: stop after this many scheduled runs / after this time.
    - ``retries``: up to N (at most 65,534) further attempts after a failure (an error or a timeout), waiting
      ``retry_delay * backoff ** (attempt - 1)``, at most ``max_retry_delay`` (default 300 s; a
      ``retry_delay`` above the default cap raises the cap to it, above an explicit cap is an error).
    - ``timeout``: async jobs are cancelled; thread/process jobs are abandoned and recorded ``timeout``.
      (A plain function on the ``loop`` executor cannot be interrupted; use ``thread`` for those.)
    - ``executor``: ``loop``, ``thread``, ``process`` or a registered name.
    - ``resources``: what one run needs on a cluster worker, e.g. ``{"GPU": 1}`` (executors that
      support it, such as ``dask``: a Dask resource restriction).  Held as sorted ``(name, amount)`` pairs.
    - ``history_rows``/``history_age``, ``results_rows``/``results_age``: retention.
    - ``catchup``: with a ``start`` in the past, run every fire time from ``start`` to now first
      (reason ``catchup``, oldest first, ``max_active_runs`` at a time); after a restore, run the fire
      times missed while the kernel was down instead of recording them missed.
    - ``trigger_rule``: for jobs that run after other jobs, when they run (one of :data:`TRIGGER_RULES`,
      Airflow's names and meanings; default ``all_success``).
    """

    max_instances: int = 1
    misfire_grace: float | None = None
    coalesce: str = "latest"
    jitter: float = 0.0
    max_runs: int | None = None
    until: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    backoff: float = 2.0
    max_retry_delay: float = 300.0
    timeout: float | None = None
    executor: str = "loop"
    resources: tuple[tuple[str, float], ...] | None = None
    history_rows: int | None = 10_000
    history_age: float | None = None
    results_rows: int | None = 10_000
    results_age: float | None = None
    trigger_rule: str = DEFAULT_TRIGGER_RULE
    catchup: bool = False
    max_active_runs: int = 1

    def __post_init__(self) -> None:
        # Derived once per policy (policies are shared by many jobs), read on every fire.  Attributes,
        # not fields: they are not compared, stored, replaced or shown.
        #: Every fire is planned the same way: no ``until``, ``max_runs`` or ``misfire_grace`` to check.
        object.__setattr__(self, "unbounded", self.until is None and self.max_runs is None
                           and self.misfire_grace is None)
        #: A plain function with this policy is called right on the loop: executor ``loop``, no
        #: timeout, no retries.
        object.__setattr__(self, "inline", self.executor == "loop" and self.timeout is None and not self.retries)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls, base: "JobPolicy | None" = None, **options: Any) -> "JobPolicy":
        """Validate user options (raising :class:`PolicyError` with the valid choices) over ``base``."""
        if not options:
            return base or cls()
        valid = _POLICY_NAMES
        unknown = [k for k in options if k not in valid]
        if unknown:
            raise PolicyError(f"unknown option {unknown[0]!r}: valid options are {', '.join(valid)}")
        checked = {key: _check(key, value) for key, value in options.items()}
        policy = replace(base or cls(), **checked)
        if policy.retry_delay > policy.max_retry_delay:
            if "max_retry_delay" in checked:
                raise PolicyError(
                    f"retry_delay {policy.retry_delay:g}s is above max_retry_delay {policy.max_retry_delay:g}s: "
                    "raise max_retry_delay or shorten retry_delay (max_retry_delay caps the backed-off delays)")
            policy = replace(policy, max_retry_delay=policy.retry_delay)  # the cap follows a longer first delay
        return policy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def resource_dict(self) -> dict[str, float] | None:
        """``resources`` as a dict (``None`` when the job needs none)."""
        return dict(self.resources) if self.resources else None


_POLICY_NAMES = tuple(f.name for f in fields(JobPolicy))
#: The most retries a policy may ask for (a history row keeps the attempt number in 16 bits).
MAX_RETRIES = 65_534


def _resources(value: Any) -> tuple[tuple[str, float], ...] | None:
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return None
    try:
        pairs = list(value.items()) if isinstance(value, dict) else [tuple(p) for p in value]
        out = []
        for name, amount in pairs:
            if not isinstance(name, str) or not name or isinstance(amount, bool) or float(amount) <= 0:
                raise ValueError
            out.append((name, float(amount)))
    except (TypeError, ValueError):
        raise PolicyError(
            f"invalid resources {value!r}: a dict of resource name to a positive amount, e.g. {{'GPU': 1}}"
        ) from None
    return tuple(sorted(out))


def _int(key: str, value: Any, minimum: int, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise ValueError
        except ValueError:
            raise PolicyError(f"invalid {key} {value!r}: must be a whole number >= {minimum}") from None
    if value < minimum:
        raise PolicyError(f"invalid {key} {value!r}: must be a whole number >= {minimum}")
    return value


def _check(key: str, value: Any) -> Any:
    from .errors import DurationError

    try:
        if key in ("max_instances", "max_active_runs"):
            return _int(key, value, 1, False)
        if key == "catchup":
            if not isinstance(value, bool):
                raise PolicyError(f"invalid catchup {value!r}: True or False")
            return value
        if key in ("max_runs",):
            return _int(key, value, 1, True)
        if key in ("retries",):
            retries = _int(key, value, 0, False)
            if retries > MAX_RETRIES:  # history stores the attempt number in 16 bits
                raise PolicyError(f"invalid retries {value!r}: at most {MAX_RETRIES:,} (e.g. retries=3)")
            return retries
        if key in ("history_rows", "results_rows"):
            return _int(key, value, 1, True)
        if key == "coalesce":
            if isinstance(value, bool):  # APScheduler's coalesce=True/False
                return "latest" if value else "all"
            if value not in COALESCE_CHOICES:
                raise PolicyError(f"invalid coalesce {value!r}: choose one of {', '.join(map(repr, COALESCE_CHOICES))}")
            return value
        if key in ("misfire_grace", "timeout", "history_age", "results_age"):
            return None if value is None else parse_duration(value, what=key)
        if key in ("jitter",):
            return parse_duration(value or 0, what=key, allow_zero=True)
        if key in ("retry_delay", "max_retry_delay"):
            return parse_duration(value, what=key, allow_zero=True)
        if key == "backoff":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise PolicyError(f"invalid backoff {value!r}: a factor >= 1 (1 = constant delay, 2 = doubling)") from None
            if not value >= 1:
                raise PolicyError(f"invalid backoff {value!r}: a factor >= 1 (1 = constant delay, 2 = doubling)")
            return float(value)
        if key == "until":
            if value is None:
                return None
            if isinstance(value, datetime):
                return to_timestamp(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            raise PolicyError(f"invalid until {value!r}: give an aware datetime (or a spec string through the magic)")
        if key == "trigger_rule":
            if value not in TRIGGER_RULES:
                raise PolicyError(f"unknown trigger rule {value!r}: choose one of {', '.join(TRIGGER_RULES)}")
            return value
        if key == "resources":
            return _resources(value)
        if key == "executor":
            if not isinstance(value, str) or not value:
                raise PolicyError(f"invalid executor {value!r}: choose 'loop', 'thread', 'process' or a registered name")
            return value
    except DurationError as exc:
        raise PolicyError(str(exc)) from None
    return value


class Job:
    """A scheduled job: what it runs, when, how, and its live state.  Create jobs with :meth:`Scheduler.add`.

    Everything here is read-only for user code, the store and the notebook front end: change a job
    through the scheduler (``pause``, ``resume``, ``modify``, ``reschedule``, ``remove``).  Only the
    engine writes the private fields.  The one writable attribute is :attr:`output`, the front end's
    output area for the job.
    """

    __slots__ = (
        "name", "func", "trigger", "policy", "scheduler", "_meta", "is_coroutine", "log",
        "_next_ts", "_planned", "_key", "_paused", "_finished", "_removed", "_persist", "_row_key",
        "_running", "_runs", "_successes", "_failures", "_missed", "_skipped",
        "_last_outcome", "_last_started", "_last_finished", "_last_error",
        "_backlog", "_run_tasks", "_waiters", "_batch_running", "output", "__weakref__",
    )

    def __init__(self, scheduler: Any, name: str, func: Callable[[], Any], trigger: "Trigger",
                 policy: JobPolicy, meta: dict[str, Any] | None, log: RunLog):
        self.scheduler = scheduler
        self.name = name
        self.func = func
        self.trigger = trigger
        self.policy = policy
        self._meta = dict(meta) if meta else None  # most jobs have none: no dict each (100,000 jobs)
        self.is_coroutine = _is_coroutine_function(func)
        self.log = log
        self._next_ts: float | None = None  # nominal next fire time
        self._planned: float | None = None  # the same plus jitter: when it really fires
        self._key: int | None = None  # the timing-wheel bucket this job waits in
        self._paused = False
        self._finished = False
        self._removed = False
        self._persist = False
        self._row_key: Any = None  # what the attached store's on_row() takes for this job (its row_key())
        self._running = 0
        self._runs = 0
        self._successes = 0
        self._failures = 0
        self._missed = 0
        self._skipped = 0
        self._last_outcome: Outcome | None = None
        self._last_started: float | None = None
        self._last_finished: float | None = None
        self._last_error: str | None = None
        # created on first use: a job usually needs none of them, and 100,000 jobs x 3 containers
        # would make the garbage collector's work (and add()) noticeably slower
        self._backlog: list[float] | None = None
        self._run_tasks: set | None = None
        self._waiters: list | None = None
        self._batch_running = 0  # runs of a backfill or catch-up in progress (outside max_instances)
        #: Where the job's output goes in a kernel (set by the %%schedule magic; None for API jobs).
        #: An object with ``.widget`` (an ipywidgets.Output) - see nbsched.notebook.kernel.OutputSink.
        self.output: Any = None

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form information about the job (``add(..., meta={...})``); yours to read and change."""
        meta = self._meta
        if meta is None:
            meta = self._meta = {}
        return meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = dict(value) if value else None

    # -- counters (read-only) -------------------------------------------------------------------
    running = property(lambda self: self._running, doc="Runs of this job in progress now.")
    runs = property(lambda self: self._runs, doc="Scheduled runs started (run_now runs not counted).")
    successes = property(lambda self: self._successes, doc="Runs that ended in success.")
    failures = property(lambda self: self._failures, doc="Attempts that ended in error or timeout.")
    missed = property(lambda self: self._missed, doc="Fire times recorded missed.")
    skipped = property(lambda self: self._skipped, doc="Fire times skipped by max_instances.")
    last_outcome = property(lambda self: self._last_outcome, doc="How the latest attempt ended (an Outcome).")
    last_started = property(lambda self: self._last_started, doc="POSIX start time of the latest attempt.")
    last_finished = property(lambda self: self._last_finished, doc="POSIX end time of the latest attempt.")
    last_error = property(lambda self: self._last_error, doc="'Type: message' of the latest failure.")
    persist = property(lambda self: self._persist, doc="Whether the store keeps this job.")

    @property
    def last_duration(self) -> float | None:
        """Seconds the latest attempt took."""
        if self._last_started is None or self._last_finished is None:
            return None
        return self._last_finished - self._last_started

    @property
    def results_log(self) -> ResultLog:
        """What the job returned (see :meth:`results`); shared with earlier jobs of the same name."""
        return self.log.results

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> JobState:
        if self._removed:
            return JobState.REMOVED
        if self._running:
            return JobState.RUNNING
        if self._paused:
            return JobState.PAUSED
        if self._finished:
            return JobState.FINISHED
        if self._last_outcome in (Outcome.ERROR, Outcome.TIMEOUT, Outcome.INTERRUPTED):
            return JobState.FAILING
        return JobState.SCHEDULED

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def finished(self) -> bool:
        """The trigger has no more fire times (or ``max_runs``/``until`` was reached)."""
        return self._finished

    @property
    def next_fire_timestamp(self) -> float | None:
        """The nominal next fire time as POSIX seconds (before jitter), or None (paused/finished)."""
        return self._next_ts

    @property
    def planned_fire_timestamp(self) -> float | None:
        """When the job fires next as POSIX seconds, jitter included (:attr:`next_fire_time` as a number)."""
        return self._planned

    @property
    def next_fire_time(self) -> datetime | None:
        """When the job fires next (aware, in the trigger's zone, jitter included), or None."""
        ts = self._planned
        return None if ts is None else datetime.fromtimestamp(ts, self.trigger.tz)

    @property
    def last_run_time(self) -> datetime | None:
        return None if self._last_started is None else datetime.fromtimestamp(self._last_started, self.trigger.tz)

    def preview(self, n: int = 5) -> list[datetime]:
        """The next ``n`` fire times (from the next scheduled one; from now if paused)."""
        n = _int("n", n, 0, False)
        base = self._next_ts
        if base is None:
            after = self.scheduler.clock.time()
            first = self.trigger.next_timestamp(after)
        else:
            first = base
        out: list[datetime] = []
        ts = first
        until = self.policy.until
        while ts is not None and len(out) < n and (until is None or ts <= until):
            out.append(datetime.fromtimestamp(ts, self.trigger.tz))
            ts = self.trigger.next_timestamp(ts)
        return out

    def describe(self) -> str:
        return self.trigger.describe()

    @property
    def upstreams(self) -> tuple[str, ...]:
        """The jobs this job runs after (empty for a job on a time trigger)."""
        return getattr(self.trigger, "upstreams", ())

    # -- delegation to the scheduler ----------------------------------------------------------
    def pause(self) -> "Job":
        return self.scheduler.pause(self.name)

    def resume(self) -> "Job":
        return self.scheduler.resume(self.name)

    def run_now(self) -> Any:
        return self.scheduler.run_now(self.name)

    def remove(self) -> None:
        self.scheduler.remove(self.name)

    def history(self):
        """This job's history frame (see :meth:`Scheduler.history`)."""
        return self.log.frame(self.scheduler.tz)

    def results(self):
        """This job's results frame (see :meth:`Scheduler.results`)."""
        return self.results_log.frame(self.scheduler.tz)

    async def wait_next_run(self):
        """Wait for this job's next run to finish; returns its :class:`~nbsched.history.RunRecord`."""
        return await self.scheduler.wait_next_run(self.name)

    # -- plain data -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        """Deprecated name of :meth:`definition` ("spec" means the trigger text, as in ``job.trigger.spec``)."""
        import warnings

        warnings.warn("Job.spec() is now Job.definition() (same data); spec() goes away in nbsched 0.3",
                      DeprecationWarning, stacklevel=2)
        return self.definition()

    def definition(self) -> dict[str, Any]:
        """The definition as JSON-able data: name, trigger, policy and what to run."""
        return {
            "name": self.name,
            "trigger": self.trigger.to_dict(),
            "policy": self.policy.to_dict(),
            "target": describe_target(self.func),
            "paused": self._paused,
            "meta": self.meta,
        }

    def __repr__(self) -> str:
        nxt = self.next_fire_time
        when = "-" if nxt is None else nxt.isoformat(timespec="seconds")
        return f"<Job {self.name!r} {self.trigger.describe()} state={self.state.value} next={when} runs={self.runs}>"

    def _repr_html_(self) -> str:
        from html import escape

        nxt = self.next_fire_time
        last = "-" if self._last_outcome is None else self._last_outcome.value
        return (
            "<div class='nbsched-job'><b>" + escape(self.name) + "</b> &middot; " + escape(self.describe())
            + f" &middot; state <code>{self.state.value}</code> &middot; next "
            + ("-" if nxt is None else escape(nxt.strftime("%Y-%m-%d %H:%M:%S %Z")))
            + f" &middot; runs {self.runs} &middot; last {escape(last)}</div>"
        )


@dataclass(frozen=True)
class StoredJob:
    """A job as a store brings it back: definition, saved state and recorded past.

    Handed to :meth:`Scheduler.load`, which registers it in one step (on the loop, nothing fires
    half-loaded).  ``resume_at`` is the nominal fire time to wait for (None with neither ``paused``
    nor ``finished``: the job is finished); fire times before now then go through the job's
    misfire/coalesce policy like any other overdue fire.  ``history`` holds rows in the layout of
    :class:`~nbsched.history.HistoryRow`, or is a :class:`~nbsched.history.PackedRows` (rows packed as
    a log packs them, taken as they are); ``results`` holds ``(run_id, scheduled, value)``.
    """

    name: str
    func: Callable[[], Any]
    trigger: "Trigger"
    policy: JobPolicy
    meta: dict[str, Any] | None = None
    paused: bool = False
    finished: bool = False
    resume_at: float | None = None
    runs: int = 0
    history: "tuple | PackedRows" = ()
    results: tuple = ()


_last_checked: list = [None, False]  # bulk adds reuse one function: remember the last answer


def _is_coroutine_function(func: Any) -> bool:
    if func is _last_checked[0]:
        return _last_checked[1]
    if type(func) is FunctionType and not hasattr(func, "_is_coroutine_marker"):
        return bool(func.__code__.co_flags & CO_COROUTINE)  # the common case, without inspect's unwrapping
    answer = inspect.iscoroutinefunction(func)
    if not answer:
        call = getattr(type(func), "__call__", None)
        answer = call is not None and not inspect.isfunction(func) and inspect.iscoroutinefunction(call)
    _last_checked[0], _last_checked[1] = func, answer
    return answer


def describe_target(func: Callable[..., Any]) -> dict[str, Any]:
    """What a job runs, as data.  Cells (from the magic) describe themselves via ``__nbsched_target__``."""
    target = getattr(func, "__nbsched_target__", None)
    if isinstance(target, dict):
        return dict(target)
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        source = None
    return {"kind": "function", "module": module, "qualname": qualname, "source": source}
