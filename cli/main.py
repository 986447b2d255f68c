"""The ``cosim`` application: ``info``, ``demo``, ``spice``, ``data``, ``train`` and ``evaluate``."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

import cosim
from cosim.device import apply_faults, draw_fault_map, random_conductances
from cosim.errors import CosimError
from cosim.fileio import write_json
from cosim.specs import ArraySpec, DeviceSpec, FaultSpec, SolveOptions, Solver
from cosim.spice import ngspice_version, solve_crossbar
from cosim.spice.ngspice import library_path

from . import calibrate, runs, spice
from .common import RichReporter, console, friendly_errors, new_app, setup_logging
from .spice import print_result_table, summary_dict

app = new_app("cosim: co-simulation of neural networks on RRAM crossbars (ngspice-validated).")
app.add_typer(spice.app, name="spice")
app.add_typer(runs.data_app, name="data")
app.command()(runs.train)
app.command()(runs.evaluate)
app.command()(calibrate.calibrate)
app.command()(calibrate.validate)
app.command()(runs.reproduce)


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    """cosim command line."""
    setup_logging(verbose)


@app.command()
def info() -> None:
    """Print versions, and whether ngspice's shared library loads."""
    import h5py
    import scipy
    import torch

    table = Table(title="cosim environment", show_header=False)
    table.add_row("cosim", cosim.__version__)
    table.add_row("python", platform.python_version())
    for name, mod in (("numpy", np), ("scipy", scipy), ("torch", torch), ("h5py", h5py)):
        table.add_row(name, mod.__version__)
    table.add_row("torch device", "cuda" if torch.cuda.is_available() else "cpu")
    try:
        table.add_row("ngspice", f"{ngspice_version()} (shared library {library_path()})")
        found = True
    except CosimError as exc:
        table.add_row("ngspice", f"[red]not found[/]: {exc}")
        found = False
    console.print(table)
    if not found:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def demo(
    size: Annotated[int, typer.Option("--size", min=1, max=256, help="Array is size x size.")] = 32,
    vectors: Annotated[int, typer.Option("--vectors", min=1, help="Random input vectors.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of conductances, faults and inputs.")] = 0,
    r_wire_ohm: Annotated[float, typer.Option("--r-wire-ohm", help="Row and column wire resistance, ohm.")] = 2.5,
    out: Annotated[Path, typer.Option("--out", help="Folder for summary.json.")] = Path("results/demo"),
) -> None:
    """The main job: a faulty crossbar with wire resistance, ideal V·G against ngspice."""
    rng = np.random.default_rng(seed)
    device, faults = DeviceSpec(), FaultSpec()
    spec = ArraySpec(size, size, r_wire_row_ohm=r_wire_ohm, r_wire_col_ohm=r_wire_ohm,
                     r_driver_ohm=r_wire_ohm, r_sense_ohm=r_wire_ohm)
    fault_map = draw_fault_map(spec.shape, faults, rng)
    g = apply_faults(random_conductances(spec.shape, device, rng), fault_map, device)
    v = rng.uniform(0.0, spec.v_read_volt, (vectors, size))
    console.print(
        f"{size}x{size} 1R array, {r_wire_ohm:g} ohm wires, {fault_map.faulty.mean() * 100:.1f} % faulty devices "
        f"(TF {faults.p_tf:.2%}, SA1 {faults.p_sa1:.2%}, SA0 {faults.p_sa0:.2%}), {vectors} input vector(s), seed {seed}"
    )
    result = solve_crossbar(spec, g, v, SolveOptions(solver=Solver.NGSPICE), RichReporter())
    nodal = solve_crossbar(spec, g, v, SolveOptions(solver=Solver.NODAL))
    print_result_table(result, "ideal V·G against ngspice (column currents, batch mean)")
    agree = float(np.max(np.abs(nodal.currents_amp - result.currents_amp)) / np.max(np.abs(result.currents_amp)))
    console.print(f"nodal solver vs ngspice: max relative difference {agree:.2e} ({nodal.wall_s:.3f} s)")
    summary = summary_dict(spec, faults, seed, result)
    summary["nodal_vs_ngspice_max_rel"] = agree
    write_json(out / "summary.json", summary)
    console.print(f"wrote {out / 'summary.json'}")
