"""``cosim spice …``: netlists and circuit-level solves of one crossbar."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from cosim.device import apply_faults, draw_fault_map
from cosim.fileio import load_array, write_json, write_npz, write_text
from cosim.specs import ArraySpec, CellIV, CellKind, DeviceSpec, FaultSpec, SolveOptions, Solver, Unselected
from cosim.spice import SolveResult, build_circuit, render_netlist, solve_crossbar, validate_inputs
from cosim.spice.golden import write_golden

from .common import RichReporter, console, fail, friendly_errors, new_app

app = new_app("Circuit-level crossbar solves: netlists, ngspice, the nodal reference.")

ConductancesOpt = Annotated[Path, typer.Option("--conductances", help="rows x cols .npy of conductances, siemens.")]
VoltagesOpt = Annotated[Path, typer.Option("--voltages", help="batch x rows (or rows) .npy of input voltages, volts.")]
RWireRowOpt = Annotated[float, typer.Option("--r-wire-row-ohm", help="Word-line resistance per cell pitch, ohm.")]
RWireColOpt = Annotated[float, typer.Option("--r-wire-col-ohm", help="Bit-line resistance per cell pitch, ohm.")]
RDriverOpt = Annotated[float, typer.Option("--r-driver-ohm", help="Row-driver output resistance, ohm (0 = ideal).")]
RSenseOpt = Annotated[float, typer.Option("--r-sense-ohm", help="Column sense resistance, ohm (0 = ideal virtual ground).")]
CellOpt = Annotated[CellKind, typer.Option("--cell", help="Crosspoint kind.")]
UnselectedOpt = Annotated[Unselected, typer.Option("--unselected", help="Rows whose input is 0: grounded or floating.")]
IVOpt = Annotated[CellIV, typer.Option("--iv", help="Device I-V law: linear, or G*sinh(aV)/a.")]
SinhAOpt = Annotated[float, typer.Option("--sinh-a-per-volt", help="Nonlinearity a of sinh cells, 1/V.")]
RAccessOpt = Annotated[float, typer.Option("--r-access-ohm", help="1T1R access-transistor on-resistance, ohm.")]
VReadOpt = Annotated[float, typer.Option("--v-read-volt", help="Largest allowed input voltage, volts.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the fault draw (used when a fault rate is > 0).")]
PTFOpt = Annotated[float, typer.Option("--p-tf", help="Transition-fault probability per device (lognormal R*e^theta).")]
PSA1Opt = Annotated[float, typer.Option("--p-sa1", help="Stuck-at-1 (LRS) probability per device.")]
PSA0Opt = Annotated[float, typer.Option("--p-sa0", help="Stuck-at-0 (HRS) probability per device.")]
TFSigmaOpt = Annotated[float, typer.Option("--tf-sigma", help="sigma of the transition fault's lognormal exponent.")]
RLrsOpt = Annotated[float, typer.Option("--r-lrs-ohm", help="LRS resistance (stuck-at-1 value), ohm.")]
RHrsOpt = Annotated[float, typer.Option("--r-hrs-ohm", help="HRS resistance (stuck-at-0 value), ohm.")]


def _load_case(
    conductances: Path, voltages: Path, r_wire_row_ohm: float, r_wire_col_ohm: float, r_driver_ohm: float,
    r_sense_ohm: float, cell: CellKind, unselected: Unselected, iv: CellIV, sinh_a_per_volt: float,
    r_access_ohm: float, v_read_volt: float, seed: int, p_tf: float, p_sa1: float, p_sa0: float,
    tf_sigma: float, r_lrs_ohm: float, r_hrs_ohm: float,
) -> tuple[ArraySpec, np.ndarray, np.ndarray, FaultSpec]:
    g = load_array(conductances, "conductance")
    v = load_array(voltages, "voltage")
    if g.ndim != 2 or g.size == 0:
        raise fail(f"conductances must be a non-empty rows x cols matrix; {conductances} has shape {g.shape}.")
    spec = ArraySpec(
        rows=int(g.shape[0]), cols=int(g.shape[1]), r_wire_row_ohm=r_wire_row_ohm, r_wire_col_ohm=r_wire_col_ohm,
        r_driver_ohm=r_driver_ohm, r_sense_ohm=r_sense_ohm, cell=cell, unselected=unselected, cell_iv=iv,
        sinh_a_per_volt=sinh_a_per_volt, r_access_ohm=r_access_ohm, v_read_volt=v_read_volt,
    )
    faults = FaultSpec(p_tf=p_tf, p_sa1=p_sa1, p_sa0=p_sa0, tf_sigma=tf_sigma)
    g, v = validate_inputs(spec, g, v)
    if faults.total_rate > 0:
        device = DeviceSpec(r_lrs_ohm=r_lrs_ohm, r_hrs_ohm=r_hrs_ohm)
        g = apply_faults(g, draw_fault_map(spec.shape, faults, np.random.default_rng(seed)), device)
    return spec, g, v, faults


def summary_dict(spec: ArraySpec, faults: FaultSpec, seed: int, result: SolveResult) -> dict:
    """The JSON summary of a solve (plain types only)."""
    col_err = result.column_rel_error
    return {
        "array": {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(spec).items()},
        "faults": asdict(faults),
        "seed": seed,
        "solver": result.solver.value,
        "ngspice_version": result.ngspice_version,
        "netlist_sha256": list(result.netlist_sha256),
        "batch": int(result.currents_amp.shape[0]),
        "wall_s": result.wall_s,
        "column_rel_error": col_err.tolist(),
        "column_rel_error_mean": float(col_err.mean()),
        "column_rel_error_max": float(col_err.max()),
        "mean_current_amp": result.currents_amp.mean(axis=0).tolist(),
        "mean_ideal_amp": result.ideal_amp.mean(axis=0).tolist(),
    }


def print_result_table(result: SolveResult, title: str, max_rows: int = 16) -> None:
    """Ideal vs solved column currents (batch means) and their relative error."""
    table = Table(title=title)
    for name in ("column", "ideal V·G (µA)", f"{result.solver.value} (µA)", "rel. error (%)"):
        table.add_column(name, justify="right")
    ideal = result.ideal_amp.mean(axis=0) * 1e6
    solved = result.currents_amp.mean(axis=0) * 1e6
    err = result.column_rel_error * 100
    cols = len(ideal)
    shown = range(cols) if cols <= max_rows else [*range(max_rows // 2), *range(cols - max_rows // 2, cols)]
    previous = -1
    for j in shown:
        if j != previous + 1:
            table.add_row("…", "…", "…", "…")
        table.add_row(str(j), f"{ideal[j]:.4f}", f"{solved[j]:.4f}", f"{err[j]:.3f}")
        previous = j
    console.print(table)
    console.print(
        f"mean |error| {err.mean():.3f} %, max {err.max():.3f} % over {cols} columns, "
        f"{result.currents_amp.shape[0]} vector(s); {result.wall_s:.2f} s"
        + (f" ({result.ngspice_version})" if result.ngspice_version else "")
    )


@app.command()
@friendly_errors
def solve(
    conductances: ConductancesOpt,
    voltages: VoltagesOpt,
    out: Annotated[Path, typer.Option("--out", help="Result .npz (currents, ideal, rel_error).")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write a JSON summary here.")] = None,
    solver: Annotated[Solver, typer.Option("--solver", help="ngspice (ground truth) or nodal (fast, linear).")] = Solver.NGSPICE,
    r_wire_row_ohm: RWireRowOpt = 2.5,
    r_wire_col_ohm: RWireColOpt = 2.5,
    r_driver_ohm: RDriverOpt = 2.5,
    r_sense_ohm: RSenseOpt = 2.5,
    cell: CellOpt = CellKind.ONE_R,
    unselected: UnselectedOpt = Unselected.GROUNDED,
    iv: IVOpt = CellIV.LINEAR,
    sinh_a_per_volt: SinhAOpt = 3.0,
    r_access_ohm: RAccessOpt = 0.0,
    v_read_volt: VReadOpt = 0.2,
    seed: SeedOpt = 0,
    p_tf: PTFOpt = 0.0,
    p_sa1: PSA1Opt = 0.0,
    p_sa0: PSA0Opt = 0.0,
    tf_sigma: TFSigmaOpt = 0.2,
    r_lrs_ohm: RLrsOpt = 10e3,
    r_hrs_ohm: RHrsOpt = 1e6,
    workers: Annotated[int, typer.Option("--workers", min=1, help="ngspice worker processes.")] = 2,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Time limit per ngspice job, seconds.")] = 600.0,
) -> None:
    """Solve one crossbar for a batch of input vectors; write currents, ideal V·G and errors."""
    spec, g, v, faults = _load_case(
        conductances, voltages, r_wire_row_ohm, r_wire_col_ohm, r_driver_ohm, r_sense_ohm, cell, unselected, iv,
        sinh_a_per_volt, r_access_ohm, v_read_volt, seed, p_tf, p_sa1, p_sa0, tf_sigma, r_lrs_ohm, r_hrs_ohm,
    )
    options = SolveOptions(solver=solver, workers=workers, timeout_s=timeout_s)
    result = solve_crossbar(spec, g, v, options, RichReporter())
    write_npz(
        out, currents=result.currents_amp, ideal=result.ideal_amp, rel_error=result.rel_error,
        column_rel_error=result.column_rel_error, conductances=g, voltages=v,
    )
    if json_path is not None:
        write_json(json_path, summary_dict(spec, faults, seed, result))
    print_result_table(result, f"{spec.rows}x{spec.cols} {spec.cell.value} crossbar, column currents (batch mean)")


@app.command()
@friendly_errors
def netlist(
    conductances: ConductancesOpt,
    voltages: VoltagesOpt,
    out: Annotated[Path, typer.Option("--out", help="Netlist file to write (.cir).")],
    r_wire_row_ohm: RWireRowOpt = 2.5,
    r_wire_col_ohm: RWireColOpt = 2.5,
    r_driver_ohm: RDriverOpt = 2.5,
    r_sense_ohm: RSenseOpt = 2.5,
    cell: CellOpt = CellKind.ONE_R,
    unselected: UnselectedOpt = Unselected.GROUNDED,
    iv: IVOpt = CellIV.LINEAR,
    sinh_a_per_volt: SinhAOpt = 3.0,
    r_access_ohm: RAccessOpt = 0.0,
    v_read_volt: VReadOpt = 0.2,
    seed: SeedOpt = 0,
    p_tf: PTFOpt = 0.0,
    p_sa1: PSA1Opt = 0.0,
    p_sa0: PSA0Opt = 0.0,
    tf_sigma: TFSigmaOpt = 0.2,
    r_lrs_ohm: RLrsOpt = 10e3,
    r_hrs_ohm: RHrsOpt = 1e6,
) -> None:
    """Write the SPICE netlist of one crossbar and its input vectors (runs as `ngspice -b`)."""
    spec, g, v, _ = _load_case(
        conductances, voltages, r_wire_row_ohm, r_wire_col_ohm, r_driver_ohm, r_sense_ohm, cell, unselected, iv,
        sinh_a_per_volt, r_access_ohm, v_read_volt, seed, p_tf, p_sa1, p_sa0, tf_sigma, r_lrs_ohm, r_hrs_ohm,
    )
    selected = v[0] != 0
    if spec.topology_depends_on_input and np.any((v != 0) != selected):
        raise fail(
            "these input vectors select different rows; with floating rows or 1T1R cells each selection is its own "
            "circuit, so give vectors that share one pattern of zero inputs."
        )
    net = render_netlist(build_circuit(spec, g, selected), v)
    write_text(out, net.text)
    console.print(f"wrote {out} ({len(net.text.splitlines())} lines, sha256 {net.sha256[:16]}…)")


@app.command()
@friendly_errors
def golden(
    out: Annotated[Path, typer.Option("--out", help="Folder for the golden netlists.")] = Path("netlists"),
) -> None:
    """Regenerate the golden example netlists checked by the test suite."""
    for path in write_golden(out):
        console.print(f"wrote {path}")
