"""The nodal solver and ngspice against analytic circuits, an independent dense solver, and each other."""

import numpy as np
import pytest
from conftest import random_case
from reference import dense_crossbar
from scipy.optimize import brentq

from cosim.device import apply_faults, draw_fault_map
from cosim.specs import ArraySpec, DeviceSpec, FaultSpec, SolveOptions
from cosim.spice import solve_crossbar

NODAL = SolveOptions(solver="nodal")
NGSPICE = SolveOptions(solver="ngspice", workers=2, timeout_s=120)


def rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("options", [NODAL, NGSPICE], ids=["nodal", "ngspice"])
def test_one_by_one_is_a_series_circuit(options):
    spec = ArraySpec(1, 1, r_driver_ohm=7.0, r_sense_ohm=3.0)
    res = solve_crossbar(spec, [[1 / 12_345.0]], [[0.17]], options)
    assert res.currents_amp[0, 0] == pytest.approx(0.17 / (7.0 + 12_345.0 + 3.0), rel=1e-12)


@pytest.mark.parametrize("options", [NODAL, NGSPICE], ids=["nodal", "ngspice"])
def test_two_by_two_by_hand(options):
    """Row wires only (columns ideal, sensed at 0 V): each row is a ladder solved by hand."""
    r_w, r_d = 100.0, 50.0
    g = np.array([[1e-3, 2e-3], [4e-4, 1e-3]])
    v = np.array([[0.2, 0.1]])
    spec = ArraySpec(2, 2, r_wire_row_ohm=r_w, r_wire_col_ohm=0, r_driver_ohm=r_d, r_sense_ohm=0)
    expected = np.zeros(2)
    for i in range(2):
        # Node 1 sees g1 to ground and (r_w + 1/g2) to ground; the driver r_d feeds node 1.
        far = 1.0 / (r_w + 1.0 / g[i, 1])
        u1 = v[0, i] * (1 / r_d) / (1 / r_d + g[i, 0] + far)
        u2 = u1 * (1.0 / g[i, 1]) / (r_w + 1.0 / g[i, 1])
        expected += [u1 * g[i, 0], u2 * g[i, 1]]
    res = solve_crossbar(spec, g, v, options)
    np.testing.assert_allclose(res.currents_amp[0], expected, rtol=1e-12)


@pytest.mark.parametrize("options", [NODAL, NGSPICE], ids=["nodal", "ngspice"])
def test_zero_parasitics_give_exactly_v_dot_g(rng, options):
    g, v = random_case(rng, 6, 5, 3)
    spec = ArraySpec(6, 5, r_wire_row_ohm=0, r_wire_col_ohm=0, r_driver_ohm=0, r_sense_ohm=0)
    res = solve_crossbar(spec, g, v, options)
    np.testing.assert_allclose(res.currents_amp, v @ g, rtol=1e-12)
    assert np.max(np.abs(res.column_rel_error)) < 1e-12


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(unselected="floating"), dict(cell="1T1R", r_access_ohm=800.0), dict(r_wire_row_ohm=10.0, r_driver_ohm=1.0)],
    ids=["grounded", "floating", "1t1r", "asymmetric"],
)
def test_nodal_matches_independent_dense_solver(rng, kw):
    g, v = random_case(rng, 7, 6, 4, sparsity=0.3)
    spec = ArraySpec(7, 6, **kw)
    res = solve_crossbar(spec, g, v, NODAL)
    for b in range(v.shape[0]):
        ref = dense_crossbar(g, v[b], spec.r_wire_row_ohm, spec.r_wire_col_ohm, spec.r_driver_ohm, spec.r_sense_ohm,
                             floating=spec.unselected.value == "floating", isolate=spec.cell.value == "1T1R",
                             r_access=spec.r_access_ohm)
        np.testing.assert_allclose(res.currents_amp[b], ref, rtol=1e-10)


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(unselected="floating"), dict(cell="1T1R"), dict(cell="1T1R", r_access_ohm=1e3, unselected="floating"),
     dict(r_sense_ohm=0.0, r_driver_ohm=0.0), dict(r_wire_row_ohm=10.0, r_wire_col_ohm=0.5)],
    ids=["grounded", "floating", "1t1r", "1t1r-access-floating", "ideal-periphery", "uneven-wires"],
)
def test_ngspice_matches_nodal_to_1e9_with_faults(rng, kw):
    device = DeviceSpec()
    g, v = random_case(rng, 12, 10, 6, sparsity=0.3)
    g = apply_faults(g, draw_fault_map(g.shape, FaultSpec(tf_sigma=0.5), rng), device)
    spec = ArraySpec(12, 10, **kw)
    spice = solve_crossbar(spec, g, v, NGSPICE)
    nodal = solve_crossbar(spec, g, v, NODAL)
    assert spice.ngspice_version.startswith("ngspice-")
    assert rel(spice.currents_amp, nodal.currents_amp) <= 1e-9
    assert spice.netlist_sha256 == nodal.netlist_sha256 or spec.topology_depends_on_input is False
    # The parasitics are real: the ideal model is measurably off.
    assert rel(spice.ideal_amp, spice.currents_amp) > 1e-4


def test_sinh_cells_ngspice_nodal_and_analytic():
    """1×1 sinh cell: V = I (r_d + r_s) + asinh(a I / G) / a, solved by bracketing."""
    a_nl, g0, rd, rs, v0 = 4.0, 1e-4, 2000.0, 1000.0, 0.2
    current = brentq(lambda i: i * (rd + rs) + np.arcsinh(a_nl * i / g0) / a_nl - v0, 0, v0 / (rd + rs), xtol=1e-20)
    spec = ArraySpec(1, 1, cell_iv="sinh", sinh_a_per_volt=a_nl, r_driver_ohm=rd, r_sense_ohm=rs)
    for options in (NODAL, NGSPICE):
        res = solve_crossbar(spec, [[g0]], [[v0]], options)
        assert res.currents_amp[0, 0] == pytest.approx(current, rel=1e-7)


def test_sinh_array_ngspice_vs_nodal_newton(rng):
    g, v = random_case(rng, 10, 8, 5, sparsity=0.2)
    for kw in (dict(), dict(unselected="floating")):
        spec = ArraySpec(10, 8, cell_iv="sinh", sinh_a_per_volt=5.0, **kw)
        spice = solve_crossbar(spec, g, v, NGSPICE)
        nodal = solve_crossbar(spec, g, v, NODAL)
        assert rel(spice.currents_amp, nodal.currents_amp) <= 1e-6  # ngspice's Newton stops at reltol 1e-6
        # sinh(aV)/a > V: the nonlinear array conducts more than the linear one would.
        linear = solve_crossbar(ArraySpec(10, 8, **kw), g, v, NODAL)
        assert np.all(nodal.currents_amp.sum(axis=1) > linear.currents_amp.sum(axis=1))


def test_sweep_equals_separate_operating_points(rng):
    g, v = random_case(rng, 8, 8, 5)
    spec = ArraySpec(8, 8)
    swept = solve_crossbar(spec, g, v, SolveOptions(workers=1))
    assert len(swept.spice_stats) == 1  # one ngspice job solved all five vectors
    for b in range(5):
        single = solve_crossbar(spec, g, v[b], SolveOptions(workers=1))
        np.testing.assert_allclose(single.currents_amp[0], swept.currents_amp[b], rtol=1e-12)


def test_wire_resistance_lowers_currents_more_for_far_columns(rng):
    """IR drop: with row drivers at column 0, far columns lose more current (all-on input, LRS cells)."""
    g = np.full((16, 16), DeviceSpec().g_on_siemens)
    v = np.full((1, 16), 0.2)
    res = solve_crossbar(ArraySpec(16, 16, r_wire_row_ohm=5.0, r_wire_col_ohm=0.0, r_sense_ohm=0.0), g, v, NODAL)
    err = -res.rel_error[0]
    assert np.all(np.diff(err) > 0) and 0 < err[0] < err[-1]
