"""Durable jobs and history: the :class:`Store` protocol the engine talks to, and its implementations.

Lives here: ``protocol`` (what a store must do, written so a second store needs nothing else),
``memory`` (a complete in-memory store: the unit tests' store and a template), and the SQLite store
(``sqlite`` plus its private parts ``_schema``, ``_codec``, ``_writer``, ``_leases``, ``_restore``,
``_targets``).  May import the bottom layer (``nbsched.clock``, ``history``, ``job``, ``triggers``,
``errors``) and calls the engine only through its public methods; never imports ``nbsched.notebook``,
IPython or ipywidgets.
"""
from ..errors import StoreError
from ._schema import MIGRATIONS, schema_version
from ._targets import TargetLoader, register_target_loader
from .memory import MemoryStore
from .protocol import Store
from .sqlite import DEFAULT_PATH, SQLiteStore, open_store

__all__ = ["Store", "MemoryStore", "SQLiteStore", "StoreError", "open_store", "register_target_loader", "TargetLoader",
           "MIGRATIONS", "schema_version", "DEFAULT_PATH"]
