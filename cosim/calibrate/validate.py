"""Circuit-level validation of a surrogate against SPICE on fresh arrays.

Three fresh campaigns are drawn from the model's own campaign with a new seed: one inside the
calibrated ranges and two pinned to their edges (every resistance at its low end, then at its
high end), each with the model's sizes plus ``extra_sizes`` (solved by the nodal solver above
the campaign's ``nodal_above``). Each array is solved by ngspice (or nodal), and three models are
scored against it: the ideal ``V·G``, the surrogate, and the exact linear circuit (nodal, linear
cells). Where ngspice ran, the nodal solver is cross-checked against it on linear cells.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cosim.calibrate.campaign import run_campaign
from cosim.calibrate.fit import error_stats, relative_errors, surrogate_on
from cosim.calibrate.store import RawSample, SurrogateModel, read_raw
from cosim.report import Reporter
from cosim.specs import CellIV, SolveOptions, Solver
from cosim.spice import solve_crossbar

MODELS = ("ideal", "surrogate", "exact_linear")
WIRE_BINS_OHM = (0.0, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ValidationResult:
    """Errors of each model against SPICE.

    Attributes:
        rows: one dict per (part, size, wire-resistance bin) with per-model error stats.
        overall: per model, error stats over everything.
        by_kind: per (I–V law, unselected-row policy), per-model error stats.
        cross_check_max_rel: max |nodal − ngspice| / full scale over linear arrays ngspice solved.
        scatter: (truth, surrogate) current pairs, amperes, for the scatter plot (subsampled).
        errors_by_model: flat error arrays per model, for the histograms.
        points: (size, r_wire, model, median error) per array, for the trend plots.
        wall_s: seconds.
    """

    rows: list[dict]
    overall: dict
    by_kind: list[dict]
    cross_check_max_rel: float
    scatter: np.ndarray
    errors_by_model: dict
    points: list[tuple[int, float, str, float]]
    wall_s: float


def validation_campaigns(model: SurrogateModel, samples: int, seed: int, extra_sizes: tuple[int, ...]) -> dict:
    """The three fresh campaigns (inside, low edge, high edge), each of ``samples`` arrays."""
    base = dataclasses.replace(model.campaign, seed=seed, samples=samples,
                               sizes=tuple(sorted(set(model.campaign.sizes) | set(extra_sizes))))
    low = {k: (getattr(base, k)[0],) * 2 for k in ("r_wire_ohm", "r_driver_ohm", "r_sense_ohm")}
    high = {k: (getattr(base, k)[1],) * 2 for k in ("r_wire_ohm", "r_driver_ohm", "r_sense_ohm")}
    return {"inside": base, "edge_low": dataclasses.replace(base, seed=seed + 1, **low),
            "edge_high": dataclasses.replace(base, seed=seed + 2, **high)}


def _wire_bin(r: float) -> str:
    for lo, hi in zip(WIRE_BINS_OHM, WIRE_BINS_OHM[1:]):
        if r < hi or hi == WIRE_BINS_OHM[-1]:
            return f"{lo:g}–{hi:g}"
    return f">{WIRE_BINS_OHM[-1]:g}"


def score(samples: list[RawSample], model: SurrogateModel, part: str, acc: dict, rng: np.random.Generator) -> float:
    """Add every sample's errors to ``acc``; returns the max nodal-vs-ngspice difference seen."""
    worst = 0.0
    for s in samples:
        linear = dataclasses.replace(s.spec, cell_iv=CellIV.LINEAR)
        exact = solve_crossbar(linear, s.conductance_siemens, s.voltages_volt, SolveOptions(solver=Solver.NODAL)).currents_amp
        preds = {"ideal": s.voltages_volt @ s.conductance_siemens, "surrogate": surrogate_on(s, model.params),
                 "exact_linear": exact}
        v_read = s.spec.v_read_volt
        key = (part, s.spec.rows, _wire_bin(s.spec.r_wire_row_ohm))
        for name, pred in preds.items():
            err = relative_errors(pred, s.currents_amp, s.conductance_siemens, v_read)
            acc["groups"][key][name].append(err)
            acc["all"][name].append(err)
            acc["kinds"][(s.spec.cell_iv.value, s.spec.unselected.value)][name].append(err)
            acc["points"].append((s.spec.rows, s.spec.r_wire_row_ohm, name, float(np.median(err))))
        if s.solver == Solver.NGSPICE.value and s.spec.cell_iv is CellIV.LINEAR:
            worst = max(worst, float(relative_errors(exact, s.currents_amp, s.conductance_siemens, v_read).max()))
        pick = rng.random(s.currents_amp.size) < 0.2
        acc["scatter"].append(np.stack([s.currents_amp.ravel()[pick], preds["surrogate"].ravel()[pick]], axis=1))
    return worst


def validate_model(model: SurrogateModel, out_dir: Path, samples: int = 12, seed: int = 7919,
                   extra_sizes: tuple[int, ...] = (128,), workers: int = 2, reporter: Reporter | None = None) -> ValidationResult:
    """Solve fresh arrays (resumable, under ``out_dir/campaigns``) and score the three models."""
    t0 = time.perf_counter()
    acc: dict = {"groups": defaultdict(lambda: defaultdict(list)), "kinds": defaultdict(lambda: defaultdict(list)),
                 "all": defaultdict(list), "points": [], "scatter": []}
    rng = np.random.default_rng(seed)
    worst = 0.0
    for part, campaign in validation_campaigns(model, samples, seed, extra_sizes).items():
        cdir = run_campaign(campaign, Path(out_dir) / "campaigns" / part, workers=workers, reporter=reporter)
        _, solved = read_raw(cdir.path / "raw.h5", campaign.campaign_id)
        worst = max(worst, score(solved, model, part, acc, rng))
    rows = []
    for (part, size, wire), per_model in sorted(acc["groups"].items()):
        rows.append({"part": part, "size": size, "r_wire_ohm": wire,
                     **{m: error_stats(np.concatenate(per_model[m])) for m in MODELS}})
    overall = {m: error_stats(np.concatenate(acc["all"][m])) for m in MODELS}
    by_kind = [{"cell_iv": iv, "unselected": un, **{m: error_stats(np.concatenate(per[m])) for m in MODELS}}
               for (iv, un), per in sorted(acc["kinds"].items())]
    return ValidationResult(rows, overall, by_kind, worst, np.concatenate(acc["scatter"]),
                            {m: np.concatenate(acc["all"][m]) for m in MODELS}, acc["points"],
                            time.perf_counter() - t0)


def markdown_table(result: ValidationResult) -> str:
    """The report's table: per part, size and wire bin, each model's median / p95 / p99 / max (%)."""
    head = "| part | size | r_wire (Ω) | n | " + " | ".join(
        f"{m} median / p95 / p99 / max (%)" for m in MODELS) + " |"
    lines = [head, "|" + "---|" * (4 + len(MODELS))]
    fmt = lambda s: " / ".join(f"{100 * s[k]:.3g}" for k in ("median", "p95", "p99", "max"))  # noqa: E731
    for r in result.rows:
        lines.append(f"| {r['part']} | {r['size']} | {r['r_wire_ohm']} | {r['surrogate']['n']} | "
                     + " | ".join(fmt(r[m]) for m in MODELS) + " |")
    lines.append(f"| **all** | | | {result.overall['surrogate']['n']} | "
                 + " | ".join(fmt(result.overall[m]) for m in MODELS) + " |")
    lines += ["", "By cell law and unselected rows (every size, every part):", "",
              "| cells | unselected rows | n | " + " | ".join(f"{m} median / p95 / p99 / max (%)" for m in MODELS) + " |",
              "|" + "---|" * (3 + len(MODELS))]
    for k in result.by_kind:
        lines.append(f"| {k['cell_iv']} | {k['unselected']} | {k['surrogate']['n']} | "
                     + " | ".join(fmt(k[m]) for m in MODELS) + " |")
    return "\n".join(lines) + "\n"

