"""A small process pool with a per-job time limit, written once for every external solver.

Each worker is a ``spawn``-ed process that calls ``init()`` once (for ngspice: load the shared
library, which allows one instance per process) and then ``handler(state, job)`` for each job.
A job that outlives ``timeout_s`` gets its worker killed; a worker that dies (segfault, abort)
costs that worker only. Either way the caller gets a :class:`~cosim.errors.SpiceError`
subclass with one clear line, never a hang. ``init`` and ``handler`` must be module-level
functions (picklable by name).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from cosim.errors import CosimError, SpiceCrashError, SpiceError, SpiceTimeoutError
from cosim.report import NullReporter, Reporter

_CONTEXT = mp.get_context("spawn")
_STARTUP_TIMEOUT_S = 120.0


def _worker_main(conn: Connection, init: Callable[[], Any], handler: Callable[[Any, Any], Any]) -> None:
    try:
        state = init()
    except CosimError as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", "SpiceError", f"worker start-up failed: {type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", None, None))
    while True:
        try:
            tag, job = conn.recv()
        except EOFError:
            return
        if tag == "stop":
            return
        try:
            conn.send(("ok", handler(state, job), None))
        except CosimError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except Exception as exc:  # noqa: BLE001
            conn.send(("error", "SpiceError", f"{type(exc).__name__}: {exc}"))


@dataclass
class _Worker:
    process: Any
    conn: Connection
    job_index: int = -1
    started_at: float = 0.0


def _error_class(name: str) -> type[CosimError]:
    import cosim.errors as errors

    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, CosimError) else SpiceError


class WorkerPool:
    """Run jobs on ``n_workers`` spawned processes, each job under a wall-clock limit.

    Use as a context manager; :meth:`run` may be called several times while it is open.
    """

    def __init__(
        self,
        init: Callable[[], Any],
        handler: Callable[[Any, Any], Any],
        n_workers: int,
        timeout_s: float,
        label: str = "worker",
    ) -> None:
        self._init = init
        self._handler = handler
        self._n = n_workers
        self._timeout_s = timeout_s
        self._label = label
        self._workers: list[_Worker] = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> _Worker:
        parent, child = _CONTEXT.Pipe()
        proc = _CONTEXT.Process(target=_worker_main, args=(child, self._init, self._handler), daemon=True)
        proc.start()
        child.close()
        worker = _Worker(proc, parent)
        ready = parent.poll(_STARTUP_TIMEOUT_S)
        if not ready:
            self._kill(worker)
            raise SpiceTimeoutError(f"the {self._label} process did not start within its time limit.")
        try:
            status, kind, message = parent.recv()
        except EOFError:
            self._kill(worker)
            raise SpiceCrashError(f"the {self._label} process died while starting.") from None
        if status != "ready":
            self._kill(worker)
            raise _error_class(kind)(message)
        return worker

    @staticmethod
    def _kill(worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=5)
        worker.conn.close()

    def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        for w in self._workers:
            try:
                w.conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
        for w in self._workers:
            w.process.join(timeout=2)
            self._kill(w)
        self._workers = []

    def run(self, jobs: Sequence[Any], reporter: Reporter | None = None,
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """Run all jobs and return their results in job order.

        ``on_result(index, result)`` is called in this process as each job finishes (e.g. to
        store it at once, so that an interrupted run loses no finished job).

        Raises:
            SpiceTimeoutError: a job ran past ``timeout_s`` (its worker was killed).
            SpiceCrashError: a worker died during a job.
            CosimError: the handler raised one (re-raised here with its message).
        """
        reporter = reporter or NullReporter()
        results: list[Any] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        busy: dict[int, _Worker] = {}
        try:
            while len(self._workers) < min(self._n, len(jobs)):
                self._workers.append(self._start())
            idle = list(self._workers)
            done = 0
            while done < len(jobs):
                while idle and pending:
                    w = idle.pop()
                    w.job_index = pending.pop(0)
                    w.started_at = time.monotonic()
                    w.conn.send(("job", jobs[w.job_index]))
                    busy[id(w)] = w
                now = time.monotonic()
                remaining = min(w.started_at + self._timeout_s - now for w in busy.values())
                ready = wait([w.conn for w in busy.values()], timeout=max(remaining, 0.0))
                if not ready:
                    late = min(busy.values(), key=lambda w: w.started_at)
                    raise SpiceTimeoutError(
                        f"{self._label} job {late.job_index} ran longer than {self._timeout_s:g} s and was stopped."
                    )
                for w in [w for w in busy.values() if w.conn in ready]:
                    try:
                        status, payload, message = w.conn.recv()
                    except EOFError:
                        code = w.process.exitcode
                        raise SpiceCrashError(
                            f"the {self._label} process died (exit code {code}) while solving job {w.job_index}."
                        ) from None
                    if status != "ok":
                        raise _error_class(payload)(message)
                    results[w.job_index] = payload
                    if on_result is not None:
                        on_result(w.job_index, payload)
                    del busy[id(w)]
                    idle.append(w)
                    done += 1
                    reporter.advance(1)
        except BaseException:
            # A timed-out, crashed or interrupted pool is not reused: kill everything now.
            for w in self._workers:
                self._kill(w)
            self._workers = []
            raise
        return results
