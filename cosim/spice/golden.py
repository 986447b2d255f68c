"""The golden netlists kept in ``netlists/`` and checked line by line by the tests.

Each case is fully determined by its seed; ``cosim spice golden --out netlists`` rewrites them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosim.device import apply_faults, draw_fault_map, random_conductances
from cosim.fileio import write_text
from cosim.specs import ArraySpec, CellIV, CellKind, DeviceSpec, FaultSpec, Unselected
from cosim.spice.circuit import build_circuit
from cosim.spice.netlist import Netlist, render_netlist


@dataclass(frozen=True)
class GoldenCase:
    """One golden example: a named spec, its seed and how many input vectors it takes."""

    name: str
    spec: ArraySpec
    seed: int
    n_vectors: int
    faults: FaultSpec
    description: str


GOLDEN_CASES: tuple[GoldenCase, ...] = (
    GoldenCase("1r_4x4_faults", ArraySpec(4, 4), 1, 1, FaultSpec(),
               "4x4 1R, paper-000 fault rates, 2.5 ohm wires, one input vector (.op)"),
    GoldenCase("1t1r_4x4", ArraySpec(4, 4, cell=CellKind.ONE_T_ONE_R, r_access_ohm=1e3), 2, 1, FaultSpec.none(),
               "4x4 1T1R with 1 kohm access devices; row 1 unselected and isolated"),
    GoldenCase("sinh_8x8", ArraySpec(8, 8, cell_iv=CellIV.SINH), 3, 3, FaultSpec(),
               "8x8 sinh cells, three input vectors in one .dc sweep"),
    GoldenCase("floating_8x8", ArraySpec(8, 8, unselected=Unselected.FLOATING, r_sense_ohm=0.0), 4, 1,
               FaultSpec.none(), "8x8 1R with floating unselected rows and ideal virtual-ground sensing"),
)


def golden_netlist(case: GoldenCase) -> Netlist:
    """Render a golden case (deterministic: same seed, same bytes)."""
    rng = np.random.default_rng(case.seed)
    device = DeviceSpec()
    g = random_conductances(case.spec.shape, device, rng)
    g = apply_faults(g, draw_fault_map(case.spec.shape, case.faults, rng), device)
    v = rng.uniform(0.0, case.spec.v_read_volt, (case.n_vectors, case.spec.rows))
    if case.spec.topology_depends_on_input:
        v[:, 1::3] = 0.0  # every third row, from row 1, unselected in all vectors
    selected = v[0] != 0
    return render_netlist(build_circuit(case.spec, g, selected), v)


def write_golden(directory: str | Path) -> list[Path]:
    """Write every golden netlist as ``<directory>/<name>.cir``; returns the paths."""
    paths = []
    for case in GOLDEN_CASES:
        path = Path(directory) / f"{case.name}.cir"
        write_text(path, golden_netlist(case).text)
        paths.append(path)
    return paths
