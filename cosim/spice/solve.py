"""Solve a crossbar for a batch of input vectors with ngspice or the nodal solver.

:func:`solve_crossbar` is the entry point of the SPICE level: it validates the inputs, groups
the vectors by the circuit they need (with floating rows or 1T1R cells, which rows are
selected changes the circuit), renders one netlist per group (split across workers when
there are fewer groups than workers), solves, and returns a :class:`SolveResult`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from cosim.errors import SpecError
from cosim.report import NullReporter, Reporter
from cosim.specs import ArraySpec, SolveOptions, Solver
from cosim.spice.circuit import build_circuit
from cosim.spice.netlist import Netlist, render_netlist
from cosim.spice.ngspice import SpiceJobResult, SpiceStats, init_ngspice, run_netlist
from cosim.spice.nodal import solve_nodal
from cosim.spice.workers import WorkerPool

#: Most input vectors in one ngspice sweep (bounds one job's time and the netlist's size).
MAX_POINTS_PER_JOB = 500


@dataclass(frozen=True)
class SolveResult:
    """Column currents of a crossbar for a batch of inputs.

    Attributes:
        currents_amp: float64 (batch, cols): current into each column's sense node, amperes.
        ideal_amp: float64 (batch, cols): the ideal ``V · G`` (no wires, drivers, sense
            resistance or nonlinearity), amperes.
        solver: which engine produced ``currents_amp``.
        netlist_sha256: SHA-256 of every netlist solved (ngspice), or of every netlist the
            same circuits would have (nodal), in group order.
        ngspice_version: e.g. ``"ngspice-39.3"``; None for the nodal solver.
        wall_s: wall-clock time of the solve, seconds (validation and netlists included).
        spice_stats: ngspice's breakdown per job (empty for the nodal solver).
    """

    currents_amp: np.ndarray
    ideal_amp: np.ndarray
    solver: Solver
    netlist_sha256: tuple[str, ...]
    ngspice_version: str | None
    wall_s: float
    spice_stats: tuple[SpiceStats, ...]

    @property
    def rel_error(self) -> np.ndarray:
        """(batch, cols): ``(I − I_ideal) / I_ideal``; NaN where the ideal current is 0."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.ideal_amp != 0, (self.currents_amp - self.ideal_amp) / self.ideal_amp, np.nan)

    @property
    def column_rel_error(self) -> np.ndarray:
        """(cols,): ``Σ_b |I − I_ideal| / Σ_b |I_ideal|`` per column (0 where a column carries nothing)."""
        num = np.abs(self.currents_amp - self.ideal_amp).sum(axis=0)
        den = np.abs(self.ideal_amp).sum(axis=0)
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def validate_inputs(spec: ArraySpec, conductance_siemens: object, voltages_volt: object) -> tuple[np.ndarray, np.ndarray]:
    """Check and convert the conductance matrix and input vectors.

    Args:
        spec: the array they must fit.
        conductance_siemens: (rows, cols), siemens, finite and >= 0.
        voltages_volt: (batch, rows) or (rows,) volts, finite, within ``[0, v_read_volt]``.

    Returns:
        ``(G, V)`` as float64 arrays of shapes (rows, cols) and (batch, rows).

    Raises:
        SpecError: with one sentence naming the first offending entry.
    """
    try:
        g = np.asarray(conductance_siemens, dtype=np.float64)
        v = np.asarray(voltages_volt, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"conductances and voltages must be numeric arrays ({exc}).") from None
    if g.size == 0:
        raise SpecError("the conductance matrix is empty.")
    if g.shape != spec.shape:
        raise SpecError(f"conductances have shape {g.shape} but the array is {spec.rows}x{spec.cols} (rows x cols).")
    bad = np.argwhere(~np.isfinite(g))
    if bad.size:
        raise SpecError(f"conductances contain a non-finite value ({g[tuple(bad[0])]}) at {tuple(int(x) for x in bad[0])}.")
    bad = np.argwhere(g < 0)
    if bad.size:
        raise SpecError(
            f"conductances must be >= 0 siemens; found {g[tuple(bad[0])]:g} S at {tuple(int(x) for x in bad[0])}."
        )
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2 or v.shape[0] == 0 or v.size == 0:
        raise SpecError(f"voltages must be a non-empty (batch, rows) array; got shape {np.shape(voltages_volt)}.")
    if v.shape[1] != spec.rows:
        raise SpecError(f"voltages have {v.shape[1]} entries per vector but the array has {spec.rows} rows.")
    bad = np.argwhere(~np.isfinite(v))
    if bad.size:
        raise SpecError(f"voltages contain a non-finite value at (vector, row) {tuple(int(x) for x in bad[0])}.")
    limit = spec.v_read_volt * (1 + 1e-12)
    bad = np.argwhere((v < 0) | (v > limit))
    if bad.size:
        raise SpecError(
            f"input voltages must lie in [0, v_read_volt = {spec.v_read_volt:g}] V; found {v[tuple(bad[0])]:g} V at "
            f"(vector, row) {tuple(int(x) for x in bad[0])} (raise --v-read-volt if that is intended)."
        )
    return g, v


def _groups(spec: ArraySpec, v: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(selected rows, indices of the vectors using that circuit) pairs, in first-use order."""
    if not spec.topology_depends_on_input:
        return [(np.ones(spec.rows, dtype=bool), np.arange(v.shape[0]))]
    masks, first, inverse = np.unique(v != 0, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [(masks[k], np.flatnonzero(inverse.ravel() == k)) for k in order]


def _chunks(indices: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    n_chunks = max(n_chunks, math.ceil(len(indices) / MAX_POINTS_PER_JOB))
    return [c for c in np.array_split(indices, min(n_chunks, len(indices))) if len(c)]


def plan_netlists(spec: ArraySpec, g: np.ndarray, v: np.ndarray, split: int = 1) -> list[tuple[np.ndarray, Netlist, object]]:
    """The netlists that solve ``v`` on ``g``: (vector indices, netlist, circuit) per job.

    Args:
        spec, g, v: validated inputs (see :func:`validate_inputs`).
        split: split the vectors into at least this many jobs when there are fewer circuits
            than that (each job pays ngspice's matrix ordering once, then solves its vectors).
    """
    groups = _groups(spec, v)
    per_group = max(1, math.ceil(split / len(groups)))
    plan = []
    for selected, idx in groups:
        circuit = build_circuit(spec, g, selected)
        for chunk in _chunks(idx, per_group):
            plan.append((chunk, render_netlist(circuit, v[chunk]), circuit))
    return plan


def solve_crossbar(
    spec: ArraySpec,
    conductance_siemens: object,
    voltages_volt: object,
    options: SolveOptions | None = None,
    reporter: Reporter | None = None,
) -> SolveResult:
    """Column currents of a crossbar for a batch of input vectors.

    Args:
        spec: geometry, parasitics, cell kind, unselected-row policy.
        conductance_siemens: (rows, cols), siemens (faults already applied).
        voltages_volt: (batch, rows) or (rows,), volts in ``[0, v_read_volt]``.
        options: solver, worker count, time limit.
        reporter: receives one step per solved job.

    Returns:
        A :class:`SolveResult`.

    Raises:
        SpecError: bad inputs. SpiceError (and subclasses): ngspice missing, crashed, timed out
        or did not converge.
    """
    options = options or SolveOptions()
    reporter = reporter or NullReporter()
    t0 = time.perf_counter()
    g, v = validate_inputs(spec, conductance_siemens, voltages_volt)
    split = options.workers if options.solver is Solver.NGSPICE else 1
    plan = plan_netlists(spec, g, v, split=split)
    currents = np.empty((v.shape[0], spec.cols))
    stats: list[SpiceStats] = []
    version = None
    reporter.start(len(plan), f"{options.solver.value}: {spec.rows}x{spec.cols}, {v.shape[0]} vector(s)")
    try:
        if options.solver is Solver.NODAL:
            for idx, _netlist, circuit in plan:
                currents[idx] = solve_nodal(circuit, v[idx])
                reporter.advance(1)
        else:
            with WorkerPool(init_ngspice, run_netlist, options.workers, options.timeout_s, "ngspice") as pool:
                results: list[SpiceJobResult] = pool.run([n for _, n, _ in plan], reporter)
            for (idx, _netlist, circuit), res in zip(plan, results):
                currents[idx] = circuit.output_currents(res.values.T)
                stats.append(res.stats)
                version = res.version
    finally:
        reporter.finish()
    return SolveResult(
        currents_amp=currents,
        ideal_amp=v @ g,
        solver=options.solver,
        netlist_sha256=tuple(n.sha256 for _, n, _ in plan),
        ngspice_version=version,
        wall_s=time.perf_counter() - t0,
        spice_stats=tuple(stats),
    )


def _report_version(state: object, _job: object) -> str:
    return state["version"]  # type: ignore[index]


def ngspice_version(timeout_s: float = 60.0) -> str:
    """Start one ngspice worker and return its version string (raises NgspiceNotFoundError)."""
    with WorkerPool(init_ngspice, _report_version, 1, timeout_s, "ngspice") as pool:
        return pool.run([None])[0]
