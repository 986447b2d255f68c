"""Deterministic SPICE netlist text for a crossbar and its input vectors.

One input vector is solved as an operating point (``.op``). Several vectors on one circuit are
solved in a single ``.dc`` sweep of a dummy source ``vidx`` (0, 1, …, K-1): each row driver is
a behavioural source whose value is a piecewise-linear table of ``v(idx)``, flat around every
integer, so sweep point ``k`` sees exactly vector ``k``. ngspice orders its sparse matrix once
for the whole sweep, where ``alter`` + ``op`` would reorder for every vector.

Numbers are written with 17 significant digits (``%.17g``), so the text round-trips doubles
exactly and the same inputs always give the same bytes (and SHA-256).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from cosim.spice.circuit import Circuit, Kind

#: ngspice tolerances: tight enough that a Newton-solved sinh array is converged to well below
#: the 1e-9 relative agreement the linear case reaches (linear circuits are exact after one
#: iteration whatever the tolerances).
SPICE_OPTIONS = ".options reltol=1e-6 vntol=1e-9 abstol=1e-15"

#: Name of the dummy sweep source and its node.
SWEEP_SOURCE = "vidx"
_PWL_PER_LINE = 4


def _num(x: float) -> str:
    return format(float(x), ".17g")


@dataclass(frozen=True)
class Netlist:
    """SPICE text plus what is needed to read its answer back.

    Attributes:
        text: the netlist, ending in ``.end`` and a newline.
        n_points: number of input vectors it solves (1 → ``.op``; K > 1 → ``.dc`` sweep).
        output_vectors: per column, the ngspice vector holding the output (a node voltage when
            ``r_sense_ohm > 0``, else ``<ammeter>#branch``).
    """

    text: str
    n_points: int
    output_vectors: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the text (UTF-8)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def _header(circuit: Circuit, n_points: int) -> list[str]:
    s = circuit.spec
    lines = [
        f"* cosim crossbar {s.rows}x{s.cols} cell={s.cell.value} unselected={s.unselected.value} iv={s.cell_iv.value}",
        f"* r_wire_row_ohm={_num(s.r_wire_row_ohm)} r_wire_col_ohm={_num(s.r_wire_col_ohm)} "
        f"r_driver_ohm={_num(s.r_driver_ohm)} r_sense_ohm={_num(s.r_sense_ohm)}",
    ]
    if s.cell_iv.value == "sinh":
        lines.append(f"* sinh cells: I = G*sinh(a*V)/a with a={_num(s.sinh_a_per_volt)} 1/V")
    if s.isolates_unselected and s.r_access_ohm > 0:
        lines.append(f"* 1T1R access on-resistance r_access_ohm={_num(s.r_access_ohm)}")
    if s.topology_depends_on_input:
        rows = "".join("1" if x else "0" for x in circuit.selected)
        lines.append(f"* selected rows (row 0 first): {rows}")
    lines.append(f"* {n_points} input vector(s); row drivers with r_driver_ohm > 0 as Norton equivalents (I = V/R)")
    if s.r_sense_ohm > 0:
        lines.append("* column current j = v(column end node) / r_sense_ohm")
    else:
        lines.append("* column current j = i(vsense<j>), into the ideal virtual ground")
    lines.append(SPICE_OPTIONS)
    return lines


def _pwl(values: np.ndarray) -> str:
    pts: list[str] = []
    for k, y in enumerate(values):
        ys = _num(y)
        pts.append(f"{_num(k - 0.25)}, {ys}, {_num(k + 0.25)}, {ys}")
    chunks = [", ".join(pts[c : c + _PWL_PER_LINE]) for c in range(0, len(pts), _PWL_PER_LINE)]
    return f"pwl(v(idx), {chunks[0]}" + "".join(f",\n+ {c}" for c in chunks[1:]) + ")"


def render_netlist(circuit: Circuit, voltages_volt: np.ndarray) -> Netlist:
    """Render a circuit and its inputs as SPICE text.

    Args:
        circuit: from :func:`cosim.spice.circuit.build_circuit`.
        voltages_volt: float array (K, rows), volts; every row the circuit drives takes its
            value from here (already validated: finite, within ``[0, v_read_volt]``).

    Returns:
        The :class:`Netlist`; byte-identical for identical inputs.
    """
    v = np.asarray(voltages_volt, dtype=np.float64)
    k_points = v.shape[0]
    spec = circuit.spec
    lines = _header(circuit, k_points)
    if k_points > 1:
        lines.append(f"{SWEEP_SOURCE} idx 0 dc 0")
    for e in circuit.elements:
        if e.kind is Kind.RESISTOR:
            lines.append(f"{e.name} {e.node_a} {e.node_b} {_num(e.value)}")
        elif e.kind is Kind.SINH_CELL:
            a = _num(spec.sinh_a_per_volt)
            lines.append(
                f"{e.name} {e.node_a} {e.node_b} i={_num(e.value)}*sinh({a}*(v({e.node_a})-v({e.node_b})))/{a}"
            )
        elif e.value < 0:  # 0 V ammeter at a column end
            lines.append(f"{e.name} {e.node_a} {e.node_b} dc 0")
        else:
            row = int(e.value)
            values = v[:, row] / spec.r_driver_ohm if e.kind is Kind.CURRENT_SOURCE else v[:, row]
            if k_points == 1:
                lines.append(f"{e.name} {e.node_a} {e.node_b} dc {_num(values[0])}")
            else:
                quantity = "i" if e.kind is Kind.CURRENT_SOURCE else "v"
                lines.append(f"b{e.name} {e.node_a} {e.node_b} {quantity}={_pwl(values)}")
    lines.append(f".dc {SWEEP_SOURCE} 0 {k_points - 1} 1" if k_points > 1 else ".op")
    lines.append(".end")
    outputs = tuple(
        f"{name}#branch" if spec.r_sense_ohm == 0 else name for name in circuit.output_nodes
    )
    return Netlist(text="\n".join(lines) + "\n", n_points=k_points, output_vectors=outputs)
