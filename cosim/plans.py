"""What runs each of ``cosim reproduce``'s experiments is made of (:func:`plan`).

An experiment, under a :class:`Budget` (:data:`FULL` or :data:`QUICK`), expands into named runs
(:class:`RunPlan`): each run's config sections, its table coordinates (``keys``) and the folder it
lives in. Planned apart from the plain ideal array, with hardware keys ``ir``, are the IR-drop
runs (:func:`ir_drop_hardware`) and the trimmed ideal array's (:func:`trim_hardware`): they
evaluate the ideal folder's trained models (papers 001/002) or retrain through the plain ideal
array (paper 000, partition-ovf), and each has a plain ideal twin to be paired with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from cosim.errors import SpecError
from cosim.layers.config import ReadoutTrim, TrimReference

MULTI_FAULT = {"p_tf": 0.1424, "p_sa1": 0.0904, "p_sa0": 0.0175, "tf_sigma": 0.2}
SAF_ONLY = {"p_tf": 0.0, "p_sa1": 0.0904, "p_sa0": 0.0175}
IR_DROP = {"array_model": "surrogate", "surrogate_model": "device_models/default.h5", "tile_rows": 64,
           "tile_cols": 64, "r_wire_row_ohm": 2.5, "r_wire_col_ohm": 2.5, "r_driver_ohm": 2.5, "r_sense_ohm": 2.5}


def ir_drop_hardware(readout_trim: ReadoutTrim | None = None, trim_reference: TrimReference | None = None) -> dict:
    """The hardware keys of an IR-drop run: :data:`IR_DROP`, plus :func:`trim_hardware`."""
    return IR_DROP | trim_hardware(readout_trim, trim_reference)


def trim_hardware(readout_trim: ReadoutTrim | None = None, trim_reference: TrimReference | None = None) -> dict:
    """The hardware keys of a readout trim: ``readout_trim`` and ``trim_reference`` when set (their
    values; each left out when None, so runs without them keep their configs, digests and folders)."""
    return {k: v.value for k, v in (("readout_trim", readout_trim), ("trim_reference", trim_reference))
            if v is not None}


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
    ratios: tuple[float, ...] = (2.0, 10.0, 100.0)
    """Paper 001's device on/off ratios (``r_hrs / r_lrs``)."""
    ovf_beta: float | None = None
    """Paper 002: OVF's β, the same for every σ_d, with no β search; None searches β for each
    σ_d on a validation split (:data:`cosim.experiment.BETA_CANDIDATES`)."""


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
QUICK = Budget(("lenet5",), 1, 1, 1000, 1000, 300, 2, 2, (0.0, 0.3), ratios=(10.0,))


@dataclass
class RunPlan:
    """One run of an experiment: its directory name, config sections and table coordinates."""

    name: str
    sections: dict
    keys: dict = field(default_factory=dict)
    home: Path | None = None
    """The experiment folder the run lives in (``<home>/runs/<name>``); None = this call's."""
    compare_only: bool = False
    """Read into the table when present, never run by this call (the ideal-array twin of an
    on-chip IR-drop run, which lives in the ideal experiment's folder)."""


def _base(model: str, b: Budget, data_dir: str) -> dict:
    return {"model": model, "dataset": b.dataset, "data_dir": data_dir, "train_limit": b.train_limit,
            "test_limit": b.test_limit}


def plan(name: ExperimentName, b: Budget, data_dir: str, ir_drop: bool, root: Path,
         ideal_root: Path | None = None, readout_trim: ReadoutTrim | None = None,
         trim_reference: TrimReference | None = None) -> list[RunPlan]:
    """The runs of experiment ``name`` under budget ``b``, in ``root``.

    With ``ir_drop`` the runs on the ideal array live in ``ideal_root`` (the experiment's folder
    without IR drop): off-chip training does not depend on the array model, so its trained models
    (and their ideal-array evaluations) are shared, and every IR-drop number has an ideal twin on
    the same chips to be compared with, paired. ``readout_trim`` sets the IR-drop runs'
    ``hardware.readout_trim``, and ``trim_reference`` (only with a trim) what it fits to; their
    ideal twins are the same either way. ``readout_trim`` without ``ir_drop`` plans the same
    evaluations on the ideal array with its readout trimmed (:func:`trim_hardware`), paired with
    the same plain ideal twins.
    """
    if trim_reference is not None and readout_trim is None:
        raise SpecError("a trim reference says what the readout trim fits to: it applies only with --readout-trim.")
    ir = ir_drop_hardware(readout_trim, trim_reference) if ir_drop else trim_hardware(readout_trim, trim_reference)
    if name in (ExperimentName.PAPER000_TABLE2, ExperimentName.PAPER000_TABLE3, ExperimentName.PARTITION_OVF):
        return _plan_on_chip(name, b, data_dir, ir, root, ideal_root or root)
    if name is ExperimentName.PAPER002_FIG3:
        return _plan_paper002(b, data_dir, ir, root, ideal_root or root)
    return _plan_paper001(b, data_dir, ir, root, ideal_root or root)


# The planners below take ``ir``: the hardware keys of the runs scored apart from the plain ideal
# array (:func:`ir_drop_hardware`, or :func:`trim_hardware` for the trimmed ideal array), or {}
# for an experiment on the plain ideal array.
def _plan_on_chip(name: ExperimentName, b: Budget, data_dir: str, ir: dict, root: Path,
                  ideal_root: Path) -> list[RunPlan]:
    apart = bool(ir)  # scored apart (on the circuit or trimmed): retrained through the plain ideal array
    runs: list[RunPlan] = []
    faults = SAF_ONLY if name is ExperimentName.PAPER000_TABLE2 else MULTI_FAULT
    for model in b.models:
        teacher = f"{model}-teacher"
        runs.append(RunPlan(teacher, {"run": _base(model, b, data_dir) | {"eval_chips": 1},
                                      "train": {"epochs": b.teacher_epochs}}, {"model": model, "role": "teacher"}))
        run = _base(model, b, data_dir) | {"train_limit": b.retrain_limit, "chips": b.chips,
                                           "teacher": str(root / "runs" / teacher), "train_on_ideal_array": apart}
        if name is ExperimentName.PARTITION_OVF:
            for sigma in (s for s in b.sigmas if s > 0):
                for method in ("partition", "partition_ovf"):
                    run_name = f"{model}-sigma{sigma:g}-{method}"
                    runs.append(RunPlan(run_name, {
                        "run": run | _students_from(apart, ideal_root, run_name),
                        "train": {"method": method, "epochs": b.retrain_epochs, "sigma_d": sigma},
                        "hardware": {**faults, "prog_sigma": sigma, **ir}},
                        {"model": model, "sigma": sigma, "method": method}))
                    if apart:
                        runs.append(_ideal_twin(runs[-1], ideal_root))
            continue
        # The one-cell preset has no conductances, so no circuit and no levels to trim: IR-drop and
        # trimmed tables use the physical one.
        for mapping in ("differential_slices",) if apart else ("one_cell", "differential_slices"):
            for method in ("masked", "kd", "partition"):
                run_name = f"{model}-{mapping}-{method}"
                runs.append(RunPlan(run_name, {
                    "run": run | _students_from(apart, ideal_root, run_name),
                    "train": {"method": method, "epochs": b.retrain_epochs},
                    "hardware": {"mapping": mapping, **faults, **ir}},
                    {"model": model, "mapping": mapping, "method": method}))
                if apart:
                    runs.append(_ideal_twin(runs[-1], ideal_root))
    return runs


def _students_from(apart: bool, ideal_root: Path, name: str) -> dict:
    """Scored apart (IR drop or a readout trim), students retrain through the plain ideal array, so
    the ideal twin's students (when that run is on disk) are the same: they are loaded, not retrained."""
    return {"students_from": str(ideal_root / "runs" / name)} if apart else {}


def _ideal_twin(run: RunPlan, ideal_root: Path) -> RunPlan:
    """The ideal-array run of ``run``'s students in ``ideal_root`` (on-chip students retrain
    through the ideal array, so they are the same): read into the table when present, never run."""
    return RunPlan(run.name, {}, run.keys | {"array": "ideal"}, ideal_root, compare_only=True)


def apart_label(ir: dict) -> str:
    """How runs on the hardware keys ``ir`` are marked (``keys["array"]``, and their names'
    suffix): ``irdrop`` on the circuit, ``trimmed`` on the ideal array with its readout trimmed."""
    return "irdrop" if "array_model" in ir else "trimmed"


def _ir_twin(run: RunPlan, ir: dict, root: Path, source: Path, eval_chips: int, name: str = "") -> RunPlan:
    """The evaluation on hardware keys ``ir`` (the circuit, or the trimmed ideal array) of
    ``run``'s trained model (``source``), in ``root``, named ``name`` (default
    ``<run>-<apart_label>``; runs of one model on one hardware share one name)."""
    sections = {"run": run.sections["run"] | {"eval_chips": eval_chips, "pretrained": str(source),
                                              "beta_search": False},
                "train": run.sections["train"], "hardware": run.sections["hardware"] | ir}
    label = apart_label(ir)
    return RunPlan(name or f"{run.name}-{label}", sections, run.keys | {"array": label}, root)


def _plan_paper002(b: Budget, data_dir: str, ir: dict, root: Path, home: Path) -> list[RunPlan]:
    runs: list[RunPlan] = []
    for model in b.models:
        vanilla = f"{model}-vanilla"
        runs.append(RunPlan(vanilla, {"run": _base(model, b, data_dir) | {"eval_chips": 1},
                                      "train": {"epochs": b.teacher_epochs}}, {"model": model, "role": "trained"}, home))
        for sigma in b.sigmas:
            for method in ("vanilla", "gni", "ovf"):
                train = {"method": method, "epochs": b.teacher_epochs, "sigma_d": sigma}
                search = method == "ovf" and b.ovf_beta is None
                run = _base(model, b, data_dir) | {"eval_chips": b.eval_chips, "beta_search": search}
                if method == "ovf" and not search:
                    train["beta"] = b.ovf_beta
                source, twin = f"{model}-sigma{sigma:g}-{method}", ""
                if method == "vanilla" or sigma == 0:  # no noise to inject: the vanilla model itself
                    train, run = {"epochs": b.teacher_epochs}, run | {"pretrained": str(home / "runs" / vanilla)}
                    # At σ_d = 0 the three columns are one model on one hardware: one IR-drop evaluation.
                    source, twin = vanilla, f"{model}-sigma{sigma:g}-vanilla-{apart_label(ir)}"
                runs.append(RunPlan(f"{model}-sigma{sigma:g}-{method}", {
                    "run": run, "train": train, "hardware": {"prog_sigma": sigma}},
                    {"model": model, "sigma": sigma, "method": method}, home))
                if ir:
                    runs.append(_ir_twin(runs[-1], ir, root, home / "runs" / source, b.eval_chips, twin))
    return runs


def _calibrated_ratios() -> tuple[float, float]:
    """The on/off ratio range the IR-drop surrogate (``IR_DROP``) was calibrated on, from its file."""
    from cosim.calibrate.store import read_model

    return tuple(read_model(Path(IR_DROP["surrogate_model"])).campaign.on_off_ratio)


def _plan_paper001(b: Budget, data_dir: str, ir: dict, root: Path, home: Path) -> list[RunPlan]:
    runs: list[RunPlan] = []
    for model in b.models:
        trained = {}
        # σ = 0 would be no variation at all (every device a TF device of spread 0): not a point of the study.
        sigmas = [s for s in b.sigmas if s > 0]
        for method, sigma in [("vanilla", 0.0)] + [("dva", s) for s in sigmas]:
            trained[(method, sigma)] = f"{model}-train-{method}" + (f"-sigma{sigma:g}" if method == "dva" else "")
            runs.append(RunPlan(trained[(method, sigma)], {
                "run": _base(model, b, data_dir) | {"eval_chips": 1},
                "train": {"method": method, "epochs": b.teacher_epochs, "dva_sigma": sigma}},
                {"model": model, "role": "trained"}, home))
        # With IR drop, only on/off ratios inside the surrogate's calibrated range (an
        # extrapolation, e.g. paper 001's ratio 2 against the default's 10..1000, is left out).
        lo, hi = _calibrated_ratios() if "array_model" in ir else (0.0, math.inf)
        for ratio in (r for r in b.ratios if lo <= r <= hi):
            for sigma in sigmas:
                for method in ("vanilla", "dva"):
                    source = home / "runs" / trained[(method, 0.0 if method == "vanilla" else sigma)]
                    for fmt in ("static_fixed_point", "dynamic_fixed_point"):
                        hw = {"p_tf": 1.0, "p_sa1": 0.0, "p_sa0": 0.0, "tf_sigma": sigma, "weight_format": fmt,
                              "fixed_point_range": 4.0, "r_hrs_ohm": 10e3 * ratio}
                        runs.append(RunPlan(f"{model}-onoff{ratio:g}-sigma{sigma:g}-{method}-{fmt}", {
                            "run": _base(model, b, data_dir) | {"eval_chips": b.eval_chips, "pretrained": str(source)},
                            "train": {"method": method, "epochs": b.teacher_epochs, "dva_sigma": sigma},
                            "hardware": hw}, {"model": model, "ratio": ratio, "sigma": sigma, "method": method,
                                              "format": fmt}, home))
                        if ir:
                            runs.append(_ir_twin(runs[-1], ir, root, source, b.eval_chips))
    return runs
