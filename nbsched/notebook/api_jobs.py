"""Jobs added with the Python API in a cell keep their output in that cell, as ``%%schedule`` jobs do.

``sched.add(fn, "every 5m")`` in a cell makes a job that runs ``fn`` itself, with no output area:
what it prints would follow ipykernel's own routing (the cell running at that moment, or nothing
in an executed notebook on ipykernel 7).  So, when a cell that added such jobs ends (IPython's
``post_run_cell``, still part of that cell's request), each of them gets an output area
(``job.output``, a :class:`~nbsched.notebook.kernel.OutputSink`) and its card is shown in that cell,
as for a ``%%schedule`` cell: live in JupyterLab, and kept in notebooks executed by nbclient,
papermill or nbconvert.  The router finds a job's area through the run its code belongs to
(:func:`~nbsched.notebook.kernel.keep_job_output`).

Only jobs added by the cell's own code count (not jobs added by other jobs while the cell runs), and
only jobs without an area or a card (a ``%%schedule`` or ``%schedule notebook`` job has its own).  A
cell that adds more than :data:`MAX_CARDS` jobs (a bulk load) shows one line saying so, and its jobs
get no card and no area: what they print follows ipykernel's own routing.  Past that many, each further
add costs a counter increment here, nothing more.
"""
from __future__ import annotations

import weakref
from typing import Any

from .. import events as ev

__all__ = ["MAX_CARDS", "cell_started", "cell_finished", "stop"]

#: A cell adding more jobs than this shows a one-line note instead of a card per job (and the jobs get no area).
MAX_CARDS = 20


class _Watch:
    def __init__(self) -> None:
        self.sched_ref: weakref.ref | None = None
        self.subscription: Any = None
        self.added: list[str] = []  # names added by the running cell's code, in order (MAX_CARDS + 1 at most)
        self.more = 0  # how many more the cell added past those
        self.cards: dict[str, Any] = {}  # the cards this module made, by job name


_watch = _Watch()


def _on_added(event: ev.JobEvent) -> None:
    from ..context import current_job_name
    from .kernel import request_running

    if not request_running() or current_job_name() is not None:
        return  # no cell running, or added by a job (not by the cell's code)
    if len(_watch.added) > MAX_CARDS:
        _watch.more += 1
    else:
        _watch.added.append(event.job)


def cell_started(sched: Any) -> None:
    """``pre_run_cell``: start noting the jobs this cell adds to ``sched``."""
    _watch.added.clear()
    _watch.more = 0
    if _watch.sched_ref is None or _watch.sched_ref() is not sched:
        if _watch.subscription is not None:
            _watch.subscription.unsubscribe()
        _watch.subscription = sched.subscribe(_on_added, kinds=(ev.JobAdded, ev.JobModified))
        _watch.sched_ref = weakref.ref(sched)


def cell_finished(state: Any) -> None:
    """``post_run_cell``: give each job the cell added an output area, and show its card here."""
    added, _watch.added = _watch.added, []
    more, _watch.more = _watch.more, 0
    sched = _watch.sched_ref() if _watch.sched_ref is not None else None
    if not added or sched is None:
        return
    if len(added) > MAX_CARDS:
        print(f"nbsched: this cell added {len(added) + more} jobs, more than {MAX_CARDS}: they get no card and "
              "no output area (what they print is not kept in this cell)")
        return
    from IPython.display import display

    from .card import JobCard, ensure_refresher
    from .kernel import OutputSink, console_echo, keep_job_output, kernel_loop

    fresh = []
    for name in dict.fromkeys(added):  # (in order, once each)
        job = sched.find(name)
        if job is None or job.output is not None:
            continue  # gone again, or it has an area (a %%schedule cell's job)
        old_card = state.cards.get(name)
        if old_card is not None:
            if old_card is not _watch.cards.get(name):
                continue  # a card of its own (%schedule notebook)
            old_card.retire("replaced by a newer job of the same name")
        fresh.append(job)
    for job in fresh:
        sink = OutputSink(loop=kernel_loop())
        sink.echo = console_echo(job.name)
        job.output = sink
        keep_job_output(job)
        card = state.cards[job.name] = _watch.cards[job.name] = JobCard(sched, job.name)
        display(card)
    if fresh:
        ensure_refresher(state)


def stop() -> None:
    """Stop watching (``%unload_ext nbsched``)."""
    if _watch.subscription is not None:
        _watch.subscription.unsubscribe()
    _watch.subscription = None
    _watch.sched_ref = None
    _watch.added.clear()
    _watch.cards.clear()
