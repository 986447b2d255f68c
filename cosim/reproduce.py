"""``cosim reproduce``: the source papers' experiments as lists of runs, plus their tables and plots.

An experiment expands into named runs (each an :class:`cosim.experiment.Experiment`, run by
:func:`cosim.experiment.train_run` into ``<out>/runs/<name>/``, so every run resumes), then
gathers their ``metrics.json`` into ``<out>/table.md``, ``<out>/summary.json`` and PNG plots.
``quick`` shrinks every budget (data, epochs, chips) so a whole experiment takes minutes;
``ir_drop`` evaluates on the calibrated surrogate array model (64×64 tiles, 2.5 Ω wires).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

import numpy as np

from cosim.errors import SpecError
from cosim.eval import summarise
from cosim.experiment import Experiment, train_run
from cosim.fileio import write_json, write_text
from cosim.plots import plot_sweep
from cosim.report import NullReporter, Reporter

MULTI_FAULT = {"p_tf": 0.1424, "p_sa1": 0.0904, "p_sa0": 0.0175, "tf_sigma": 0.2}
SAF_ONLY = {"p_tf": 0.0, "p_sa1": 0.0904, "p_sa0": 0.0175}
IR_DROP = {"array_model": "surrogate", "surrogate_model": "device_models/default.h5", "tile_rows": 64,
           "tile_cols": 64, "r_wire_row_ohm": 2.5, "r_wire_col_ohm": 2.5, "r_driver_ohm": 2.5, "r_sense_ohm": 2.5}


class ExperimentName(str, Enum):
    """Experiments ``cosim reproduce`` knows."""

    PAPER000_TABLE2 = "paper000-table2"
    """Paper 000 Table 2: SAF-only (SA1 9.04 %, SA0 1.75 %); masked fine-tuning, KD, partition retraining."""
    PAPER000_TABLE3 = "paper000-table3"
    """Paper 000 Table 3: multi-fault 25.03 % (TF 14.24 % σ 0.2, SA1 9.04 %, SA0 1.75 %)."""
    PAPER002_FIG3 = "paper002-fig3"
    """Paper 002 Fig. 3: accuracy and EKL against σ_d for vanilla, GNI and OVF."""
    PAPER001_DVA_DFP = "paper001-dva-dfp"
    """Paper 001: DVA training and DFP against the on/off ratio and the variation σ."""
    PARTITION_OVF = "partition-ovf"
    """Beyond the papers: partition retraining with and without OVF-style variation training, on
    faulty chips (multi-fault 25.03 %) whose retrained weights are written with variation σ_d."""


@dataclass(frozen=True)
class Budget:
    """How much work an experiment does (full or quick)."""

    models: tuple[str, ...]
    teacher_epochs: int
    retrain_epochs: int
    retrain_limit: int
    train_limit: int
    test_limit: int
    chips: int
    eval_chips: int
    sigmas: tuple[float, ...]
    dataset: str = "mnist"


FULL = {
    ExperimentName.PAPER000_TABLE2: Budget(("mlp", "lenet", "convnet", "lenet5"), 15, 1, 10_000, 0, 0, 100, 1, ()),
    ExperimentName.PAPER000_TABLE3: Budget(("mlp", "lenet", "convnet", "lenet5"), 15, 1, 10_000, 0, 0, 100, 1, ()),
    ExperimentName.PAPER002_FIG3: Budget(("vgg8",), 10, 10, 0, 0, 0, 1, 100, (0.0, 0.1, 0.2, 0.3, 0.4)),
    ExperimentName.PAPER001_DVA_DFP: Budget(("lenet5",), 10, 10, 0, 0, 0, 1, 100, (0.1, 0.3, 0.5)),
    ExperimentName.PARTITION_OVF: Budget(("lenet5",), 15, 1, 10_000, 0, 0, 50, 1, (0.1, 0.2, 0.3)),
}
PAPER_MODELS = {
    ExperimentName.PAPER000_TABLE2: ("mlp", "lenet", "convnet", "lenet5", "vgg16", "resnet18"),
    ExperimentName.PAPER000_TABLE3: ("mlp", "lenet", "convnet", "lenet5", "vgg16", "resnet18"),
    ExperimentName.PAPER002_FIG3: ("vgg8", "resnet18"),
    ExperimentName.PAPER001_DVA_DFP: ("lenet5",),
    ExperimentName.PARTITION_OVF: ("lenet5",),
}
"""The networks each source experiment reports; a table names those it has no rows for."""
QUICK = Budget(("lenet5",), 1, 1, 1000, 1000, 300, 2, 4, (0.0, 0.3))


@dataclass
class RunPlan:
    """One run of an experiment: its directory name, config sections and table coordinates."""

    name: str
    sections: dict
    keys: dict = field(default_factory=dict)


def _base(model: str, b: Budget, data_dir: str) -> dict:
    return {"model": model, "dataset": b.dataset, "data_dir": data_dir, "train_limit": b.train_limit,
            "test_limit": b.test_limit}


def plan(name: ExperimentName, b: Budget, data_dir: str, ir_drop: bool, root: Path) -> list[RunPlan]:
    """The runs of experiment ``name`` under budget ``b``."""
    hw_extra = IR_DROP if ir_drop else {}
    runs: list[RunPlan] = []
    if name in (ExperimentName.PAPER000_TABLE2, ExperimentName.PAPER000_TABLE3, ExperimentName.PARTITION_OVF):
        faults = SAF_ONLY if name is ExperimentName.PAPER000_TABLE2 else MULTI_FAULT
        for model in b.models:
            teacher = f"{model}-teacher"
            runs.append(RunPlan(teacher, {"run": _base(model, b, data_dir) | {"eval_chips": 1},
                                          "train": {"epochs": b.teacher_epochs}}, {"model": model, "role": "teacher"}))
            run = _base(model, b, data_dir) | {"train_limit": b.retrain_limit, "chips": b.chips,
                                               "teacher": str(root / "runs" / teacher), "train_on_ideal_array": ir_drop}
            if name is ExperimentName.PARTITION_OVF:
                for sigma in (s for s in b.sigmas if s > 0):
                    for method in ("partition", "partition_ovf"):
                        runs.append(RunPlan(f"{model}-sigma{sigma:g}-{method}", {
                            "run": dict(run), "train": {"method": method, "epochs": b.retrain_epochs, "sigma_d": sigma},
                            "hardware": {**faults, "prog_sigma": sigma, **hw_extra}},
                            {"model": model, "sigma": sigma, "method": method}))
                continue
            # The one-cell preset has no conductances, so no circuit: IR-drop tables use the physical one.
            for mapping in ("differential_slices",) if ir_drop else ("one_cell", "differential_slices"):
                for method in ("masked", "kd", "partition"):
                    runs.append(RunPlan(f"{model}-{mapping}-{method}", {
                        "run": dict(run), "train": {"method": method, "epochs": b.retrain_epochs},
                        "hardware": {"mapping": mapping, **faults, **hw_extra}},
                        {"model": model, "mapping": mapping, "method": method}))
    elif name is ExperimentName.PAPER002_FIG3:
        for model in b.models:
            vanilla = f"{model}-vanilla"
            runs.append(RunPlan(vanilla, {"run": _base(model, b, data_dir) | {"eval_chips": 1},
                                          "train": {"epochs": b.teacher_epochs}}, {"model": model, "role": "trained"}))
            for sigma in b.sigmas:
                for method in ("vanilla", "gni", "ovf"):
                    train = {"method": method, "epochs": b.teacher_epochs, "sigma_d": sigma}
                    run = _base(model, b, data_dir) | {"eval_chips": b.eval_chips, "beta_search": method == "ovf"}
                    if method == "vanilla" or sigma == 0:  # no noise to inject: the vanilla model itself
                        train, run = {"epochs": b.teacher_epochs}, run | {"pretrained": str(root / "runs" / vanilla)}
                    runs.append(RunPlan(f"{model}-sigma{sigma:g}-{method}", {
                        "run": run, "train": train, "hardware": {"prog_sigma": sigma, **hw_extra}},
                        {"model": model, "sigma": sigma, "method": method}))
    else:
        for model in b.models:
            trained = {}
            for method, sigma in [("vanilla", 0.0)] + [("dva", s) for s in b.sigmas]:
                trained[(method, sigma)] = f"{model}-train-{method}" + (f"-sigma{sigma:g}" if method == "dva" else "")
                runs.append(RunPlan(trained[(method, sigma)], {
                    "run": _base(model, b, data_dir) | {"eval_chips": 1},
                    "train": {"method": method, "epochs": b.teacher_epochs, "dva_sigma": sigma}},
                    {"model": model, "role": "trained"}))
            for ratio in (2.0, 10.0, 100.0):
                for sigma in b.sigmas:
                    for method in ("vanilla", "dva"):
                        source = trained[(method, 0.0 if method == "vanilla" else sigma)]
                        for fmt in ("static_fixed_point", "dynamic_fixed_point"):
                            hw = {"p_tf": 1.0, "p_sa1": 0.0, "p_sa0": 0.0, "tf_sigma": sigma, "weight_format": fmt,
                                  "fixed_point_range": 4.0, "r_hrs_ohm": 10e3 * ratio, **hw_extra}
                            runs.append(RunPlan(f"{model}-onoff{ratio:g}-sigma{sigma:g}-{method}-{fmt}", {
                                "run": _base(model, b, data_dir) | {"eval_chips": b.eval_chips,
                                                                    "pretrained": str(root / "runs" / source)},
                                "train": {"method": method, "epochs": b.teacher_epochs, "dva_sigma": sigma},
                                "hardware": hw}, {"model": model, "ratio": ratio, "sigma": sigma, "method": method,
                                                  "format": fmt}))
    return runs


def _cell(h: dict) -> str:
    return f"{100 * h['mean']:.2f} ± {100 * h['ci95']:.2f} ({100 * h['recovery']:.1f} %)"


def _table_paper000(runs: list[RunPlan], metrics: dict) -> str:
    lines = ["| model | preset | teacher acc % | chips | unretrained | masked FT | KD | partition |",
             "|---|---|---|---|---|---|---|---|"]
    models = dict.fromkeys(r.keys["model"] for r in runs)
    for model in models:
        for mapping in ("one_cell", "differential_slices"):
            row = {r.keys["method"]: metrics[r.name] for r in runs if r.keys.get("mapping") == mapping
                   and r.keys["model"] == model}
            if not row:
                continue
            any_run = next(iter(row.values()))
            lines.append(f"| {model} | {mapping} | {100 * any_run['teacher_accuracy']:.2f} | "
                         f"{any_run['hardware']['n_chips']} | "
                         f"{_cell(any_run['unretrained'])} | "
                         + " | ".join(_cell(row[m]["hardware"]) if m in row else "—" for m in ("masked", "kd", "partition"))
                         + " |")
    return "\n".join(lines) + "\n\nCells: mean accuracy % over chips ± 95 % CI (recovery P = mean / teacher accuracy).\n"


def _table_paper002(runs: list[RunPlan], metrics: dict, out: Path) -> str:
    lines = ["| model | σ_d | vanilla | GNI | OVF (β) | EKL vanilla / GNI / OVF |", "|---|---|---|---|---|---|"]
    runs = [r for r in runs if "role" not in r.keys]
    for model in dict.fromkeys(r.keys["model"] for r in runs):
        sig = sorted({r.keys["sigma"] for r in runs if r.keys["model"] == model})
        series: dict = {m: ([], []) for m in ("vanilla", "gni", "ovf")}
        ekl: dict = {m: ([], []) for m in ("vanilla", "gni", "ovf")}
        for s in sig:
            cell = {r.keys["method"]: metrics[r.name] for r in runs if r.keys["model"] == model and r.keys["sigma"] == s}
            for m, d in cell.items():
                series[m][0].append(100 * d["hardware"]["mean"])
                series[m][1].append(100 * d["hardware"]["ci95"])
                ekl[m][0].append(d["hardware"]["ekl"])
                ekl[m][1].append(0.0)
            beta = cell["ovf"].get("beta", "—")
            lines.append(f"| {model} | {s:g} | " + " | ".join(
                f"{100 * cell[m]['hardware']['mean']:.2f} ± {100 * cell[m]['hardware']['ci95']:.2f}" for m in ("vanilla", "gni"))
                + f" | {100 * cell['ovf']['hardware']['mean']:.2f} ± {100 * cell['ovf']['hardware']['ci95']:.2f} ({beta})"
                + " | " + " / ".join(f"{cell[m]['hardware']['ekl']:.3f}" for m in ("vanilla", "gni", "ovf")) + " |")
        plot_sweep(sig, series, out / f"{model}-accuracy.png", "σ_d", "accuracy over chips (%)", f"{model}: accuracy vs σ_d")
        plot_sweep(sig, ekl, out / f"{model}-ekl.png", "σ_d", "EKL of correct predictions (nats)", f"{model}: EKL vs σ_d")
    return "\n".join(lines) + "\n\nCells: mean accuracy % over chips ± 95 % CI; EKL in nats (lower is better).\n"


def _table_paper001(runs: list[RunPlan], metrics: dict) -> str:
    combos = [("vanilla", "static_fixed_point"), ("vanilla", "dynamic_fixed_point"), ("dva", "static_fixed_point"),
              ("dva", "dynamic_fixed_point")]
    lines = ["| model | on/off | σ | vanilla, static FP | vanilla, DFP | DVA, static FP | DVA, DFP |", "|---|---|---|---|---|---|---|"]
    seen = []
    runs = [r for r in runs if "role" not in r.keys]
    for r in runs:
        k = (r.keys["model"], r.keys["ratio"], r.keys["sigma"])
        if k in seen:
            continue
        seen.append(k)
        cell = {(q.keys["method"], q.keys["format"]): metrics[q.name]["hardware"] for q in runs
                if (q.keys["model"], q.keys["ratio"], q.keys["sigma"]) == k}
        lines.append(f"| {k[0]} | {k[1]:g} | {k[2]:g} | " + " | ".join(
            f"{100 * cell[c]['mean']:.2f} ± {100 * cell[c]['ci95']:.2f}" for c in combos) + " |")
    return "\n".join(lines) + "\n\nCells: mean accuracy % over chips ± 95 % CI. Static FP: one Q2.6 format (full scale 4) for every layer; DFP: per-layer power-of-two full scale.\n"


def _table_partition_ovf(runs: list[RunPlan], metrics: dict, out: Path) -> str:
    lines = ["| model | σ_d | chips | unretrained | partition | partition + OVF | OVF − partition, paired |",
             "|---|---|---|---|---|---|---|"]
    runs = [r for r in runs if "role" not in r.keys]
    for model in dict.fromkeys(r.keys["model"] for r in runs):
        sig = sorted({r.keys["sigma"] for r in runs if r.keys["model"] == model})
        series: dict = {m: ([], []) for m in ("unretrained", "partition", "partition_ovf")}
        plotted = []
        for s in sig:
            cell = {r.keys["method"]: metrics[r.name] for r in runs if r.keys["model"] == model and r.keys["sigma"] == s}
            if set(cell) != {"partition", "partition_ovf"}:
                continue
            a, b = (np.asarray(cell[m]["hardware"]["accuracies"]) for m in ("partition", "partition_ovf"))
            if a.size != b.size:  # paired only over the same chips
                continue
            diff = summarise(b - a, 1.0, 1.0, math.nan, cell["partition"]["hardware"]["n_images"])
            plotted.append(s)
            for m, h in (("unretrained", cell["partition"]["unretrained"]), ("partition", cell["partition"]["hardware"]),
                         ("partition_ovf", cell["partition_ovf"]["hardware"])):
                series[m][0].append(100 * h["mean"])
                series[m][1].append(100 * h["ci95"])
            lines.append(f"| {model} | {s:g} | {a.size} | {_cell(cell['partition']['unretrained'])} | "
                         f"{_cell(cell['partition']['hardware'])} | {_cell(cell['partition_ovf']['hardware'])} | "
                         f"{100 * diff.mean:+.2f} ± {100 * diff.ci95:.2f} |")
        if plotted:
            plot_sweep(plotted, series, out / f"{model}-accuracy.png", "σ_d",
                       "accuracy over chips (%)", f"{model}: faulty chips written with variation σ_d")
    return "\n".join(lines) + (
        "\n\nCells: mean accuracy % over chips ± 95 % CI (recovery P = mean / teacher accuracy). Each chip has "
        "the multi-fault 25.03 % fault map; its student is retrained knowing the faults, not the variation, then "
        "written with programming variation σ_d (one draw per chip, the same draw for both students). The last "
        "column is the per-chip difference, mean ± 95 % CI (Student t over chips).\n")


TABLES: dict[ExperimentName, Callable] = {
    ExperimentName.PAPER000_TABLE2: lambda runs, m, out: _table_paper000(runs, m),
    ExperimentName.PAPER000_TABLE3: lambda runs, m, out: _table_paper000(runs, m),
    ExperimentName.PAPER002_FIG3: _table_paper002,
    ExperimentName.PAPER001_DVA_DFP: lambda runs, m, out: _table_paper001(runs, m),
    ExperimentName.PARTITION_OVF: _table_partition_ovf,
}


@dataclass(frozen=True)
class Overrides:
    """What one ``cosim reproduce`` call changes in an experiment's budget (defaults keep it)."""

    models: tuple[str, ...] = ()
    """Networks to run instead of the experiment's."""
    chips: int = 0
    """Chips (on-chip methods: retrained students; the others: Monte Carlo chips); 0 keeps."""
    epochs: int = 0
    """Training epochs of teachers and of every training of papers 001/002; 0 keeps."""
    retrain_epochs: int = 0
    """Epochs of the on-chip retraining methods (partition: per block); 0 keeps."""
    retrain_limit: int | None = None
    """Training images the on-chip methods see (0 = all); ``None`` keeps."""
    dataset: str = ""
    """Data set instead of MNIST (e.g. ``fashion-mnist``); "" keeps."""

    def apply(self, b: Budget) -> Budget:
        """``b`` with these overrides."""
        if self.models:
            b = replace(b, models=tuple(self.models))
        if self.chips:  # on-chip budgets retrain several chips; the others only evaluate them
            b = replace(b, chips=self.chips if b.chips > 1 else b.chips, eval_chips=self.chips)
        if self.epochs:
            b = replace(b, teacher_epochs=self.epochs)
        if self.retrain_epochs:
            b = replace(b, retrain_epochs=self.retrain_epochs)
        if self.retrain_limit is not None:
            b = replace(b, retrain_limit=self.retrain_limit)
        if self.dataset:
            b = replace(b, dataset=self.dataset)
        return b

    def flags(self) -> str:
        """The command-line options that give these overrides."""
        return ("".join(f" --model {m}" for m in self.models) + (f" --chips {self.chips}" if self.chips else "")
                + (f" --epochs {self.epochs}" if self.epochs else "")
                + (f" --retrain-epochs {self.retrain_epochs}" if self.retrain_epochs else "")
                + (f" --retrain-limit {self.retrain_limit}" if self.retrain_limit is not None else "")
                + (f" --dataset {self.dataset}" if self.dataset else ""))


def reproduce(name: ExperimentName | str, out: Path | None = None, quick: bool = False, ir_drop: bool = False,
              data_dir: str = "", overrides: Overrides = Overrides(), reporter: Reporter | None = None) -> Path:
    """Run (or resume) every run of an experiment and write its table, summary and plots.

    Args:
        name: an :class:`ExperimentName`.
        out: results folder (default ``results/<name>[-<dataset>][-irdrop][-quick]``).
        quick: the few-minute budget (:data:`QUICK`).
        ir_drop: evaluate on the calibrated surrogate (``device_models/default.h5``).
        data_dir: data directory passed to every run ("" = cache/fetch).
        overrides: budget changes (models, chips, epochs, retraining budget, data set).
    """
    try:
        name = ExperimentName(name)
    except ValueError:
        raise SpecError(f"unknown experiment {name!r}; see `cosim reproduce --list`.") from None
    reporter = reporter or NullReporter()
    b = overrides.apply(QUICK if quick else FULL[name])
    suffix = (f"-{b.dataset}" if b.dataset != "mnist" else "") + ("-irdrop" if ir_drop else "") + (
        "-quick" if quick else "")
    default_out = Path("results") / f"{name.value}{suffix}"
    out = Path(out) if out else default_out
    runs = plan(name, b, data_dir, ir_drop, out)
    t0 = time.perf_counter()
    for r in runs:
        exp = Experiment.from_sections(r.sections)
        train_run(exp, out / "runs" / r.name, f"cosim train --config {out}/runs/{r.name}/config.toml "
                  f"--out {out}/runs/{r.name}", reporter)
    # The table covers every run of this experiment present in the folder, so calls that add
    # models (or chips) accumulate into one table.
    models = tuple(dict.fromkeys(PAPER_MODELS[name] + b.models))  # every FULL budget's models are the paper's
    every = plan(name, replace(b, models=models), data_dir, ir_drop, out)
    done = [r for r in every if (out / "runs" / r.name / "metrics.json").exists()]
    metrics = {r.name: json.loads((out / "runs" / r.name / "metrics.json").read_text()) for r in done}
    runs = done
    table = TABLES[name](runs, metrics, out)
    command = (f"cosim reproduce {name.value}" + (" --quick" if quick else "") + (" --ir-drop" if ir_drop else "")
               + (f" --data-dir {data_dir}" if data_dir else "") + overrides.flags()
               + (f" --out {out}" if out != default_out else ""))
    wall = time.perf_counter() - t0
    header = (f"# {name.value}{suffix}\n\n{_DOCS[name]}.\n\n"
              f"Command: `{command}` ({len(runs)} runs; this call {wall:.0f} s; per-run configs with seeds in "
              f"`runs/*/config.toml`).\n\n")
    shown = {r.keys["model"] for r in runs if "role" not in r.keys}
    missing = [m for m in PAPER_MODELS[name] if m not in shown]
    if missing and not quick:
        table += (f"\nNot run here: {', '.join(missing)} (CPU time: a 2-core machine, no accelerator lent; "
                  f"`--model NAME` runs them unchanged).\n")
    write_text(out / "table.md", header + table)
    write_json(out / "summary.json", {"experiment": name.value, "quick": quick, "ir_drop": ir_drop, "command": command,
                                      "wall_s_this_call": wall, "budget": b.__dict__,
                                      "runs": {r.name: {"keys": r.keys, "metrics_file": f"runs/{r.name}/metrics.json"}
                                               for r in runs}})
    return out


def describe() -> list[tuple[str, str]]:
    """(name, one-line description) of every experiment."""
    return [(e.value, (_DOCS.get(e) or "")) for e in ExperimentName]


_DOCS = {
    ExperimentName.PAPER000_TABLE2: "paper 000 Table 2: SAF-only faults; masked FT, KD, partition retraining; MLP, LeNet, ConvNet, LeNet-5",
    ExperimentName.PAPER000_TABLE3: "paper 000 Table 3: multi-fault 25.03 %; same methods and models",
    ExperimentName.PAPER002_FIG3: "paper 002 Fig. 3: σ_d sweep 0..0.4, vanilla / GNI / OVF (β search), accuracy and EKL; VGG-8",
    ExperimentName.PAPER001_DVA_DFP: "paper 001: DVA and DFP against on/off ratio (2, 10, 100) and σ (0.1, 0.3, 0.5); LeNet-5",
    ExperimentName.PARTITION_OVF: "beyond the papers: partition retraining with and without OVF-style variation "
                                  "training; multi-fault chips written with variation σ_d (0.1, 0.2, 0.3); LeNet-5",
}

