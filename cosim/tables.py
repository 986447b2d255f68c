"""The markdown tables and PNG plots of ``cosim reproduce``'s experiments.

Every table function takes the experiment's finished runs (:class:`cosim.plans.RunPlan`,
read for their ``keys``), their ``metrics.json`` contents keyed by :func:`run_key`, and the
experiment folder (for plots), and returns markdown. Runs keyed ``array = "irdrop"`` are IR-drop
evaluations, ``array = "trimmed"`` evaluations on the ideal array with its readout trimmed (a
control), and ``array = "ideal"`` the plain ideal-array twins of either; a table shows the
numbers scored apart beside their twins with the per-chip (paired) difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cosim.eval import MonteCarloStats, summarise
from cosim.plots import plot_bars, plot_sweep

if TYPE_CHECKING:
    from cosim.plans import RunPlan

APART = ("irdrop", "trimmed")
"""The ``keys["array"]`` of runs scored apart from the plain ideal array (:func:`cosim.plans.apart_label`)."""


def paired_note(runs: list["RunPlan"]) -> str:
    """The note under a table of Δ between the runs scored apart (named by :func:`ir_name`) and
    the plain ideal array."""
    return (f"Δ: {ir_name(runs)} − ideal array, per chip (the same chip, i.e. the same faults and variation, "
            "on both), mean ± 95 % CI (Student t over the chips both evaluated).")


def apart_heading(runs: list["RunPlan"]) -> str:
    """Where the runs scored apart were scored, for a table's heading: the calibrated IR-drop array
    or the trimmed ideal array."""
    if _on_circuit(runs):
        return "the calibrated IR-drop array (64×64 tiles, 2.5 Ω wires)"
    return f"the {ir_name(runs)}"


def run_key(r: "RunPlan") -> str:
    """A run's name in tables and summary.json (an ideal-array twin with its array marked)."""
    return f"{r.name}@ideal" if r.compare_only else r.name


def paired(a: dict, b: dict) -> MonteCarloStats | None:
    """Per-chip differences ``b − a`` of two Monte Carlo results (``hardware`` dicts) over the
    chips both evaluated (chip k is the same draw in both); None below two chips."""
    x, y = np.asarray(a["accuracies"], dtype=float), np.asarray(b["accuracies"], dtype=float)
    n = min(x.size, y.size)
    if n < 2:
        return None
    return summarise(y[:n] - x[:n], 1.0, 1.0, math.nan, a["n_images"])


def _mean_ci(h: dict) -> str:
    return f"{100 * h['mean']:.2f} ± {100 * h['ci95']:.2f}"


def _cell(h: dict) -> str:
    return f"{_mean_ci(h)} ({100 * h['recovery']:.1f} %)"


def _delta(d: MonteCarloStats | None) -> str:
    return "—" if d is None else f"{100 * d.mean:+.2f} ± {100 * d.ci95:.2f}"


def ideal_array_side(twin: dict, run: dict) -> tuple[dict, list[bool]]:
    """The ideal-array side of an on-chip IR-drop run's per-chip Δ: per chip, the run's own student
    scored on the ideal array (``run["ideal_array_accuracies"]``) or, where it was not, the ideal
    twin's student of that chip (``twin["hardware"]``) — the same student when the run loaded it
    from the twin (``run["students_loaded"]``), else one retrained apart. Returns a
    ``hardware``-like dict (``accuracies``, ``n_images``) over the leading chips that have a score,
    and per chip whether it pairs with a student retrained apart."""
    theirs = twin["hardware"]["accuracies"]
    own = run.get("ideal_array_accuracies") or []
    loaded = run.get("students_loaded") or []
    x, other = [], []
    for k in range(len(run["hardware"]["accuracies"])):
        if k < len(own) and own[k] is not None:
            x.append(own[k])
            other.append(False)
        elif k < len(theirs):
            x.append(theirs[k])
            other.append(not (k < len(loaded) and loaded[k]))
        else:
            break
    return {"accuracies": x, "n_images": run["hardware"]["n_images"]}, other


@dataclass
class _Deltas:
    """The on-chip students' Δ table of an IR-drop experiment: each table row's IR-drop students
    against the same students on the ideal array, paired per chip.

    Attributes:
        lines: the header lines, then one row per table row that pairs.
        apart: whether some row pairs chips with a student retrained apart (footnoted).
    """

    lines: list[str]
    apart: bool = False

    def add(self, prefix: str, twins: dict, key: tuple, cell: dict, methods: tuple[str, ...]) -> None:
        """The row of one table row: ``prefix`` (its leading cells), the chips paired and, per
        method, the IR-drop run (``cell[method]``) − the same chip on the ideal array
        (:func:`ideal_array_side`, with its twin ``twins[key + (method,)]``); the chips-paired
        cell counts the chips whose Δ pairs with a student retrained apart. No row when no method
        pairs."""
        sides = {m: ideal_array_side(twins[key + (m,)], cell[m]) for m in cell if key + (m,) in twins}
        d = {m: paired(ideal, cell[m]["hardware"]) for m, (ideal, _) in sides.items()}
        if not any(d.values()):
            return
        n = min(x.n_chips for x in d.values() if x)
        other = max(sum(flags[:n]) for _, flags in sides.values())
        self.apart |= other > 0
        chips = f"{n}" + (f" ({other} other student)" if other else "")
        self.lines.append(f"| {prefix} | {chips} | " + " | ".join(_delta(d.get(m)) for m in methods) + " |")

    def section(self, runs: list["RunPlan"]) -> str:
        """The table under its heading and notes (naming the hardware of ``runs``), or "" when it
        has no rows."""
        if len(self.lines) <= 2:
            return ""
        note = ""
        if self.apart:
            note = (" \"(k other student)\": k of the chips were retrained in the IR-drop run before it scored its "
                    "own students on the ideal array, and their student files are gone; those pair with the ideal "
                    "run's student of the same chip, retrained apart from it (see results/README.md for how far "
                    "apart).")
        return ("\nThe same students on the ideal array, paired per chip:\n\n"
                + "\n".join(self.lines) + "\n\n" + paired_note(runs) + note + "\n")


def ir_name(runs: list["RunPlan"]) -> str:
    """How plots name the hardware ``runs`` are scored on apart from the plain ideal array: "IR
    drop", with the readout trim its runs set (``hardware.readout_trim``, and ``trim_reference``
    when it is the known fault map) in brackets, e.g. "IR drop (layer trim)", "IR drop (layer
    trim, known faults)"; or, for trimmed runs none of which is on the circuit, "ideal array
    (layer trim)"."""
    trimmed = [hw for r in runs if "readout_trim" in (hw := r.sections.get("hardware", {}))]
    trims = sorted({hw["readout_trim"] + " trim" + (", known faults" if hw.get("trim_reference") == "known_faults" else "")
                    for hw in trimmed})
    array = "ideal array" if trimmed and not _on_circuit(runs) else "IR drop"
    return array + (f" ({'; '.join(trims)})" if trims else "")


def _on_circuit(runs: list["RunPlan"]) -> bool:
    """Whether any of ``runs`` is scored on the IR-drop array (paper 000's and partition-ovf's
    on-chip runs, whose table rows are the IR-drop runs themselves)."""
    return any(r.sections.get("hardware", {}).get("array_model", "ideal") != "ideal" for r in runs)


def _apart(runs: list["RunPlan"]) -> bool:
    """Whether any of ``runs`` is scored apart from the plain ideal array: on the circuit, or with
    a readout trim (on-chip tables, whose rows are those runs themselves)."""
    return any("readout_trim" in r.sections.get("hardware", {}) for r in runs) or _on_circuit(runs)


def _is(r: "RunPlan", array: str | None) -> bool:
    return r.keys.get("array") == array and "role" not in r.keys


def _is_apart(r: "RunPlan") -> bool:
    return r.keys.get("array") in APART and "role" not in r.keys


_METHODS000 = {"masked": "masked FT", "kd": "KD", "partition": "partition"}


def _recovery(run: dict | None) -> tuple[float, float]:
    """(recovery %, its 95 % CI half-width) of an on-chip run (recovery is over the teacher's
    accuracy); NaNs for a method the row lacks."""
    if run is None:
        return math.nan, math.nan
    return 100 * run["hardware"]["recovery"], 100 * run["hardware"]["ci95"] / run["teacher_accuracy"]


def table_paper000(runs: list["RunPlan"], metrics: dict, out: Path) -> str:
    """Paper 000 Tables 2/3: per model and preset, the unretrained chips and the three methods."""
    lines = ["| model | preset | teacher acc % | chips | unretrained | masked FT | KD | partition |",
             "|---|---|---|---|---|---|---|---|"]
    deltas = _Deltas(["| model | preset | chips paired | masked FT Δ | KD Δ | partition Δ |", "|---|---|---|---|---|---|"])
    main = [r for r in runs if _is(r, None)]
    twins = {(r.keys["model"], r.keys["mapping"], r.keys["method"]): metrics[run_key(r)] for r in runs if _is(r, "ideal")}
    shown: dict = {}  # mapping → model → the table row's runs by method
    for model in dict.fromkeys(r.keys["model"] for r in main):
        for mapping in ("one_cell", "differential_slices"):
            row = {r.keys["method"]: metrics[run_key(r)] for r in main if r.keys.get("mapping") == mapping
                   and r.keys["model"] == model}
            if not row:
                continue
            shown.setdefault(mapping, {})[model] = row
            any_run = next(iter(row.values()))
            lines.append(f"| {model} | {mapping} | {100 * any_run['teacher_accuracy']:.2f} | "
                         f"{any_run['hardware']['n_chips']} | "
                         f"{_cell(any_run['unretrained'])} | "
                         + " | ".join(_cell(row[m]["hardware"]) if m in row else "—" for m in _METHODS000)
                         + " |")
            deltas.add(f"{model} | {mapping}", twins, (model, mapping), row, tuple(_METHODS000))
    ir = _apart(main)
    for mapping, by_model in shown.items():
        series = {label: tuple(zip(*(_recovery(row.get(m)) for row in by_model.values())))
                  for m, label in _METHODS000.items()}
        plot_bars(list(by_model), series, out / f"recovery-{mapping}.png", "recovery P over chips (%)",
                  f"{mapping}, {ir_name(main) if ir else 'ideal array'}: retrained students", target=99.0)
    return ("\n".join(lines) + "\n\nCells: mean accuracy % over chips ± 95 % CI (recovery P = mean / teacher "
            "accuracy).\n" + deltas.section(main))


def table_paper002(runs: list["RunPlan"], metrics: dict, out: Path) -> str:
    """Paper 002 Fig. 3: accuracy and EKL against σ_d for vanilla, GNI and OVF (and, with IR
    drop, the same models on the IR-drop array beside them)."""
    methods = ("vanilla", "gni", "ovf")
    lines = ["| model | σ_d | vanilla | GNI | OVF (β) | OVF − GNI | OVF − vanilla | EKL vanilla / GNI / OVF |",
             "|---|---|---|---|---|---|---|---|"]
    ir_lines = ["| model | σ_d | vanilla | GNI | OVF | Δ vanilla | Δ GNI | Δ OVF | EKL vanilla / GNI / OVF |",
                "|---|---|---|---|---|---|---|---|---|"]
    ideal = [r for r in runs if _is(r, None)]
    ir = {(r.keys["model"], r.keys["sigma"], r.keys["method"]): metrics[run_key(r)] for r in runs if _is_apart(r)}
    for model in dict.fromkeys(r.keys["model"] for r in ideal):
        sig = sorted({r.keys["sigma"] for r in ideal if r.keys["model"] == model})
        series: dict = {}
        ekl: dict = {}
        for s in sig:
            cell = {r.keys["method"]: metrics[run_key(r)] for r in ideal if r.keys["model"] == model and r.keys["sigma"] == s}
            if set(cell) != set(methods):  # a σ whose runs are not all finished yet (a --sigma call stopped)
                continue
            ir_cell = {m: ir[(model, s, m)] for m in methods if (model, s, m) in ir}
            for label, source in (("", cell), (f", {ir_name(runs)}", ir_cell)):
                for m, d in source.items():
                    series.setdefault(m + label, ([], [], []))
                    ekl.setdefault(m + label, ([], [], []))
                    for into, value, err in ((series, 100 * d["hardware"]["mean"], 100 * d["hardware"]["ci95"]),
                                             (ekl, d["hardware"]["ekl"], 0.0)):
                        into[m + label][0].append(s)
                        into[m + label][1].append(value)
                        into[m + label][2].append(err)
            ovf = cell["ovf"]  # no β at σ_d = 0 (the vanilla model); "fixed" when not searched
            beta = f"{ovf['beta']}{'' if 'beta_search' in ovf else ', fixed'}" if "beta" in ovf else "—"
            lines.append(f"| {model} | {s:g} | " + " | ".join(_mean_ci(cell[m]["hardware"]) for m in ("vanilla", "gni"))
                         + f" | {_mean_ci(cell['ovf']['hardware'])} ({beta})"
                         + "".join(f" | {_delta(paired(cell[m]['hardware'], cell['ovf']['hardware']))}"
                                   for m in ("gni", "vanilla"))
                         + " | " + " / ".join(f"{cell[m]['hardware']['ekl']:.3f}" for m in methods) + " |")
            if set(ir_cell) == set(methods):
                ir_lines.append(f"| {model} | {s:g} | " + " | ".join(_mean_ci(ir_cell[m]["hardware"]) for m in methods)
                                + " | " + " | ".join(_delta(paired(cell[m]["hardware"], ir_cell[m]["hardware"]))
                                                     for m in methods)
                                + " | " + " / ".join(f"{ir_cell[m]['hardware']['ekl']:.3f}" for m in methods) + " |")
        _plot(series, out / f"{model}-accuracy.png", "accuracy over chips (%)", f"{model}: accuracy vs σ_d")
        _plot(ekl, out / f"{model}-ekl.png", "EKL of correct predictions (nats)", f"{model}: EKL vs σ_d")
    text = "\n".join(lines) + ("\n\nCells: mean accuracy % over chips ± 95 % CI; EKL in nats (lower is better). "
                               "OVF (β): the β its β search picked, or set by `--beta` (\"fixed\"). "
                               "OVF − GNI, OVF − vanilla: per chip (chip k draws the same programming noise "
                               "for every model), mean ± 95 % CI (Student t).\n")
    if len(ir_lines) > 2:
        text += (f"\nThe same models on {apart_heading(runs)}:\n\n" + "\n".join(ir_lines) + "\n\n"
                 + paired_note(runs) + "\n")
    return text


_FORMATS = {"static_fixed_point": "static FP", "dynamic_fixed_point": "DFP"}


def _plot(series: dict, path: Path, ylabel: str, title: str, xlabel: str = "σ_d") -> None:
    """``series[label] = (x, y, ci)``; each series keeps its own x (a σ missing from one is skipped)."""
    by_x: dict = {}
    for label, (x, y, ci) in series.items():
        by_x.setdefault(tuple(x), {})[label] = (y, ci)
    xs = max(by_x, key=len)  # series over fewer σ would shift: plot those that cover the full sweep
    plot_sweep(list(xs), by_x[xs], path, xlabel, ylabel, title)


def table_paper001(runs: list["RunPlan"], metrics: dict, out: Path) -> str:
    """Paper 001: accuracy of vanilla/DVA models under static fixed point and DFP, against the
    on/off ratio and σ (and, with IR drop, ideal → IR drop per cell); one plot of accuracy
    against σ per model and on/off ratio."""
    combos = [("vanilla", "static_fixed_point"), ("vanilla", "dynamic_fixed_point"), ("dva", "static_fixed_point"),
              ("dva", "dynamic_fixed_point")]
    lines = ["| model | on/off | σ | vanilla, static FP | vanilla, DFP | DVA, static FP | DVA, DFP |", "|---|---|---|---|---|---|---|"]
    ir_lines = list(lines)
    ideal = [r for r in runs if _is(r, None)]
    ir = {(r.keys["model"], r.keys["ratio"], r.keys["sigma"], r.keys["method"], r.keys["format"]):
          metrics[run_key(r)]["hardware"] for r in runs if _is_apart(r)}
    series: dict = {}
    for k in dict.fromkeys((r.keys["model"], r.keys["ratio"], r.keys["sigma"]) for r in ideal):
        cell = {(q.keys["method"], q.keys["format"]): metrics[run_key(q)]["hardware"] for q in ideal
                if (q.keys["model"], q.keys["ratio"], q.keys["sigma"]) == k}
        if set(cell) != set(combos):  # a cell whose runs are not all finished yet (a --sigma call stopped)
            continue
        for label, source in (("", cell), (f", {ir_name(runs)}", {c: ir[k + c] for c in combos if k + c in ir})):
            for (method, fmt), h in source.items():
                x, y, ci = series.setdefault(k[:2], {}).setdefault(f"{method}, {_FORMATS[fmt]}{label}", ([], [], []))
                x.append(k[2])
                y.append(100 * h["mean"])
                ci.append(100 * h["ci95"])
        lines.append(f"| {k[0]} | {k[1]:g} | {k[2]:g} | " + " | ".join(_mean_ci(cell[c]) for c in combos) + " |")
        if all(k + c in ir for c in combos):
            ir_lines.append(f"| {k[0]} | {k[1]:g} | {k[2]:g} | " + " | ".join(
                f"{_mean_ci(ir[k + c])} (Δ {_delta(paired(cell[c], ir[k + c]))})" for c in combos) + " |")
    for (model, ratio), by_label in series.items():
        _plot(by_label, out / f"{model}-onoff{ratio:g}-accuracy.png", "accuracy over chips (%)",
              f"{model}, on/off {ratio:g}: accuracy vs σ", "σ (device variation)")
    note = ("Static FP: one Q2.6 format (full scale 4) for every layer; DFP: per-layer power-of-two full scale.")
    text = "\n".join(lines) + "\n\nCells: mean accuracy % over chips ± 95 % CI. " + note + "\n"
    if len(ir_lines) > 2:
        ratios = ("; on/off ratios inside the surrogate's calibrated range 10..1000 only" if _on_circuit(runs)
                  else "")
        text += (f"\nThe same models on {apart_heading(runs)}{ratios}:\n\n" + "\n".join(ir_lines) + "\n\n"
                 + paired_note(runs) + "\n")
    return text


def table_partition_ovf(runs: list["RunPlan"], metrics: dict, out: Path) -> str:
    """Partition retraining with and without OVF-style training on faulty chips written with
    variation σ_d; the per-chip paired difference (and, with IR drop, each student against its
    ideal-array twin)."""
    lines = ["| model | σ_d | chips | unretrained | partition | partition + OVF | OVF − partition, paired |",
             "|---|---|---|---|---|---|---|"]
    deltas = _Deltas(["| model | σ_d | chips paired | partition Δ | partition + OVF Δ |", "|---|---|---|---|---|"])
    twins = {(r.keys["model"], r.keys["sigma"], r.keys["method"]): metrics[run_key(r)] for r in runs if _is(r, "ideal")}
    runs = [r for r in runs if _is(r, None)]
    ir = _apart(runs)
    for model in dict.fromkeys(r.keys["model"] for r in runs):
        sig = sorted({r.keys["sigma"] for r in runs if r.keys["model"] == model})
        series: dict = {m: ([], []) for m in ("unretrained", "partition", "partition_ovf")}
        plotted = []
        for s in sig:
            cell = {r.keys["method"]: metrics[run_key(r)] for r in runs if r.keys["model"] == model and r.keys["sigma"] == s}
            if set(cell) != {"partition", "partition_ovf"}:
                continue
            a, b = (cell[m]["hardware"] for m in ("partition", "partition_ovf"))
            if len(a["accuracies"]) != len(b["accuracies"]):  # the same chips in both columns
                continue
            diff = paired(a, b)
            plotted.append(s)
            for m, h in (("unretrained", cell["partition"]["unretrained"]), ("partition", a), ("partition_ovf", b)):
                series[m][0].append(100 * h["mean"])
                series[m][1].append(100 * h["ci95"])
            lines.append(f"| {model} | {s:g} | {len(a['accuracies'])} | {_cell(cell['partition']['unretrained'])} | "
                         f"{_cell(a)} | {_cell(b)} | {_delta(diff)} |")
            deltas.add(f"{model} | {s:g}", twins, (model, s), cell, ("partition", "partition_ovf"))
        if plotted:
            plot_sweep(plotted, series, out / f"{model}-accuracy.png", "σ_d",
                       "accuracy over chips (%)", f"{model}: faulty chips written with variation σ_d"
                       + (f", {ir_name(runs)}" if ir else ""))
    return "\n".join(lines) + (
        "\n\nCells: mean accuracy % over chips ± 95 % CI (recovery P = mean / teacher accuracy). Each chip has "
        "the multi-fault 25.03 % fault map; its student is retrained knowing the faults, not the variation, then "
        "written with programming variation σ_d (one draw per chip, the same draw for both students). The last "
        "column is the per-chip difference, mean ± 95 % CI (Student t over chips).\n") + deltas.section(runs)
