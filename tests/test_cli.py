"""The CLI through typer's CliRunner: results on disk, and one clear line for every bad input."""

import io
import json

import numpy as np
import pytest
from conftest import invoke, random_case
from rich.console import Console

from cosim.cli.common import RichReporter
from cosim.specs import ArraySpec, SolveOptions
from cosim.spice import solve_crossbar
from cosim.spice.netlist import SPICE_OPTIONS


@pytest.fixture
def case(tmp_path, rng):
    g, v = random_case(rng, 6, 5, 3)
    np.save(tmp_path / "G.npy", g)
    np.save(tmp_path / "V.npy", v)
    return tmp_path, g, v


@pytest.mark.parametrize("solver", ["ngspice", "nodal"])
def test_solve_writes_npz_and_json(case, solver):
    d, g, v = case
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--r-wire-row-ohm", 5,
                 "--solver", solver, "--out", d / "r.npz", "--json", d / "s.json")
    assert res.exit_code == 0, res.output
    expected = solve_crossbar(ArraySpec(6, 5, r_wire_row_ohm=5.0), g, v, SolveOptions(solver="nodal"))
    with np.load(d / "r.npz") as z:
        np.testing.assert_allclose(z["currents"], expected.currents_amp, rtol=1e-9)
        np.testing.assert_allclose(z["ideal"], v @ g, rtol=1e-12)
        np.testing.assert_allclose(z["column_rel_error"], expected.column_rel_error, rtol=1e-6)
        assert z["rel_error"].shape == (3, 5)
    summary = json.loads((d / "s.json").read_text())
    assert summary["solver"] == solver and summary["batch"] == 3
    assert summary["array"]["r_wire_row_ohm"] == 5.0 and len(summary["netlist_sha256"][0]) == 64
    assert (summary["ngspice_version"] or "").startswith("ngspice-") == (solver == "ngspice")
    assert "rel. error (%)" in res.output


def test_solve_with_faults_is_seeded(case):
    d, _, _ = case
    outs = []
    for seed in (1, 1, 2):
        res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--solver", "nodal",
                     "--p-sa1", 0.3, "--seed", seed, "--out", d / f"f{seed}.npz")
        assert res.exit_code == 0, res.output
        with np.load(d / f"f{seed}.npz") as z:
            outs.append(z["conductances"])
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])
    assert np.isclose(outs[0], 1e-4).mean() > 0.2  # about 30 % stuck at LRS


def test_netlist_command_and_golden(case, tmp_path):
    d, _, _ = case
    res = invoke("spice", "netlist", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "x.cir")
    assert res.exit_code == 0, res.output
    text = (d / "x.cir").read_text()
    assert SPICE_OPTIONS in text and ".dc vidx 0 2 1" in text and text.endswith(".end\n")
    res = invoke("spice", "golden", "--out", tmp_path / "golden")
    assert res.exit_code == 0 and len(list((tmp_path / "golden").glob("*.cir"))) == 4


def test_info_reports_ngspice():
    res = invoke("info")
    assert res.exit_code == 0 and "ngspice-" in res.output


def _bad(tmp_path, g, v, *extra):
    np.save(tmp_path / "bg.npy", g)
    np.save(tmp_path / "bv.npy", v)
    out = tmp_path / "out.npz"
    res = invoke("spice", "solve", "--conductances", tmp_path / "bg.npy", "--voltages", tmp_path / "bv.npy",
                 "--out", out, *extra)
    return res, out


@pytest.mark.parametrize(
    "g, v, fragment",
    [
        (np.array([[1e-5, np.nan], [1e-5, 1e-5]]), np.full((1, 2), 0.1), "non-finite"),
        (np.array([[1e-5, -1e-5], [1e-5, 1e-5]]), np.full((1, 2), 0.1), "must be >= 0 siemens"),
        (np.full((2, 2), 1e-5), np.full((1, 3), 0.1), "3 entries per vector but the array has 2 rows"),
        (np.zeros((0, 0)), np.zeros((0, 0)), "non-empty"),
        (np.full((2, 2), 1e-5), np.zeros((0, 2)), "non-empty"),
        (np.full((2, 2), 1e-5), np.full((1, 2), 0.5), "must lie in [0, v_read_volt"),
        (np.full((2, 2), 1e-5), np.full((1, 2), np.inf), "non-finite"),
    ],
    ids=["nan", "negative", "shape", "empty-g", "empty-v", "over-vread", "inf-v"],
)
def test_bad_arrays_give_one_line_and_no_output(tmp_path, g, v, fragment):
    res, out = _bad(tmp_path, g, v, "--solver", "nodal")
    assert res.exit_code == 1
    assert fragment in res.stderr and "Traceback" not in res.output + res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2  # one message (rich may wrap a long line once)
    assert not out.exists() and not list(tmp_path.glob(".out.npz*"))


def test_pickled_and_missing_files_are_refused(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "v.npy", np.full((1, 2), 0.1))
    res = invoke("spice", "solve", "--conductances", tmp_path / "obj.npy", "--voltages", tmp_path / "v.npy",
                 "--out", tmp_path / "o.npz")
    assert res.exit_code == 1 and "refused" in res.stderr
    res = invoke("spice", "solve", "--conductances", tmp_path / "nope.npy", "--voltages", tmp_path / "v.npy",
                 "--out", tmp_path / "o.npz")
    assert res.exit_code == 1 and "does not exist" in res.stderr
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    res = invoke("spice", "solve", "--conductances", tmp_path / "junk.npy", "--voltages", tmp_path / "v.npy",
                 "--out", tmp_path / "o.npz")
    assert res.exit_code == 1 and "not a readable" in res.stderr
    assert not (tmp_path / "o.npz").exists()


def test_unknown_option_and_bad_choice_exit_2(case):
    d, _, _ = case
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "o.npz",
                 "--bogus", 1)
    assert res.exit_code == 2 and "No such option" in res.output + res.stderr
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "o.npz",
                 "--cell", "2T2R")
    assert res.exit_code == 2 and "2T2R" in res.output + res.stderr
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "o.npz",
                 "--r-wire-row-ohm", -3)
    assert res.exit_code == 1 and "r_wire_row_ohm must be a finite number >= 0" in res.stderr


@pytest.mark.parametrize(("command", "fragment"), [
    (("train",), "TOML file with [run], [train], [hardware]."),
    (("evaluate",), "TOML with a [hardware] table"),
    (("calibrate",), "TOML with a [campaign] table"),
])
def test_help_prints_toml_section_names_as_written(command, fragment):
    """Square brackets in help text are TOML section names, not markup to be swallowed."""
    res = invoke(*command, "--help", terminal_width=200)
    assert res.exit_code == 0 and fragment in res.output, res.output


def test_missing_ngspice_and_nonconvergence_exit_1(case, monkeypatch):
    d, _, _ = case
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "o.npz",
                 "--iv", "sinh", "--sinh-a-per-volt", 4000, "--r-driver-ohm", 0, "--workers", 1)
    assert res.exit_code == 1 and "ngspice failed" in res.stderr and not (d / "o.npz").exists()
    monkeypatch.setenv("NGSPICE_LIBRARY_PATH", "/nonexistent/libngspice.so")
    res = invoke("spice", "solve", "--conductances", d / "G.npy", "--voltages", d / "V.npy", "--out", d / "o.npz")
    assert res.exit_code == 1 and "could not be loaded" in res.stderr and not (d / "o.npz").exists()
    assert invoke("info").exit_code == 1


def test_demo_runs_small(tmp_path):
    res = invoke("demo", "--size", 8, "--vectors", 2, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["nodal_vs_ngspice_max_rel"] < 1e-9
    assert 0 < summary["column_rel_error_mean"] < 0.2


def test_progress_without_a_terminal_leaves_one_line_per_task():
    """A batch job's log gets each task's outcome (steps done, last note), and no bar garbage."""
    log = io.StringIO()
    reporter = RichReporter(Console(file=log, force_terminal=False, width=200))
    reporter.start(5, "Training lenet5")
    reporter.advance(2)
    reporter.note("loss 0.120")
    reporter.advance(1)
    reporter.finish()  # stopped part-way, as when interrupted
    reporter.start(4, "Monte Carlo over 4 chips")
    reporter.advance(4)
    reporter.finish()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Training lenet5: 3/5 in ") and lines[0].endswith(" s (loss 0.120)")
    assert lines[1].startswith("Monte Carlo over 4 chips: 4/4 in ")
