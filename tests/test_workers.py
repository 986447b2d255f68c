"""The worker pool never hangs the caller: time-outs and crashes cost a worker, with one clear error."""

import time

import numpy as np
import pytest
from helpers_workers import handler, init_plain

from cosim.errors import NgspiceNotFoundError, SpiceConvergenceError, SpiceCrashError, SpiceTimeoutError
from cosim.specs import ArraySpec, SolveOptions
from cosim.spice import ngspice_version, solve_crossbar
from cosim.spice.netlist import Netlist
from cosim.spice.ngspice import init_ngspice, run_netlist
from cosim.spice.workers import WorkerPool


def test_pool_returns_results_in_job_order_across_workers():
    with WorkerPool(init_plain, handler, 2, 30) as pool:
        out = pool.run([("sleep", 0.2 * (k % 2)) for k in range(6)])
    assert [v for _, v in out] == [0.2 * (k % 2) for k in range(6)]
    assert len({pid for pid, _ in out}) == 2


def test_hanging_job_is_killed_after_its_time_limit():
    t0 = time.monotonic()
    with WorkerPool(init_plain, handler, 1, 1.0) as pool:
        with pytest.raises(SpiceTimeoutError, match="ran longer than 1 s"):
            pool.run([("sleep", 60)])
        # The pool recovers: a fresh worker answers the next call.
        assert pool.run([("sleep", 0)])[0][1] == 0
    assert time.monotonic() - t0 < 20


def test_crashing_worker_reports_instead_of_hanging():
    with WorkerPool(init_plain, handler, 1, 30) as pool:
        with pytest.raises(SpiceCrashError, match="died"):
            pool.run([("crash", 3)])


def test_ngspice_errors_come_back_as_one_line():
    singular = Netlist("* floating node\nr1 a b 1k\ni1 0 a dc 1m\n.op\n.end\n", 1, ("b",))
    with WorkerPool(init_ngspice, run_netlist, 1, 60) as pool:
        with pytest.raises(SpiceConvergenceError, match="singular matrix"):
            pool.run([singular])
        diverging = Netlist("* overflow\nb1 a 0 i=1e-3*sinh(400*v(a))\ni1 0 a dc 1\n.op\n.end\n", 1, ("a",))
        with pytest.raises(SpiceConvergenceError, match="out of range"):
            pool.run([diverging])


def test_missing_ngspice_library_is_reported(monkeypatch):
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", "/nonexistent/libngspice.so")
    with pytest.raises(NgspiceNotFoundError, match="could not be loaded"):
        ngspice_version()
    with pytest.raises(NgspiceNotFoundError):
        solve_crossbar(ArraySpec(2, 2), np.full((2, 2), 1e-5), [[0.1, 0.1]], SolveOptions(workers=1))


def test_ngspice_version_is_reported():
    assert ngspice_version().startswith("ngspice-3")
