"""SPICE level: crossbar circuits, netlists, ngspice through PySpice, and the nodal reference.

PySpice is imported only inside :mod:`cosim.spice.ngspice` (in worker processes).
"""

from cosim.spice.circuit import Circuit, build_circuit
from cosim.spice.netlist import Netlist, render_netlist
from cosim.spice.solve import SolveResult, ngspice_version, plan_netlists, solve_crossbar, validate_inputs

__all__ = [
    "Circuit",
    "Netlist",
    "SolveResult",
    "build_circuit",
    "ngspice_version",
    "plan_netlists",
    "render_netlist",
    "solve_crossbar",
    "validate_inputs",
]
