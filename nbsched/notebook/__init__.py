"""The notebook front end: everything that knows about IPython, kernels and widgets.

Lives here: ``magics`` (``%%schedule`` / ``%schedule``, a thin adapter over the Python API),
``cell`` (compiles a cell body once), ``kernel`` (per-job output routing, which frontend sent a
cell, interrupts), ``api_jobs`` (a card and output area for jobs a cell adds with the Python API),
``progress`` (a backfill's bar), ``render`` (the one place that turns jobs into words, HTML and
rows), ``card`` (a job's live card),
``dashboard`` (the live table of every job) and ``run`` (the ``nbsched run`` command).  May import
everything below it (``nbsched.engine``, ``nbsched.store`` and the bottom layer); nothing imports this
package except ``nbsched.load_ipython_extension`` / ``nbsched.dashboard()`` lazily.

Importing it registers the loader that rebuilds stored cells (``restore()`` of ``%%schedule`` jobs).
"""
from ..store import register_target_loader
from .cell import load_stored_cell

register_target_loader("cell", load_stored_cell)
