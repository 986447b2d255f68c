"""Exact sparse modified nodal analysis of a :class:`~cosim.spice.circuit.Circuit` (scipy).

The fast reference and test oracle of DESIGN §2: it stamps the very element list that the
netlist writer renders, factors once with SuperLU and solves every input vector as one more
right-hand side. Linear circuits are solved directly (agreeing with ngspice to ~1e-13); sinh
cells are solved by Newton's method on the same equations, one factorisation per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from cosim.errors import SpiceConvergenceError
from cosim.spice.circuit import Circuit, Kind

_NEWTON_MAX_ITER = 60
_NEWTON_RTOL = 1e-13
_NEWTON_FLOOR = 1e-10


@dataclass(frozen=True)
class _System:
    """Stamped linear part: ``A x = rhs`` with x = [node voltages (V); branch currents (A)]."""

    matrix: sp.csc_matrix
    rhs: np.ndarray  # (n_unknowns, K)
    n_nodes: int
    node_index: dict[str, int]
    branch_index: dict[str, int]
    cells: tuple[np.ndarray, np.ndarray, np.ndarray]  # node a idx, node b idx (-1 = ground), G


def _assemble(circuit: Circuit, voltages_volt: np.ndarray) -> _System:
    nodes = circuit.nodes
    node_index = {n: k for k, n in enumerate(nodes)}
    vsources = [e for e in circuit.elements if e.kind is Kind.VOLTAGE_SOURCE]
    branch_index = {e.name: len(nodes) + k for k, e in enumerate(vsources)}
    size = len(nodes) + len(vsources)
    k_points = voltages_volt.shape[0]
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    rhs = np.zeros((size, k_points))
    cell_a: list[int] = []
    cell_b: list[int] = []
    cell_g: list[float] = []

    def idx(name: str) -> int:
        return -1 if name == "0" else node_index[name]

    def stamp(r: int, c: int, v: float) -> None:
        if r >= 0 and c >= 0:
            rows.append(r)
            cols.append(c)
            vals.append(v)

    spec = circuit.spec
    for e in circuit.elements:
        a, b = idx(e.node_a), idx(e.node_b)
        if e.kind is Kind.RESISTOR:
            g = 1.0 / e.value
            stamp(a, a, g), stamp(b, b, g), stamp(a, b, -g), stamp(b, a, -g)
        elif e.kind is Kind.SINH_CELL:
            cell_a.append(a)
            cell_b.append(b)
            cell_g.append(e.value)
        elif e.kind is Kind.CURRENT_SOURCE:
            current = voltages_volt[:, int(e.value)] / spec.r_driver_ohm  # from node_a into node_b
            if a >= 0:
                rhs[a] -= current
            if b >= 0:
                rhs[b] += current
        else:  # voltage source: branch current flows from node_a through the source to node_b
            k = branch_index[e.name]
            stamp(a, k, 1.0), stamp(b, k, -1.0), stamp(k, a, 1.0), stamp(k, b, -1.0)
            rhs[k] = voltages_volt[:, int(e.value)] if e.value >= 0 else 0.0
    matrix = sp.csc_matrix((vals, (rows, cols)), shape=(size, size))
    cells = (np.array(cell_a, dtype=np.int64), np.array(cell_b, dtype=np.int64), np.array(cell_g))
    return _System(matrix, rhs, len(nodes), node_index, branch_index, cells)


def _cell_stamps(system: _System, x: np.ndarray, a_per_volt: float) -> tuple[np.ndarray, sp.csc_matrix]:
    """Currents leaving each node through the sinh cells, and their Jacobian, at solution x."""
    ia, ib, g = system.cells
    size = system.matrix.shape[0]
    va = np.where(ia >= 0, x[np.maximum(ia, 0)], 0.0)
    vb = np.where(ib >= 0, x[np.maximum(ib, 0)], 0.0)
    dv = va - vb
    current = g * np.sinh(a_per_volt * dv) / a_per_volt
    slope = g * np.cosh(a_per_volt * dv)
    f = np.zeros(size)
    np.add.at(f, ia[ia >= 0], current[ia >= 0])
    np.add.at(f, ib[ib >= 0], -current[ib >= 0])
    r, c, v = [], [], []
    for (p, q, sign) in ((ia, ia, 1.0), (ib, ib, 1.0), (ia, ib, -1.0), (ib, ia, -1.0)):
        keep = (p >= 0) & (q >= 0)
        r.append(p[keep]), c.append(q[keep]), v.append(sign * slope[keep])
    jac = sp.csc_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(size, size))
    return f, jac


def _newton(system: _System, a_per_volt: float) -> np.ndarray:
    ia, ib, g = system.cells
    size = system.matrix.shape[0]
    keep = (ia >= 0) & (ib >= 0)
    # Start from the linearised circuit (sinh → its small-signal conductance G).
    lin = sp.csc_matrix(
        (np.concatenate([g[ia >= 0], g[ib >= 0], -g[keep], -g[keep]]),
         (np.concatenate([ia[ia >= 0], ib[ib >= 0], ia[keep], ib[keep]]),
          np.concatenate([ia[ia >= 0], ib[ib >= 0], ib[keep], ia[keep]]))),
        shape=(size, size),
    )
    x_all = spla.splu((system.matrix + lin).tocsc()).solve(system.rhs)
    for k in range(system.rhs.shape[1]):
        x = x_all[:, k]
        previous = np.inf
        for _ in range(_NEWTON_MAX_ITER):
            f, jac = _cell_stamps(system, x, a_per_volt)
            residual = system.matrix @ x + f - system.rhs[:, k]
            dx = spla.splu((system.matrix + jac).tocsc()).solve(-residual)
            x = x + dx
            step, scale = np.max(np.abs(dx)), max(1e-3, np.max(np.abs(x)))
            # Converged: a step below 1e-13 of the solution, or, on ill-conditioned arrays (wires
            # far more conductive than cells), a step that stopped shrinking at the round-off floor.
            if step <= _NEWTON_RTOL * scale or (step <= _NEWTON_FLOOR * scale and step > 0.1 * previous):
                break
            previous = step
        else:
            raise SpiceConvergenceError(
                f"the nodal Newton solve of the sinh array did not converge in {_NEWTON_MAX_ITER} iterations "
                f"(input vector {k}); reduce sinh_a_per_volt or the input voltages."
            )
        x_all[:, k] = x
    return x_all


def solve_nodal(circuit: Circuit, voltages_volt: np.ndarray) -> np.ndarray:
    """Solve a crossbar exactly by sparse nodal analysis.

    Args:
        circuit: from :func:`~cosim.spice.circuit.build_circuit`.
        voltages_volt: float array (K, rows), volts, one row per input vector.

    Returns:
        float64 array (K, cols): current into each column's sense node, amperes.
    """
    v = np.asarray(voltages_volt, dtype=np.float64)
    system = _assemble(circuit, v)
    if system.cells[0].size:
        x = _newton(system, circuit.spec.sinh_a_per_volt)
    else:
        x = spla.splu(system.matrix).solve(system.rhs)
    if circuit.spec.r_sense_ohm > 0:
        out = x[[system.node_index[n] for n in circuit.output_nodes]]
    else:
        out = x[[system.branch_index[n] for n in circuit.output_nodes]]
    return circuit.output_currents(out.T)
