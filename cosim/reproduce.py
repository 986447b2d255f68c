"""``cosim reproduce``: the source papers' experiments as lists of runs, plus their tables and plots.

An experiment expands into named runs (:func:`cosim.plans.plan`; each an
:class:`cosim.runconfig.Experiment`, run by :func:`cosim.experiment.train_run` into
``<out>/runs/<name>/``, so every run resumes), then
gathers their ``metrics.json`` into ``<out>/table.md``, ``<out>/summary.json`` and PNG plots.
``quick`` shrinks every budget (data, epochs, chips) so a whole experiment takes minutes;
``ir_drop`` evaluates on the calibrated surrogate array model (64×64 tiles, 2.5 Ω wires), its
readout uncalibrated or, with ``readout_trim``, gain-trimmed once per chip (fitted to the
programmed levels or, with ``trim_reference``, to the levels the known fault map implies).
``readout_trim`` without ``ir_drop`` trims the ideal array's readout instead: a control that
shows what the trim does without a circuit (it sees only the variation and faults).
With either, the models of papers 001/002 are trained (or found finished) in the ideal
experiment's folder and evaluated there and on the hardware apart (the circuit or the trimmed
ideal array); paper 000's students are retrained through the plain ideal array. Every such table
pairs its numbers with their plain ideal-array twins chip by chip (:mod:`cosim.tables`).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from cosim.errors import SpecError
from cosim.experiment import is_finished, is_stale, train_run
from cosim.fileio import read_json, write_json, write_text
from cosim.layers.config import ReadoutTrim, TrimReference
from cosim.models import ModelName
from cosim.plans import FULL, PAPER_MODELS, QUICK, Budget, ExperimentName, plan
from cosim.report import NullReporter, Reporter
from cosim.runconfig import Experiment, read_toml
from cosim.tables import run_key, table_paper000, table_paper001, table_paper002, table_partition_ovf

_SIGMA_IN_NAME = re.compile(r"-sigma(\d+(?:\.\d*)?(?:e[-+]?\d+)?)-")


def _run_names(*roots: Path | None) -> list[str]:
    """The names of the run folders under ``<root>/runs/`` of each root that has them."""
    return [run.name for root in roots if root is not None and (root / "runs").is_dir()
            for run in (root / "runs").iterdir()]


def _sigmas_on_disk(*roots: Path | None) -> set[float]:
    """The σ values of the runs under ``<root>/runs/`` (run names hold ``-sigma<σ:g>-``)."""
    return {float(m.group(1)) for name in _run_names(*roots) if (m := _SIGMA_IN_NAME.search(name))}


def _models_on_disk(*roots: Path | None) -> tuple[str, ...]:
    """The networks of the runs under ``<root>/runs/`` (run names start with ``<model>-``)."""
    known = {m.value for m in ModelName}
    return tuple(sorted({name.split("-")[0] for name in _run_names(*roots)} & known))


TABLES: dict[ExperimentName, Callable] = {
    ExperimentName.PAPER000_TABLE2: table_paper000,
    ExperimentName.PAPER000_TABLE3: table_paper000,
    ExperimentName.PAPER002_FIG3: table_paper002,
    ExperimentName.PAPER001_DVA_DFP: table_paper001,
    ExperimentName.PARTITION_OVF: table_partition_ovf,
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
    train_limit: int | None = None
    """Training images of teachers and off-chip models (0 = all); ``None`` keeps."""
    test_limit: int | None = None
    """Test images every run is scored on (0 = all); ``None`` keeps."""
    dataset: str = ""
    """Data set instead of MNIST (e.g. ``fashion-mnist``); "" keeps."""
    sigmas: tuple[float, ...] = ()
    """σ values to run instead of the experiment's sweep (paper 002: σ_d; paper 001: the devices'
    lognormal σ; partition-ovf: σ_d); () keeps. Refused by experiments without a σ sweep."""
    beta: float | None = None
    """Paper 002: OVF's β for every σ_d instead of a β search per σ_d (paper 002 searches β once
    for a network and data set); None searches. Refused by the other experiments."""

    def apply(self, b: Budget) -> Budget:
        """``b`` with these overrides.

        Raises:
            SpecError: a σ that is negative or not finite.
        """
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
        if self.train_limit is not None:
            b = replace(b, train_limit=self.train_limit)
        if self.test_limit is not None:
            b = replace(b, test_limit=self.test_limit)
        if self.dataset:
            b = replace(b, dataset=self.dataset)
        if self.sigmas:
            bad = [s for s in self.sigmas if not (math.isfinite(s) and s >= 0)]
            if bad:
                raise SpecError(f"--sigma must be a finite number >= 0, got {bad[0]!r}.")
            b = replace(b, sigmas=tuple(sorted(set(self.sigmas))))
        if self.beta is not None:
            if not (math.isfinite(self.beta) and self.beta > 0):
                raise SpecError(f"--beta must be a finite number > 0, got {self.beta!r}.")
            b = replace(b, ovf_beta=self.beta)
        return b

    def flags(self) -> str:
        """The command-line options that give these overrides."""
        return ("".join(f" --model {m}" for m in self.models) + (f" --chips {self.chips}" if self.chips else "")
                + (f" --epochs {self.epochs}" if self.epochs else "")
                + (f" --retrain-epochs {self.retrain_epochs}" if self.retrain_epochs else "")
                + (f" --retrain-limit {self.retrain_limit}" if self.retrain_limit is not None else "")
                + (f" --train-limit {self.train_limit}" if self.train_limit is not None else "")
                + (f" --test-limit {self.test_limit}" if self.test_limit is not None else "")
                + (f" --dataset {self.dataset}" if self.dataset else "")
                + "".join(f" --sigma {s:g}" for s in sorted(set(self.sigmas)))
                + (f" --beta {self.beta:g}" if self.beta is not None else ""))


def reproduce(name: ExperimentName | str, out: Path | None = None, quick: bool = False, ir_drop: bool = False,
              data_dir: str = "", overrides: Overrides = Overrides(), reporter: Reporter | None = None,
              ideal_out: Path | None = None, readout_trim: ReadoutTrim | str | None = None,
              trim_reference: TrimReference | str | None = None) -> Path:
    """Run (or resume) every run of an experiment and write its table, summary and plots.

    Args:
        name: an :class:`ExperimentName`.
        out: results folder (default
            ``results/<name>[-<dataset>][-irdrop[-<trim>trim[-knownfaults]]][-quick]``).
        quick: the few-minute budget (:data:`QUICK`).
        ir_drop: evaluate on the calibrated surrogate (``device_models/default.h5``).
        data_dir: data directory passed to every run ("" = cache/fetch).
        overrides: budget changes (models, chips, epochs, retraining budget, training and test
            images, data set, σ values, paper 002's OVF β). The table covers the runs of every σ
            in the folder.
        ideal_out: with ``ir_drop`` or ``readout_trim``, the same experiment's folder on the plain
            ideal array (default
            ``results/<name>[-<dataset>][-quick]``): papers 001/002 train (or reuse) their models
            and ideal-array evaluations there; paper 000 reads its ideal-array runs from there,
            when present, for the paired IR-drop column.
        readout_trim: the IR-drop runs' readout gain trim (a
            :class:`cosim.layers.config.ReadoutTrim`; None = uncalibrated, as before it existed);
            without ``ir_drop``, the same evaluations on the ideal array with its readout trimmed
            (a control, in ``results/<name>[-<dataset>]-<trim>trim``). The ideal twins, and so
            what the paired Δ is taken against, are the same as without it.
        trim_reference: with ``readout_trim``, what the trim fits to (a
            :class:`cosim.layers.config.TrimReference`; None = the programmed levels).
    """
    try:
        name = ExperimentName(name)
    except ValueError:
        raise SpecError(f"unknown experiment {name!r}; see `cosim reproduce --list`.") from None
    readout_trim = _choice(ReadoutTrim, readout_trim, "readout trim")
    trim_reference = _choice(TrimReference, trim_reference, "trim reference")
    if trim_reference is not None and readout_trim is None:
        raise SpecError("a trim reference says what the readout trim fits to: it applies only with --readout-trim.")
    if trim_reference is TrimReference.PROGRAMMED:
        trim_reference = None  # the default, spelt out: the same runs, configs and folder as without it
    reporter = reporter or NullReporter()
    if overrides.sigmas and not FULL[name].sigmas:
        raise SpecError(f"{name.value} has no σ sweep; --sigma applies to "
                        + ", ".join(n.value for n, budget in FULL.items() if budget.sigmas) + ".")
    if overrides.beta is not None and name is not ExperimentName.PAPER002_FIG3:
        raise SpecError(f"--beta is OVF's β of {ExperimentName.PAPER002_FIG3.value}; {name.value} has no β to set.")
    if name in (ExperimentName.PAPER001_DVA_DFP, ExperimentName.PARTITION_OVF) and 0 in overrides.sigmas:
        raise SpecError(f"{name.value} studies σ > 0 only (σ = 0 is no variation at all); drop --sigma 0.")
    base = QUICK if quick else FULL[name]
    b = overrides.apply(base)
    suffix = folder_suffix(b.dataset, ir_drop, quick, readout_trim, trim_reference)
    default_out = Path("results") / f"{name.value}{suffix}"
    default_ideal = Path("results") / f"{name.value}{folder_suffix(b.dataset, False, quick)}"
    out = Path(out) if out else default_out
    apart = ir_drop or readout_trim is not None  # runs scored apart from the plain ideal array's folder
    ideal_root = (Path(ideal_out) if ideal_out else default_ideal) if apart else None
    runs = plan(name, b, data_dir, ir_drop, out, ideal_root, readout_trim, trim_reference)
    _earlier_calls(out / "summary.json")  # a corrupt summary stops the call before any work, not after it
    t0 = time.perf_counter()
    todo = [(Experiment.from_sections(r.sections), (r.home or out) / "runs" / r.name) for r in runs if not r.compare_only]
    # Run folders whose model.pt a run still to do loads (a finished run needs none), resolved:
    # a folder is the same one however it is spelt.
    sources = {Path(p).resolve() for exp, folder in todo if not is_finished(exp, folder)
               for p in (exp.run.pretrained, exp.run.teacher) if p}
    for exp, folder in todo:
        train_run(exp, folder, f"cosim train --config {folder}/config.toml --out {folder}", reporter,
                  needs_model=folder.resolve() in sources)
    # The table covers every run of this experiment present in the folder, so calls that add
    # models (or chips) accumulate into one table, whichever --model a later call names.
    models = tuple(dict.fromkeys(PAPER_MODELS[name] + b.models + _models_on_disk(out)))
    # Calls with other --sigma values accumulate the same way: every σ with runs in the folder.
    sigmas = tuple(sorted(set(base.sigmas) | set(b.sigmas) | _sigmas_on_disk(out, ideal_root)))
    every = plan(name, replace(b, models=models, sigmas=sigmas), data_dir, ir_drop, out, ideal_root, readout_trim,
                 trim_reference)
    # Runs of other σ (or networks) in the folder that scored a model trained again since (by this
    # call, on a checkout without its weights): scored again as configured, so that the table never
    # sets an evaluation of the old model beside ones of the new.
    for folder in dict.fromkeys((r.home or out) / "runs" / r.name for r in every if not r.compare_only):
        if is_stale(folder):
            reporter.note(f"{folder}: its model was trained again since it was scored; scoring it again")
            train_run(Experiment.from_sections(read_toml(folder / "config.toml")), folder,
                      f"cosim train --config {folder}/config.toml --out {folder}", reporter)
    metrics = {}
    for r in every:
        path = (r.home or out) / "runs" / r.name / "metrics.json"
        if path.exists():
            metrics[run_key(r)] = json.loads(path.read_text())
    mine = {r.name for r in every if run_key(r) in metrics and not r.compare_only}
    runs = [r for r in every if run_key(r) in metrics and (not r.compare_only or r.name in mine)]  # twins of mine
    table = TABLES[name](runs, metrics, out)
    command = (f"cosim reproduce {name.value}" + (" --quick" if quick else "") + (" --ir-drop" if ir_drop else "")
               + (f" --readout-trim {readout_trim.value}" if readout_trim is not None else "")
               + (f" --trim-reference {trim_reference.value}" if trim_reference is not None else "")
               + (f" --data-dir {data_dir}" if data_dir else "") + overrides.flags()
               + (f" --out {out}" if out != default_out else "")
               + (f" --ideal-out {ideal_root}" if apart and ideal_root != default_ideal else ""))
    wall = time.perf_counter() - t0
    # Read again now: another call into this folder may have finished while this one ran.
    calls = _earlier_calls(out / "summary.json") + [{"command": command, "wall_s": round(wall, 1),
                        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
    # A network is shown when this folder has its runs (not only the ideal folder, under --ir-drop).
    shown = [m for m in models if any(r.keys["model"] == m and "role" not in r.keys and not r.compare_only
                                      and (r.home or out) == out for r in runs)]
    header = (f"# {name.value}{suffix}\n\n{_DOCS[name]}; networks in this table: {', '.join(shown) or 'none'}.\n\n"
              f"Command: `{command}` ({len(runs)} runs; this call {wall:.0f} s; per-run configs with seeds in "
              f"`runs/*/config.toml`" + (f" and, for the ideal-array runs, `{ideal_root}/runs/*/config.toml`"
                                          if apart else "") + ").\n\n" + _trim_note(readout_trim, trim_reference, ir_drop)
              + _history(calls))
    missing = [m for m in PAPER_MODELS[name] if m not in shown]
    if missing and not quick:
        table += (f"\nNot in this folder: {', '.join(missing)} (CPU time: a 2-core machine, no accelerator lent; "
                  f"`--model NAME` runs them unchanged; results/README.md says which have a folder of their own).\n")
    write_text(out / "table.md", header + table)
    write_json(out / "summary.json", {"experiment": name.value, "quick": quick, "ir_drop": ir_drop,
                                      "readout_trim": readout_trim.value if readout_trim is not None else None,
                                      "trim_reference": trim_reference.value if trim_reference is not None else None,
                                      "command": command,
                                      "wall_s_this_call": wall, "calls": calls, "budget": b.__dict__,
                                      "runs": {run_key(r): {"keys": r.keys, "metrics_file": os.path.relpath(
                                          (r.home or out) / "runs" / r.name / "metrics.json", out)} for r in runs}})
    return out


def _earlier_calls(summary: Path) -> list[dict]:
    """The calls recorded in an earlier ``summary.json`` of this folder, oldest first.

    Each is ``{"command", "wall_s", "finished_utc"}``. A summary written before calls were
    recorded yields its one (last) call, without a finishing time.
    """
    if not summary.exists():
        return []
    remedy = "delete it (the runs are kept; it is written again at the end of the call)."
    old = read_json(summary, remedy)
    calls = old.get("calls") if isinstance(old, dict) else None
    if not isinstance(old, dict) or not (calls is None or (isinstance(calls, list)
                                                           and all(isinstance(c, dict) for c in calls))):
        raise SpecError(f"{summary} is not an experiment summary with a list of calls; {remedy}")
    if calls is not None:
        return calls
    wall = old.get("wall_s_this_call")
    return [{"command": old["command"], "wall_s": round(wall, 1) if isinstance(wall, (int, float)) else None,
             "finished_utc": None}] if "command" in old else []


def _history(calls: list[dict]) -> str:
    """The calls that made this folder, for the table's header (nothing for a single call)."""
    if len(calls) < 2:
        return ""

    def line(i: int, c: dict) -> str:
        wall = f"{c['wall_s']:.0f} s" if isinstance(c.get("wall_s"), (int, float)) else "time not recorded"
        done = f", finished {c['finished_utc']}" if c.get("finished_utc") else ""
        return f"{i}. `{c.get('command', '?')}` ({wall}{done})\n"

    lines = "".join(line(i, c) for i, c in enumerate(calls, 1))
    return f"Calls that made this folder, oldest first (a call resumes the runs before it):\n\n{lines}\n"


def describe() -> list[tuple[str, str]]:
    """(name, one-line description) of every experiment, with its default networks and the paper's."""
    def networks(e: ExperimentName) -> str:
        default, papers = FULL[e].models, PAPER_MODELS[e]
        paper = f" (the paper's: {', '.join(papers)})" if papers != default else ""
        return f"default networks {', '.join(default)}{paper}"

    return [(e.value, f"{_DOCS[e]}; {networks(e)}") for e in ExperimentName]


_DOCS = {
    ExperimentName.PAPER000_TABLE2: "paper 000 Table 2: SAF-only faults; masked FT, KD, partition retraining",
    ExperimentName.PAPER000_TABLE3: "paper 000 Table 3: multi-fault 25.03 %; the same methods",
    ExperimentName.PAPER002_FIG3: "paper 002 Fig. 3: σ_d sweep 0..0.4, vanilla / GNI / OVF (β search, or --beta), "
                                  "accuracy and EKL",
    ExperimentName.PAPER001_DVA_DFP: "paper 001: DVA and DFP against on/off ratio (2, 10, 100) and σ (0.1, 0.3, 0.5)",
    ExperimentName.PARTITION_OVF: "beyond the papers: partition retraining with and without OVF-style variation "
                                  "training; multi-fault chips written with variation σ_d (0.1, 0.2, 0.3)",
}
"""What each experiment studies, without its networks: a table names the networks it holds."""


def _choice(enum: type[Enum], value: Enum | str | None, what: str) -> Enum | None:
    """``value`` as a member of ``enum`` (None stays None); an unknown one is refused naming the choices."""
    try:
        return enum(value) if value is not None else None
    except ValueError:
        raise SpecError(f"unknown {what} {value!r}; one of " + ", ".join(e.value for e in enum) + ".") from None


def folder_suffix(dataset: str, ir_drop: bool, quick: bool, readout_trim: ReadoutTrim | None = None,
                  trim_reference: TrimReference | None = None) -> str:
    """The default results folder's suffix after the experiment's name:
    ``[-<dataset>][-irdrop][-<trim>trim[-knownfaults]][-quick]`` (MNIST, the papers' data set, unnamed)."""
    trim = (f"-{readout_trim.value}trim" if readout_trim is not None else "") + (
        "-knownfaults" if trim_reference is TrimReference.KNOWN_FAULTS else "")
    return (f"-{dataset}" if dataset != "mnist" else "") + ("-irdrop" if ir_drop else "") + trim + (
        "-quick" if quick else "")


def _trim_note(trim: ReadoutTrim | None, reference: TrimReference | None = None, ir_drop: bool = True) -> str:
    """The sentence a table's header gains for its readout trim ("" without one), on the IR-drop
    array or (``ir_drop`` False) on the ideal array."""
    if trim is None:
        return ""
    gains = {ReadoutTrim.LAYER: "one digital gain per layer", ReadoutTrim.COLUMN: "one digital gain per row tile and output"}
    fit = ("to the levels the chip's known fault map implies (stuck devices at their stuck levels; "
           "`hardware.trim_reference = \"known_faults\"`)" if reference is TrimReference.KNOWN_FAULTS
           else "to the programmed levels")
    where = "IR-drop readout trimmed" if ir_drop else (
        "Ideal-array readout trimmed (a control without a circuit: the trim sees only the variation and faults)")
    return (f"{where}: {gains[trim]}, fitted on each chip once after programming {fit} "
            f"(`hardware.readout_trim = \"{trim.value}\"`; docs/decisions.md, \"Readout trim\"). "
            + ("The ideal-array twins are the same as without it.\n\n" if ir_drop else
               "Every run is paired with the same model (or student) on the untrimmed ideal array.\n\n"))
