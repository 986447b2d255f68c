"""``cosim calibrate`` and ``cosim validate``: thin wrappers over :mod:`cosim.calibrate`."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

import cosim
from cosim.calibrate.campaign import CampaignSpec, run_campaign
from cosim.calibrate.fit import fit_surrogate
from cosim.calibrate.store import netlist_hashes, read_model, read_raw, write_model
from cosim.calibrate.validate import markdown_table, validate_model
from cosim.errors import SpecError
from cosim.runconfig import read_toml
from cosim.fileio import write_json, write_text
from cosim.plots import plot_validation

from .common import RichReporter, console, friendly_errors


def _csv(text: str | None, cast=str) -> tuple | None:
    if text is None:
        return None
    try:
        return tuple(cast(x.strip()) for x in text.split(",") if x.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list.") from None


@friendly_errors
def calibrate(
    name: Annotated[str, typer.Option("--name", help="Model name: writes device_models/<name>.h5.")] = "default",
    config: Annotated[Path | None, typer.Option("--config", help="TOML with a [campaign] table (CampaignSpec keys).")] = None,
    campaign_dir: Annotated[Path | None, typer.Option("--campaign-dir", help="Where solves are kept (default results/campaigns/<name>); re-run to resume.")] = None,
    models_dir: Annotated[Path, typer.Option("--models-dir", help="Folder of the model file.")] = Path("device_models"),
    samples: Annotated[int | None, typer.Option("--samples", min=1, help="Arrays in the campaign.")] = None,
    vectors: Annotated[int | None, typer.Option("--vectors", min=1, help="Input vectors per array.")] = None,
    sizes: Annotated[str | None, typer.Option("--sizes", help="Array sizes, e.g. 16,32,64.")] = None,
    cells: Annotated[str | None, typer.Option("--cells", help="Cell kinds: 1R,1T1R.")] = None,
    ivs: Annotated[str | None, typer.Option("--ivs", help="I–V laws: linear,sinh.")] = None,
    unselected: Annotated[str | None, typer.Option("--unselected", help="grounded,floating.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Campaign seed.")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local ngspice worker processes.")] = 2,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help="Dask scheduler address (default: local processes).")] = None,
    target_p99: Annotated[float, typer.Option("--target-p99", min=0, help="Fit target: p99 error, fraction of full scale.")] = 0.005,
) -> None:
    """Run (or resume) a SPICE campaign, fit the surrogate, write device_models/<name>.h5."""
    if not name.replace("-", "").replace("_", "").isalnum():
        raise typer.BadParameter("use letters, digits, - and _ only.", param_hint="--name")
    values = read_toml(config).get("campaign", {}) if config else {}
    for key, value in (("samples", samples), ("vectors", vectors), ("sizes", _csv(sizes, int)), ("cells", _csv(cells)),
                       ("ivs", _csv(ivs)), ("unselected", _csv(unselected)), ("seed", seed)):
        if value is not None:
            values[key] = value
    campaign = CampaignSpec.from_json(values)
    cdir = run_campaign(campaign, campaign_dir or Path("results/campaigns") / name, workers, scheduler=scheduler,
                        reporter=RichReporter())
    _, solved = read_raw(cdir.path / "raw.h5", campaign.campaign_id)
    model = fit_surrogate(campaign, solved, target_p99)
    hashes = netlist_hashes(cdir.path / "raw.h5")
    model.meta["command"] = (f"cosim calibrate --name {shlex.quote(name)} --config {shlex.quote(str(config))}"
                             if config else _command(name, campaign))
    model.meta["cosim_version"] = cosim.__version__
    dest = models_dir / f"{name}.h5"
    write_model(dest, model, hashes)
    e = model.fit_error
    console.print(f"{dest}: {model.params.iterations} sweeps, scales row {model.params.row_scale:.5f} / col "
                  f"{model.params.col_scale:.5f}; held-out error (fraction of full scale) median {e['median']:.2e}, "
                  f"p99 {e['p99']:.2e}, max {e['max']:.2e} over {e['n']} column currents")


def _command(name: str, c: CampaignSpec) -> str:
    j = c.to_json()
    return (f"cosim calibrate --name {name} --samples {c.samples} --vectors {c.vectors} "
            f"--sizes {','.join(map(str, c.sizes))} --cells {','.join(j['cells'])} --ivs {','.join(j['ivs'])} "
            f"--unselected {','.join(j['unselected'])} --seed {c.seed}")




@friendly_errors
def validate(
    model: Annotated[Path, typer.Option("--model", help="A surrogate from cosim calibrate.")],
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default results/validation/<model name>).")] = None,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Fresh arrays per part (inside, low edge, high edge).")] = 12,
    extra_sizes: Annotated[str, typer.Option("--extra-sizes", help="Sizes beyond the campaign's, solved by the nodal solver.")] = "128",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh arrays.")] = 7919,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Local ngspice worker processes.")] = 2,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse sizes outside the calibrated range instead of warning.")] = False,
) -> None:
    """Score the ideal model, the surrogate and the exact linear circuit against SPICE on fresh arrays."""
    surrogate = read_model(model)
    extra = _csv(extra_sizes, int) or ()
    outside = [s for s in extra if s > max(surrogate.campaign.sizes)]
    if outside:
        message = (f"{model} was calibrated on sizes {list(surrogate.campaign.sizes)}; sizes {outside} are outside "
                   "its calibrated range.")
        if strict:
            raise SpecError(message + " (refused under --strict)")
        console.print(f"[yellow]warning:[/] {message}")
    out = out or Path("results/validation") / model.stem
    result = validate_model(surrogate, out, samples, seed, tuple(extra), workers, RichReporter())
    table = markdown_table(result)
    header = (f"# Validation of {model}\n\nErrors relative to each column's full-scale current "
              f"(v_read·Σ_i G_ij), per (vector, column), in %. nodal vs ngspice on linear arrays: max "
              f"{result.cross_check_max_rel:.2e} of full scale. {result.wall_s:.0f} s.\n\nCommand: `cosim validate "
              f"--model {model} --out {out} --samples {samples} --extra-sizes {extra_sizes} --seed {seed}`\n\n")
    write_text(out / "report.md", header + table)
    write_json(out / "validation.json", {"model": str(model), "rows": result.rows, "overall": result.overall,
                                          "by_kind": result.by_kind,
                                          "nodal_vs_ngspice_max_rel": result.cross_check_max_rel, "wall_s": result.wall_s})
    plot_validation(result.errors_by_model, result.points, result.scatter, out)
    console.print(table)
    console.print(f"wrote {out}/report.md, validation.json and 4 PNG plots")
