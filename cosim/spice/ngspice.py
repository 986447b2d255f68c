"""ngspice through PySpice's shared-library mode, one library instance per worker process.

The only module that imports PySpice. Known on Debian's ngspice 39 (libngspice0):

* Debian ships ``libngspice.so.0`` without the unversioned name PySpice looks for, so
  ``NGSPICE_LIBRARY_PATH`` defaults to ``libngspice.so.0`` (a user's setting wins);
* PySpice 1.5 warns "Unsupported Ngspice version 39" and falls back to its newest vector-type
  table, which fits; the warning is silenced;
* the library holds one simulator per process and can crash or hang on a bad circuit, so every
  solve runs in a :class:`~cosim.spice.workers.WorkerPool` worker under a time limit.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.errors import NgspiceNotFoundError, SpiceConvergenceError, SpiceError
from cosim.spice.netlist import Netlist

DEFAULT_LIBRARY = "libngspice.so.0" if sys.platform.startswith("linux") else "libngspice{}.dylib"

_RUSAGE_KEYS = {
    "Circuit Equations": "equations",
    "Circuit fill-in non-zeroes": "fill_ins",
    "Total iterations": "iterations",
    "Matrix load time": "load_s",
    "Matrix reorder time": "reorder_s",
    "Matrix factor time": "factor_s",
    "Matrix solve time": "solve_s",
    "Total analysis time (seconds)": "analysis_s",
}


@dataclass(frozen=True)
class SpiceStats:
    """ngspice's own account of one job (from ``rusage all``); times in seconds."""

    equations: int
    fill_ins: int
    iterations: int
    load_s: float
    reorder_s: float
    factor_s: float
    solve_s: float
    analysis_s: float


@dataclass(frozen=True)
class SpiceJobResult:
    """What a worker returns for one netlist.

    Attributes:
        values: float64 array (n_output_vectors, n_points): the requested vectors.
        stats: ngspice's timing breakdown.
        version: ngspice's version string, e.g. ``"ngspice-39.3"``.
    """

    values: np.ndarray
    stats: SpiceStats
    version: str


def library_path() -> str:
    """The shared library PySpice will load (``$NGSPICE_LIBRARY_PATH`` or Debian's name)."""
    return os.environ.get("NGSPICE_LIBRARY_PATH", DEFAULT_LIBRARY)


def init_ngspice() -> Any:
    """Worker start-up: load libngspice once for this process."""
    os.environ.setdefault("NGSPICE_LIBRARY_PATH", DEFAULT_LIBRARY)
    logging.getLogger("PySpice").setLevel(logging.CRITICAL)
    try:
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared
    except ImportError as exc:  # pragma: no cover - PySpice is a hard dependency
        raise NgspiceNotFoundError(f"PySpice is not installed ({exc}); run `make test` or `pip install PySpice==1.5`.")
    try:
        ng = NgSpiceShared.new_instance()
    except (OSError, NameError) as exc:
        raise NgspiceNotFoundError(
            f"ngspice's shared library could not be loaded from {library_path()!r} ({exc}); install Debian's "
            "ngspice and libngspice0 (`make test` does), or point NGSPICE_LIBRARY_PATH at libngspice."
        ) from None
    version_lines = ng.exec_command("version -s")
    match = re.search(r"ngspice-(\S+)", version_lines)
    version = f"ngspice-{match.group(1)}" if match else f"ngspice-{ng.ngspice_version}"
    return {"ng": ng, "version": version, "loaded": False}


def _parse_rusage(text: str) -> SpiceStats:
    found: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key in _RUSAGE_KEYS and _RUSAGE_KEYS[key] not in found:
            try:
                found[_RUSAGE_KEYS[key]] = float(value.strip())
            except ValueError:
                pass
    return SpiceStats(
        equations=int(found.get("equations", 0)),
        fill_ins=int(found.get("fill_ins", 0)),
        iterations=int(found.get("iterations", 0)),
        load_s=found.get("load_s", 0.0),
        reorder_s=found.get("reorder_s", 0.0),
        factor_s=found.get("factor_s", 0.0),
        solve_s=found.get("solve_s", 0.0),
        analysis_s=found.get("analysis_s", 0.0),
    )


def _first_error(ng: Any, fallback: str) -> str:
    lines = [s.strip() for s in str(ng.stderr or "").splitlines() if s.strip()]
    lines = [s for s in lines if "Unsupported Ngspice version" not in s and not s.startswith("Note:")]
    return "; ".join(lines[:3]) if lines else fallback


def run_netlist(state: Any, netlist: Netlist) -> SpiceJobResult:
    """Worker job: load one netlist, run its analysis and read the output vectors back."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCommandError

    ng = state["ng"]
    if state["loaded"]:
        ng.exec_command("destroy all")
        ng.remove_circuit()
    ng.clear_output()
    try:
        ng.load_circuit(netlist.text)
        state["loaded"] = True
        ng.run()
    except NgSpiceCommandError as exc:
        raise SpiceConvergenceError(f"ngspice failed on the circuit: {_first_error(ng, str(exc))}") from None
    plot_name = ng.last_plot
    if plot_name in (None, "const"):
        raise SpiceConvergenceError(f"ngspice produced no result: {_first_error(ng, 'no plot was created')}")
    plot = ng.plot(None, plot_name)
    missing = [v for v in netlist.output_vectors if v not in plot]
    if missing:
        raise SpiceConvergenceError(
            f"ngspice's result lacks vector {missing[0]!r}: {_first_error(ng, 'the analysis did not complete')}"
        )
    values = np.array([np.asarray(plot[v].to_waveform(), dtype=np.float64) for v in netlist.output_vectors])
    if values.shape[1] != netlist.n_points:
        raise SpiceError(f"ngspice returned {values.shape[1]} points where {netlist.n_points} were swept.")
    if not np.all(np.isfinite(values)):
        raise SpiceConvergenceError("ngspice returned non-finite currents: the solve did not converge.")
    stats = _parse_rusage(ng.exec_command("rusage all"))
    return SpiceJobResult(values=values, stats=stats, version=state["version"])


