"""Notebook files as jobs: every run executes an ``.ipynb`` file in a fresh kernel.

:meth:`nbsched.Scheduler.add_notebook` (and ``%schedule notebook PATH SPEC``) wraps a file in a
:class:`NotebookFileJob`; the scheduler runs it like any other coroutine job (on its own loop), so
triggers, ``after``, retries, timeouts and ``max_instances`` all apply.  One run:

1. reads the file and *injects the parameters* as a new code cell (tagged ``injected-parameters``)
   right after the cell tagged ``parameters`` - as papermill does - or at the top when no cell has
   that tag (an earlier injected cell, e.g. from papermill, is replaced);
2. starts a fresh kernel (the notebook's own kernelspec unless ``kernel_name`` is given; its working
   directory is the notebook's folder) and executes the cells in order with nbclient's async API, so
   the scheduler's loop keeps serving other jobs while the notebook runs;
3. writes the executed notebook, outputs included, to ``output_dir`` (default: ``nbsched-runs/``
   next to the file) as ``<stem>.<logical time>.run<run id>.ipynb`` (``.attempt<n>`` for retries) -
   also when a cell failed or the run timed out, so the failure can be read where it happened;
4. returns the executed notebook's path (so the job's results frame lists every run's output), or
   raises :class:`NotebookCellError` with the cell's error, its kernel traceback and the path.

A timeout, an interrupt or a shutdown cancels the run: the kernel is killed at once (never left
running).  nbclient's own ``execute()`` is not used because it installs SIGINT/SIGTERM handlers on
the running loop (the kernel's, inside Jupyter) and would take over the interrupt button.

nbclient, nbformat and jupyter_client are imported inside the functions that need them.
"""
from __future__ import annotations

import asyncio
import json
import keyword
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .errors import NbschedError

__all__ = ["NotebookFileJob", "NotebookFileError", "NotebookCellError", "notebook_job", "inject_parameters",
           "DEFAULT_OUTPUT_DIR", "PARAMETERS_TAG", "INJECTED_TAG"]

DEFAULT_OUTPUT_DIR = "nbsched-runs"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
log = logging.getLogger("nbsched")
# nbclient logs at ERROR what nbsched records anyway ("Kernel died" after a timeout killed it); inside
# Jupyter that line would land in whichever cell runs.  Its logger is ours, quiet unless you lower it.
_nbclient_log = logging.getLogger("nbsched.nbclient")
_nbclient_log.setLevel(logging.CRITICAL)


class NotebookFileError(NbschedError, ValueError):
    """A notebook job cannot be created: the file is missing or not a notebook, a parameter is not
    JSON-able or not a valid name, or the kernel is unknown.  Nothing was added."""


class NotebookCellError(NbschedError):
    """A cell of a scheduled notebook raised.  ``ename``/``evalue`` are the kernel's exception,
    ``cell_index`` the failing cell (0-based), ``kernel_traceback`` its traceback (plain text) and
    ``output`` the executed notebook kept for this run."""

    def __init__(self, message: str, *, ename: str, evalue: str, cell_index: int, kernel_traceback: str,
                 output: str):
        super().__init__(message)
        self.ename = ename
        self.evalue = evalue
        self.cell_index = cell_index
        self.kernel_traceback = kernel_traceback
        self.output = output


class KernelTraceback(Exception):
    """The traceback the kernel reported, chained under :class:`NotebookCellError` so the history's
    traceback column shows where the notebook failed (not only where nbsched noticed)."""


# ------------------------------------------------------------------------------------ validation
def _check_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise NotebookFileError(f"parameters must be a dict of name -> value, got {parameters!r} "
                                "(e.g. parameters={'region': 'eu'})")
    checked = {}
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise NotebookFileError(f"invalid parameter name {name!r}: it becomes a variable in the notebook, so use "
                                    "a Python identifier (e.g. 'region', 'start_date')")
        try:
            text = json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise NotebookFileError(
                f"parameter {name!r} = {value!r} ({type(value).__name__}) is not JSON-able ({exc}): parameters "
                "are written into the notebook as literals, so use str, int, float, bool, None, and lists or "
                "dicts of them (convert dates with .isoformat(), frames with .to_dict())") from None
        checked[name] = json.loads(text)
    return checked


def _read_notebook(path: Path) -> Any:
    import nbformat

    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # NotJSONError, a validation error, a decoding error...
        raise NotebookFileError(f"{str(path)!r} is not a Jupyter notebook ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''}): give the path of an .ipynb "
                                "file saved by Jupyter") from None


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    ksm = KernelSpecManager()
    try:
        ksm.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        names = ", ".join(map(repr, sorted(ksm.find_kernel_specs()))) or "none"
        raise NotebookFileError(f"no kernel named {kernel_name!r} is installed (kernels: {names}): pass "
                                "kernel_name= one of them, or install it with `python -m ipykernel install "
                                "--user --name NAME`") from None


def notebook_job(path: str | os.PathLike, *, name: str | None = None, parameters: Mapping[str, Any] | None = None,
                 output_dir: str | os.PathLike | None = None, kernel_name: str | None = None) -> "NotebookFileJob":
    """Check everything about a notebook job and build it (raises :class:`NotebookFileError`).

    The file must exist and be a notebook, the parameters JSON-able with identifier names, and
    the kernel installed; with parameters, the notebook must be a Python one (they are injected as
    Python assignments).  Nothing is created on disk here; the output folder is made on the first run.
    """
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise NotebookFileError(f"add_notebook() needs the path of an .ipynb file, got {path!r}")
    file = Path(path).expanduser()
    if not file.exists():
        raise NotebookFileError(f"no notebook at {str(path)!r} (looked in {str(file.resolve().parent)!r}): "
                                "check the path; relative paths start at the kernel's working directory")
    if not file.is_file():
        raise NotebookFileError(f"{str(path)!r} is a directory, not a notebook: give the path of an .ipynb file")
    file = file.resolve()
    checked = _check_parameters(parameters)
    nb = _read_notebook(file)
    spec = nb.metadata.get("kernelspec") or {}
    kernel = kernel_name or spec.get("name") or "python3"
    if not isinstance(kernel, str) or not kernel:
        raise NotebookFileError(f"invalid kernel_name {kernel_name!r}: give an installed kernel's name, e.g. 'python3'")
    _check_kernel(kernel)
    language = (spec.get("language") or (nb.metadata.get("language_info") or {}).get("name") or "python").lower()
    if checked and language != "python":
        raise NotebookFileError(f"{file.name!r} is a {language} notebook: parameters are injected as Python "
                                "assignments, so they work with Python notebooks only")
    if output_dir is not None and not isinstance(output_dir, (str, os.PathLike)):
        raise NotebookFileError(f"invalid output_dir {output_dir!r}: give a folder path (default: "
                                f"{DEFAULT_OUTPUT_DIR}/ next to the notebook)")
    out = Path(output_dir).expanduser().resolve() if output_dir is not None else file.parent / DEFAULT_OUTPUT_DIR
    if out.exists() and not out.is_dir():
        raise NotebookFileError(f"output_dir {str(out)!r} is a file: give a folder for the executed notebooks")
    return NotebookFileJob(file, name or file.stem, checked, out, kernel)


# ------------------------------------------------------------------------------------- injection
def inject_parameters(nb: Any, parameters: Mapping[str, Any], note: str = "") -> int | None:
    """Insert ``parameters`` as a code cell after the cell tagged ``parameters`` (else at the top);
    an earlier injected cell is removed first.  Returns the new cell's index (None: no parameters)."""
    import nbformat

    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    if not parameters:
        return None
    lines = [f"# Parameters{note}"] + [f"{key} = {value!r}" for key, value in parameters.items()]
    cell = nbformat.v4.new_code_cell("\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG]
    at = 0
    for i, c in enumerate(nb.cells):
        if PARAMETERS_TAG in c.get("metadata", {}).get("tags", []):
            at = i + 1
            break
    nb.cells.insert(at, cell)
    return at


# ------------------------------------------------------------------------------------------ runs
class NotebookFileJob:
    """A notebook file as a job function: ``await job()`` executes it once (see the module docstring).

    Built by :func:`notebook_job` (which validates); describes itself for the store with
    ``__nbsched_target__`` (kind ``notebook_file``) so persisted notebook jobs are restored.
    """

    def __init__(self, path: Path, name: str, parameters: dict[str, Any], output_dir: Path, kernel_name: str):
        self.path = Path(path)
        self.parameters = dict(parameters)
        self.output_dir = Path(output_dir)
        self.kernel_name = kernel_name
        self.__name__ = self.__qualname__ = name
        self.__nbsched_target__ = {"kind": "notebook_file", "name": name, "path": str(self.path),
                                   "parameters": self.parameters, "output_dir": str(self.output_dir),
                                   "kernel_name": kernel_name}

    def __repr__(self) -> str:
        return f"<NotebookFileJob {str(self.path)!r} parameters={self.parameters!r}>"

    def output_path(self, run_id: int, scheduled_at: Any, attempt: int) -> Path:
        """Where the executed notebook of a run goes."""
        stamp = scheduled_at.strftime("%Y%m%dT%H%M%S") if scheduled_at is not None else "manual"
        suffix = f".attempt{attempt}" if attempt > 1 else ""
        stem = _UNSAFE.sub("_", self.path.stem)
        return self.output_dir / f"{stem}.{stamp}.run{run_id}{suffix}.ipynb"

    async def __call__(self) -> str:
        from .context import NotInRunError, current_run

        try:
            ctx = current_run()
            run_id, when, attempt, job = ctx.run_id, ctx.scheduled_at, ctx.attempt, ctx.job
        except NotInRunError:  # called directly (not by the scheduler): one ad-hoc run
            run_id, when, attempt, job = 0, None, 1, self.__name__
        out = self.output_path(run_id, when, attempt)
        loop = asyncio.get_running_loop()
        nb = await loop.run_in_executor(None, self._prepare, job, run_id, when)
        return await self._execute(nb, out)

    def _prepare(self, job: str, run_id: int, when: Any) -> Any:
        """Read the file and inject the parameters (in a worker thread: file I/O stays off the loop)."""
        import nbformat

        nb = nbformat.read(str(self.path), as_version=4)
        inject_parameters(nb, self.parameters, f" (injected by nbsched for run {run_id} of job {job!r})")
        nb.metadata["nbsched"] = {"job": job, "run_id": run_id, "source": str(self.path),
                                  "scheduled_at": None if when is None else when.isoformat(),
                                  "parameters": self.parameters, "status": "running"}
        return nb

    async def _execute(self, nb: Any, out: Path) -> str:
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError

        client = NotebookClient(nb, kernel_name=self.kernel_name, timeout=None, allow_errors=False,
                                resources={"metadata": {"path": str(self.path.parent)}}, log=_nbclient_log)
        km = client.create_kernel_manager()
        # The cells run in a task of their own, awaited through a shield: a cancel (timeout,
        # interrupt, shutdown) reaches this frame as CancelledError - nbclient would turn it into
        # "Kernel died" - and the kernel is then killed before the work is let go.
        # The kernel's own stdout/stderr (its start-up log; a crash) go to a scratch file, never to the
        # terminal or - inside Jupyter - into whatever cell happens to be running.
        kernel_log = tempfile.TemporaryFile()
        work = asyncio.ensure_future(self._cells(client, kernel_log))
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            work.cancel()
            await _kill(km, client)
            await asyncio.gather(work, return_exceptions=True)
            kernel_log.close()
            self._write(nb, out, "cancelled")
            raise
        except CellExecutionError as exc:
            await _kill(km, client)
            kernel_log.close()
            self._write(nb, out, "failed")
            raise self._cell_error(nb, exc, out) from KernelTraceback(_ANSI.sub("", _kernel_tb(nb, exc)))
        except Exception as exc:  # the kernel did not start, or died
            await _kill(km, client)
            self._write(nb, out, "failed")
            raise RuntimeError(f"the kernel running {self.path.name} ({self.kernel_name!r}) failed: "
                               f"{type(exc).__name__}: {exc}{_tail(kernel_log)} (executed notebook: {out})") from exc
        await _stop(km, client)
        kernel_log.close()
        nb.metadata["nbsched"]["status"] = "completed"
        await asyncio.get_running_loop().run_in_executor(None, self._write, nb, out, "completed")
        return str(out)

    async def _cells(self, client: Any, kernel_log: Any) -> None:
        await client.async_start_new_kernel(stdout=kernel_log, stderr=kernel_log)
        await client.async_start_new_kernel_client()
        info = await client.async_wait_for_reply(client.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            client.nb.metadata["language_info"] = info["content"]["language_info"]
        count = 0
        for index, cell in enumerate(client.nb.cells):
            if cell.cell_type == "code" and cell.source.strip():
                count += 1
            await client.async_execute_cell(cell, index, execution_count=count)

    @staticmethod
    def _write(nb: Any, out: Path, status: str) -> None:
        import nbformat

        nb.metadata["nbsched"]["status"] = status
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))

    def _cell_error(self, nb: Any, exc: Any, out: Path) -> NotebookCellError:
        index = _failed_cell(nb)
        where = f"cell {index + 1}" if index is not None else "a cell"
        return NotebookCellError(
            f"{where} of {self.path.name} raised {exc.ename}: {_ANSI.sub('', exc.evalue)} (executed notebook: {out})",
            ename=exc.ename, evalue=exc.evalue, cell_index=-1 if index is None else index,
            kernel_traceback=_ANSI.sub("", _kernel_tb(nb, exc)), output=str(out))


def _tail(kernel_log: Any, limit: int = 2000) -> str:
    """The end of the kernel's own log (closes it), as a suffix for an error message."""
    try:
        kernel_log.seek(0)
        text = kernel_log.read().decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        text = ""
    finally:
        kernel_log.close()
    return f"; the kernel's log ends:\n{text[-limit:]}\n" if text else ""


def _failed_cell(nb: Any) -> int | None:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            return i
    return None


def _kernel_tb(nb: Any, exc: Any) -> str:
    """The kernel's traceback of the failing cell (from its error output), else nbclient's message."""
    index = _failed_cell(nb)
    if index is not None:
        for o in nb.cells[index].outputs:
            if o.get("output_type") == "error":
                return "\n".join(o.get("traceback") or [f"{o.get('ename')}: {o.get('evalue')}"])
    return str(exc)


async def _stop(km: Any, client: Any) -> None:
    """After a successful run: ask the kernel to shut down (it may run its atexit hooks)."""
    if client.kc is not None:
        client.kc.stop_channels()
    if km.has_kernel:
        await km.shutdown_kernel(now=False)  # (cleans up the connection file too)


async def _kill(km: Any, client: Any) -> None:
    """After a failure or a cancel: kill the kernel now."""
    try:
        if client.kc is not None:
            client.kc.stop_channels()
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001 - the kernel may be gone already; nothing is left to stop
        log.debug("nbsched: killing the kernel of a notebook run failed", exc_info=True)


def load_notebook_target(target: dict, namespace: dict) -> NotebookFileJob:
    """Rebuild a stored notebook job (the store's ``notebook_file`` target loader)."""
    return notebook_job(target["path"], name=target.get("name"), parameters=target.get("parameters") or {},
                        output_dir=target.get("output_dir"), kernel_name=target.get("kernel_name"))
