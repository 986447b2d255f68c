"""Array models behind one small interface: conductances of a tile → effective conductances.

For linear cells an array is a linear map from row voltages to column currents, so a tile's
behaviour is fully described by its effective conductance matrix ``G_eff`` (rows × cols,
siemens): ``I = V · G_eff``. The ideal model has ``G_eff = G``; the exact model solves the
circuit (wires, drivers, sense) once per tile with the nodal solver of :mod:`cosim.spice`.
"""

from __future__ import annotations

import numpy as np

from cosim.layers.config import HardwareConfig
from cosim.specs import ArraySpec
from cosim.spice import build_circuit
from cosim.spice.nodal import solve_nodal


def tile_spec(hw: HardwareConfig) -> ArraySpec:
    """The circuit of one tile: grounded 1R, linear cells, the configured parasitics."""
    return ArraySpec(
        hw.tile_rows, hw.tile_cols, r_wire_row_ohm=hw.r_wire_row_ohm, r_wire_col_ohm=hw.r_wire_col_ohm,
        r_driver_ohm=hw.r_driver_ohm, r_sense_ohm=hw.r_sense_ohm,
    )


def exact_effective_conductance(g_siemens: np.ndarray, spec: ArraySpec) -> np.ndarray:
    """Effective conductance matrix of a linear, grounded 1R tile.

    Args:
        g_siemens: (rows, cols) device conductances, siemens.
        spec: the tile's circuit (must have a fixed topology: grounded rows, 1R cells).

    Returns:
        (rows, cols) ``G_eff`` in siemens such that column currents are ``V · G_eff`` exactly:
        one sparse factorisation, ``rows`` unit-input solves.
    """
    circuit = build_circuit(spec, g_siemens, np.ones(spec.rows, dtype=bool))
    unit = np.eye(spec.rows) * spec.v_read_volt
    return solve_nodal(circuit, unit) / spec.v_read_volt
