"""Specs validate on construction; fault draws follow their definitions (DESIGN §3)."""

import math

import numpy as np
import pytest

from cosim.device import FaultCode, apply_faults, denormalise, draw_fault_map, normalise
from cosim.errors import SpecError
from cosim.specs import ArraySpec, CellKind, DeviceSpec, FaultSpec, SolveOptions, Unselected


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(rows=0, cols=4), "rows must be a whole number >= 1"),
        (dict(rows=4, cols=2.5), "cols must be a whole number"),
        (dict(rows=4, cols=4, r_wire_row_ohm=-1.0), "r_wire_row_ohm must be a finite number >= 0"),
        (dict(rows=4, cols=4, r_sense_ohm=float("nan")), "r_sense_ohm must be a finite number >= 0"),
        (dict(rows=4, cols=4, cell="2T2R"), "cell must be one of 1R, 1T1R"),
        (dict(rows=4, cols=4, unselected="open"), "unselected must be one of grounded, floating"),
        (dict(rows=4, cols=4, sinh_a_per_volt=0.0), "sinh_a_per_volt must be a finite number > 0"),
        (dict(rows=4, cols=4, v_read_volt=-0.2), "v_read_volt must be a finite voltage > 0"),
    ],
)
def test_array_spec_refuses_bad_values(kwargs, fragment):
    with pytest.raises(SpecError, match=fragment):
        ArraySpec(**kwargs)


def test_array_spec_accepts_enum_strings():
    spec = ArraySpec(2, 3, cell="1T1R", unselected="floating")
    assert spec.cell is CellKind.ONE_T_ONE_R and spec.unselected is Unselected.FLOATING
    assert spec.topology_depends_on_input and spec.shape == (2, 3)
    assert not ArraySpec(2, 3).topology_depends_on_input


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(p_tf=-0.1), "p_tf must be a probability"),
        (dict(p_tf=0.6, p_sa1=0.5), "fault rates sum to 1.1"),
        (dict(tf_sigma=-0.2), "tf_sigma must be a finite number >= 0"),
    ],
)
def test_fault_spec_refuses_bad_values(kwargs, fragment):
    with pytest.raises(SpecError, match=fragment):
        FaultSpec(**kwargs)


def test_device_spec_window():
    d = DeviceSpec(r_lrs_ohm=1e4, r_hrs_ohm=1e6)
    assert d.g_on_siemens == pytest.approx(1e-4) and d.on_off_ratio == pytest.approx(100)
    with pytest.raises(SpecError, match="must exceed"):
        DeviceSpec(r_lrs_ohm=1e6, r_hrs_ohm=1e4)
    with pytest.raises(SpecError, match="workers"):
        SolveOptions(workers=0)


def test_fault_rates_and_tf_spread_match_definition():
    """200 000 devices: each rate within 5 binomial standard errors; θ's std within 2 %."""
    faults = FaultSpec()
    n = 400 * 500
    fm = draw_fault_map((400, 500), faults, np.random.default_rng(7))
    for code, p in ((FaultCode.TF, faults.p_tf), (FaultCode.SA1, faults.p_sa1), (FaultCode.SA0, faults.p_sa0)):
        observed = np.mean(fm.codes == code)
        assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n), (code, observed, p)
    theta = fm.theta[fm.codes == FaultCode.TF]
    # std of a normal sample of size m has relative standard error ≈ 1/sqrt(2m) ≈ 0.4 % here.
    assert abs(theta.std() / faults.tf_sigma - 1) < 0.02
    assert abs(theta.mean()) < 5 * faults.tf_sigma / math.sqrt(theta.size)
    assert np.all(fm.theta[fm.codes != FaultCode.TF] == 0)


def test_same_seed_same_fault_map_and_different_seed_differs():
    a = draw_fault_map((64, 64), FaultSpec(), np.random.default_rng(3))
    b = draw_fault_map((64, 64), FaultSpec(), np.random.default_rng(3))
    c = draw_fault_map((64, 64), FaultSpec(), np.random.default_rng(4))
    assert np.array_equal(a.codes, b.codes) and np.array_equal(a.theta, b.theta)
    assert not np.array_equal(a.codes, c.codes)


@pytest.mark.parametrize("faults", [FaultSpec(), FaultSpec.none()], ids=["faulty", "fault-free"])
def test_a_fault_map_always_takes_the_same_draws_from_its_generator(monkeypatch, faults):
    """Whatever the rates, a map consumes ``random(shape)`` then ``normal(0, 1, shape)``, so the
    draws after it (a chip's programming noise) do not depend on them. The fault-free map makes
    those draws in chunks (here 7 values, so 45 values end in a partial chunk) and is all zeros."""
    import cosim.device as device_module

    monkeypatch.setattr(device_module, "_ADVANCE_CHUNK", 7)
    rng, recipe = np.random.default_rng(11), np.random.default_rng(11)
    fm = draw_fault_map((5, 9), faults, rng)
    u, z = recipe.random((5, 9)), recipe.normal(0.0, 1.0, (5, 9))
    assert np.array_equal(rng.random(20), recipe.random(20))  # the generators are at the same place
    assert np.array_equal(fm.codes == FaultCode.TF, u < faults.p_tf)
    assert np.array_equal(fm.theta, np.where(u < faults.p_tf, z * faults.tf_sigma, 0.0))
    assert (fm.codes != FaultCode.NONE).any() == (faults.total_rate > 0)


def test_apply_faults_sets_stuck_values_and_lognormal_resistance():
    device = DeviceSpec()
    g = np.full((100, 100), 5e-5)
    fm = draw_fault_map(g.shape, FaultSpec(p_tf=0.3, p_sa1=0.2, p_sa0=0.1, tf_sigma=0.5), np.random.default_rng(1))
    out = apply_faults(g, fm, device)
    assert np.all(out[fm.codes == FaultCode.SA1] == device.g_on_siemens)
    assert np.all(out[fm.codes == FaultCode.SA0] == device.g_off_siemens)
    assert np.all(out[fm.codes == FaultCode.NONE] == 5e-5)
    tf = fm.codes == FaultCode.TF
    np.testing.assert_allclose(1 / out[tf], (1 / 5e-5) * np.exp(fm.theta[tf]), rtol=1e-12)
    with pytest.raises(SpecError, match="does not match"):
        apply_faults(np.ones((3, 3)), fm, device)


def test_normalise_round_trip():
    d = DeviceSpec()
    g = np.linspace(0, 1, 11)
    np.testing.assert_allclose(normalise(denormalise(g, d), d), g, atol=1e-12)
    assert normalise(d.g_on_siemens, d) == pytest.approx(1) and normalise(d.g_off_siemens, d) == pytest.approx(0)
