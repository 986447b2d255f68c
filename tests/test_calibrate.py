"""Calibration: the surrogate against the nodal solver, campaigns (determinism, resume, identity),
the HDF5 store (encodings, corruption) and the fit; the CLI end to end with its bad input."""

import json
from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from conftest import random_case
from typer.testing import CliRunner

from cosim.calibrate import SurrogateParams, surrogate_currents, surrogate_effective_conductance
from cosim.calibrate.campaign import CampaignDir, CampaignSpec, draw_sample, run_campaign
from cosim.calibrate.fit import fit_surrogate, relative_errors
from cosim.calibrate.store import StoreError, SurrogateModel, read_model, read_raw, write_model
from cosim.cli.main import app
from cosim.errors import SpecError
from cosim.layers.arrays import exact_effective_conductance
from cosim.specs import ArraySpec, SolveOptions
from cosim.spice import solve_crossbar

KINDS = [dict(), dict(unselected="floating"), dict(cell="1T1R", r_access_ohm=800.0), dict(cell_iv="sinh"),
         dict(cell_iv="sinh", unselected="floating", r_sense_ohm=0.0), dict(r_driver_ohm=0.0, r_wire_row_ohm=5.0)]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "1R-grounded")
def test_surrogate_converges_to_the_nodal_solution(rng, kind):
    spec = ArraySpec(24, 20, **kind)
    g, v = random_case(rng, 24, 20, 5, sparsity=0.6)
    truth = solve_crossbar(spec, g, v, SolveOptions(solver="nodal")).currents_amp
    got = surrogate_currents(torch.from_numpy(g), torch.from_numpy(v), spec, SurrogateParams(40)).numpy()
    err = relative_errors(got, truth, g, spec.v_read_volt)
    # Floating rows with sinh cells use chord-weighted row voltages: exact only to ~1e-9.
    assert err.max() < 1e-8, err.max()
    few = surrogate_currents(torch.from_numpy(g), torch.from_numpy(v), spec, SurrogateParams(1)).numpy()
    assert relative_errors(few, truth, g, spec.v_read_volt).max() > 10 * err.max()  # the sweeps do the work


def test_surrogate_effective_conductance_and_gradients(rng):
    spec = ArraySpec(12, 9, r_wire_row_ohm=4.0, r_wire_col_ohm=3.0)
    g, _ = random_case(rng, 12, 9, 1)
    geff = surrogate_effective_conductance(torch.from_numpy(g), spec, SurrogateParams(40)).numpy()
    np.testing.assert_allclose(geff, exact_effective_conductance(g, spec), rtol=1e-9)
    gt = torch.from_numpy(g[:4, :3] * 1e4).requires_grad_()  # scaled so gradcheck's step is meaningful
    vt = torch.rand(2, 4, dtype=torch.float64) * 0.2
    small = ArraySpec(4, 3, r_wire_row_ohm=300.0, r_wire_col_ohm=300.0, cell_iv="sinh")
    assert torch.autograd.gradcheck(lambda a: surrogate_currents(a * 1e-4, vt, small, SurrogateParams(6)), (gt,))


def tiny_campaign(**kw):
    base = dict(sizes=(4, 6), samples=5, vectors=3, cells=("1R", "1T1R"), ivs=("linear", "sinh"),
                unselected=("grounded", "floating"), seed=3)
    return CampaignSpec(**(base | kw))


class _StopAfter:
    def __init__(self, n):
        self.n, self.seen, self.totals = n, 0, []

    def start(self, total, description):
        self.totals.append(total)

    def advance(self, steps=1):
        self.seen += steps
        if self.seen == self.n:
            raise KeyboardInterrupt

    def note(self, text):
        pass

    def finish(self):
        pass


def test_campaign_is_deterministic_resumable_and_keeps_its_identity(tmp_path):
    c = tiny_campaign()
    a, b = draw_sample(c, 2), draw_sample(c, 2)
    assert np.array_equal(a.conductance_siemens, b.conductance_siemens) and a.spec == b.spec
    other = draw_sample(c, 3)
    assert other.spec != a.spec or not np.array_equal(other.conductance_siemens, a.conductance_siemens)
    with pytest.raises(KeyboardInterrupt):
        run_campaign(c, tmp_path / "camp", workers=1, reporter=_StopAfter(2))
    cdir = CampaignDir(tmp_path / "camp", c)
    assert len(cdir.done()) == 2  # finished solves survived the interruption
    cdir.sample_path(4).write_bytes(b"half a file")  # a leftover that must simply be redone
    again = _StopAfter(-1)
    run_campaign(c, tmp_path / "camp", workers=2, reporter=again)
    assert again.totals == [3]
    camp, samples = read_raw(tmp_path / "camp" / "raw.h5", c.campaign_id)
    assert camp == c and [s.index for s in samples] == list(range(5))
    for s in samples:  # every stored solve matches an independent solve of the same sample
        ref = solve_crossbar(s.spec, s.conductance_siemens, s.voltages_volt, SolveOptions(solver="nodal")).currents_amp
        assert relative_errors(ref, s.currents_amp, s.conductance_siemens, s.spec.v_read_volt).max() < 1e-6
    with pytest.raises(SpecError, match="holds another campaign"):
        CampaignDir(tmp_path / "camp", tiny_campaign(seed=4))
    with pytest.raises(StoreError, match="from another campaign"):
        read_raw(tmp_path / "camp" / "raw.h5", tiny_campaign(seed=4).campaign_id)


def test_store_refuses_corrupt_and_unknown_files(tmp_path):
    c = tiny_campaign()
    model = SurrogateModel(SurrogateParams(7, 1.01, 0.99), c, {"median": 1e-6}, {"note": "x"})
    path = tmp_path / "m.h5"
    write_model(path, model, ["ab", "cd"])
    back = read_model(path)
    assert back.params == model.params and back.campaign == c and back.fit_error == {"median": 1e-6}
    with h5py.File(path, "r") as f:
        assert all(f[g].attrs["encoding-type"] for g in ("params", "campaign", "fit"))
        assert list(f["campaign/netlist_sha256"][()]) == [b"ab", b"cd"]
    raw = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(StoreError, match="truncated or corrupt|truncated or malformed"):
        read_model(tmp_path / "cut.h5")
    with h5py.File(path, "a") as f:
        f["params"].attrs["encoding-version"] = "9"
    with pytest.raises(StoreError, match="encoding version '9'; this cosim reads version 1"):
        read_model(path)
    with pytest.raises(StoreError, match="does not exist"):
        read_model(tmp_path / "none.h5")


def test_fit_meets_its_target_on_held_out_solves(tmp_path):
    c = tiny_campaign(sizes=(8, 12), samples=8, r_wire_ohm=(2.0, 10.0))
    run_campaign(c, tmp_path / "camp", workers=2)
    _, samples = read_raw(tmp_path / "camp" / "raw.h5")
    model = fit_surrogate(c, samples, target_p99=1e-4)
    assert model.meta["held_out_samples"] == 2 and model.fit_error["n"] > 0
    assert model.fit_error["p99"] <= 1e-3
    assert model.meta["tried"][-1]["p99"] <= 1e-4 or model.params.iterations == 32


runner = CliRunner()


def test_cli_calibrate_validate_and_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["calibrate", "--name", "t", "--samples", "4", "--vectors", "2", "--sizes", "4,6"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "device_models" / "t.h5").exists()
    res = runner.invoke(app, ["validate", "--model", "device_models/t.h5", "--samples", "1", "--extra-sizes", "10"])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "results/validation/t/validation.json").read_text())
    assert report["overall"]["exact_linear"]["max"] < 1e-9  # linear cells: exact == SPICE
    assert report["overall"]["ideal"]["median"] > report["overall"]["surrogate"]["median"]
    assert report["nodal_vs_ngspice_max_rel"] < 1e-9
    for png in ("error_histogram", "error_vs_size", "error_vs_wire", "surrogate_vs_spice"):
        assert (tmp_path / f"results/validation/t/{png}.png").read_bytes()[:4] == b"\x89PNG"
    res = runner.invoke(app, ["validate", "--model", "device_models/t.h5", "--extra-sizes", "10", "--strict"])
    assert res.exit_code == 1 and "outside its calibrated range" in res.output
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\nrubbish")
    res = runner.invoke(app, ["validate", "--model", "bad.h5"])
    assert res.exit_code == 1 and "not a readable HDF5 file" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["calibrate", "--name", "t", "--samples", "5", "--vectors", "2", "--sizes", "4,6"])
    assert res.exit_code == 1 and "holds another campaign" in res.output


def test_nodal_newton_converges_on_an_ill_conditioned_sinh_array():
    """128x128 1T1R sinh cells on 0.08-ohm wires: the LU's round-off floor sits above 1e-13 of the
    solution; Newton must stop there, and agree with the converged surrogate (an independent solver)."""
    c = CampaignSpec(samples=48, vectors=8, sizes=(16, 32, 64, 128), cells=("1R", "1T1R"), ivs=("linear", "sinh"),
                     unselected=("grounded", "floating"), seed=0)
    s = draw_sample(c, 0)
    assert s.spec.rows == 128 and s.spec.cell_iv.value == "sinh" and s.spec.r_wire_row_ohm < 0.1
    v = s.voltages_volt[:2]
    nodal = solve_crossbar(s.spec, s.conductance_siemens, v, SolveOptions(solver="nodal")).currents_amp
    sweep = surrogate_currents(torch.from_numpy(s.conductance_siemens), torch.from_numpy(v), s.spec,
                               SurrogateParams(60)).numpy()
    assert relative_errors(sweep, nodal, s.conductance_siemens, s.spec.v_read_volt).max() < 1e-8


def test_surrogate_array_model_in_the_layer_and_its_range(tmp_path):
    import warnings

    from cosim.layers import CrossbarLinear, HardwareConfig
    from cosim.layers.config import OutOfRangeWarning
    from cosim.specs import FaultSpec

    path = tmp_path / "s.h5"
    write_model(path, SurrogateModel(SurrogateParams(40), CampaignSpec(sizes=(8, 16)), {}, {}), ["x"])
    common = dict(tile_rows=16, tile_cols=16, faults=FaultSpec(), r_wire_row_ohm=4.0)
    surrogate = HardwareConfig(array_model="surrogate", surrogate_model=str(path), **common)
    exact = HardwareConfig(array_model="exact", **common)
    a = CrossbarLinear(40, 20, hw=surrogate, seed=1, dtype=torch.float64)
    b = CrossbarLinear(40, 20, hw=exact, seed=1, dtype=torch.float64)
    b.load_state_dict(a.state_dict())
    ideal = CrossbarLinear(40, 20, hw=HardwareConfig(**common), seed=1, dtype=torch.float64)
    ideal.load_state_dict(a.state_dict())
    with torch.no_grad():
        wa, wb, wi = a.realised_weights(), b.realised_weights(), ideal.realised_weights()
    assert (wa - wb).abs().max() < 1e-6 * wb.abs().max()  # converged; float32 sweeps (SURROGATE_DTYPE)
    assert (wi - wb).abs().max() > 1e-3 * wb.abs().max()  # the parasitics do matter here
    # The readout trim works on the surrogate's G_eff as on the exact one's. (On these faulty chips
    # it does slight harm, since stuck devices bias its fit; see docs/decisions.md.)
    trimmed = [CrossbarLinear(40, 20, hw=replace(hw, readout_trim="column"), seed=1, dtype=torch.float64)
               for hw in (surrogate, exact)]
    for m in trimmed:
        m.load_state_dict(a.state_dict())
    with torch.no_grad():
        wat, wbt = (m.realised_weights() for m in trimmed)
    assert (wat - wbt).abs().max() < 1e-6 * wbt.abs().max()
    assert (wat - wa).abs().max() > 1e-2 * wa.abs().max()
    x = torch.randn(3, 40, dtype=torch.float64, requires_grad=True)
    a(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HardwareConfig(array_model="surrogate", surrogate_model=str(path), tile_rows=64, tile_cols=64)
    assert any(issubclass(w.category, OutOfRangeWarning) and "tile 64x64 outside sizes 8..16" in str(w.message)
               for w in caught)
    with pytest.raises(SpecError, match="used outside its calibrated range"):
        HardwareConfig(array_model="surrogate", surrogate_model=str(path), r_driver_ohm=9.0, strict_range=True,
                       tile_rows=16, tile_cols=16)


def test_campaign_on_a_dask_cluster_equals_the_local_one(tmp_path):
    distributed = pytest.importorskip("distributed")
    c = CampaignSpec(sizes=(4, 6), samples=4, vectors=2, seed=5, cells=("1R", "1T1R"), ivs=("linear", "sinh"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        run_campaign(c, tmp_path / "dask", scheduler=cluster.scheduler_address)
    run_campaign(c, tmp_path / "local", workers=1)
    _, remote = read_raw(tmp_path / "dask" / "raw.h5", c.campaign_id)
    _, local = read_raw(tmp_path / "local" / "raw.h5", c.campaign_id)
    assert len(remote) == 4
    for a, b in zip(remote, local):
        np.testing.assert_array_equal(a.currents_amp, b.currents_amp)
    with pytest.raises(SpecError, match="cannot reach the Dask scheduler"):
        run_campaign(tiny_campaign(seed=11), tmp_path / "nowhere", scheduler="tcp://127.0.0.1:9")
