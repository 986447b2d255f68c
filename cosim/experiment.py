"""Runs: a TOML-configured training or evaluation that writes ``results/<run>/``.

A run directory holds ``config.toml`` (everything needed to redo it, seeds included),
``metrics.json``, ``model.pt`` (digital weights; for on-chip methods one file per retrained
chip under ``students/``), checkpoints under ``checkpoints/`` and PNG plots. Re-running the
same command on the same directory resumes: finished chips are skipped, an interrupted one
continues from its checkpoint, a Monte Carlo evaluation continues from ``chip_tally.json``
(its chips so far) and OVF's β search from ``beta_search.json`` (its candidates scored so far).
Evaluated again on more chips, a run evaluates only the new ones.

The configuration and the model files are :mod:`cosim.runconfig`'s.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from cosim.data import ImageData, Split, load_dataset
from cosim.errors import SpecError
from cosim.eval import ChipTally, digital_accuracy, evaluate, summarise
from cosim.fileio import read_json, write_json, write_text
from cosim.layers import HardwareConfig, unconvert
from cosim.models import build_model
from cosim.plots import plot_accuracy_histogram, plot_loss
from cosim.report import NullReporter, Reporter
from cosim.runconfig import Experiment, RunConfig, hardware_to_dict, load_model, read_toml, save_model, to_toml
from cosim.train import Method, faulty_student, fit


def _data(run: RunConfig) -> tuple[ImageData, ImageData]:
    kw = dict(data_dir=run.data_dir or None)
    train = load_dataset(run.dataset, Split.TRAIN, **kw).head(run.train_limit or None)
    test = load_dataset(run.dataset, Split.TEST, **kw).head(run.test_limit or None)
    return train, test


def _to(data: ImageData, device: torch.device) -> ImageData:
    return ImageData(data.images.to(device), data.labels.to(device), data.classes, data.name)


def train_run(exp: Experiment, out: Path, command: str = "", reporter: Reporter | None = None,
              needs_model: bool = False) -> dict:
    """Train (and evaluate) one run into ``out``; resumes whatever an earlier call left unfinished.

    ``needs_model``: another run loads this one's ``model.pt`` (as its pretrained model or
    teacher). A finished off-chip run whose ``model.pt`` is gone (not committed, e.g. VGG-8's) is
    then trained and evaluated again, from its seeds, instead of being returned as finished.

    Returns the metrics written to ``out/metrics.json``.
    """
    reporter = reporter or NullReporter()
    out = Path(out)
    config_path = out / "config.toml"
    if config_path.exists():
        # The number of retrained chips, or of evaluation chips, may grow (or shrink) between calls:
        # finished chips and a trained model are kept. Where students are loaded from never changes
        # them (see _student_source).
        old = Experiment.from_sections(read_toml(config_path))
        exp = _paths_spelt_as(exp, old)
        same = replace(exp.run, chips=old.run.chips, students_from=old.run.students_from, eval_chips=old.run.eval_chips)
        differ = _differences(replace(exp, run=same), old)
        if differ:
            raise SpecError(f"{out} holds a run with another configuration ({'; '.join(differ)}); choose a new "
                            "--out or delete it.")
        if (out / "metrics.json").exists():
            finished = _read_json(out / "metrics.json")
            gone = needs_model and not exp.train.method.on_chip and not exp.run.pretrained \
                and not (out / "model.pt").exists()
            if not gone and _finished_as(exp, old, finished):
                return finished
            # The old metrics describe fewer (or other) chips, or lack the ideal-array scores, or a
            # model that is gone: dropped before the new configuration is written, so that an
            # interrupted call never leaves them beside it looking finished.
            if gone:
                # Trained again: neither its training history nor its chips describe the new model.
                # A β search that was over is kept (it scored candidates, not this model): the
                # retraining takes the β it chose instead of searching again.
                search = {k: finished[k] for k in ("beta_search", "beta") if k in finished}
                if exp.run.beta_search and "beta_search" in search:
                    write_json(out / TRAINED, search)
                else:
                    (out / TRAINED).unlink(missing_ok=True)
            elif not exp.train.method.on_chip:
                # What they say about the training is kept first (runs trained before trained.json),
                # and their chips too.
                if not exp.run.pretrained and not (out / TRAINED).exists():
                    write_json(out / TRAINED, {k: finished[k] for k in _TRAINING_KEYS if k in finished})
                if "hardware" in finished:  # keyed by the model they scored: a stale one's chips are not taken
                    _save_tally(out / TALLY, _tally_key(exp, finished.get("device", ""), finished.get(SOURCE_DIGEST)),
                                _recorded_tally(finished["hardware"]))
            (out / "metrics.json").unlink()
    write_text(config_path, to_toml(exp.to_sections()))
    device = exp.run.device.resolve()
    train_data, test_data = _data(exp.run)
    train_data, test_data = _to(train_data, device), _to(test_data, device)
    shape = tuple(train_data.images.shape[1:])
    t0 = time.perf_counter()
    metrics: dict = {"command": command, "model": exp.run.model.value, "method": exp.train.method.value,
                     "dataset": train_data.name, "train_images": len(train_data), "test_images": len(test_data),
                     "device": str(device)}
    if exp.train.method.on_chip:
        if not exp.run.teacher:
            raise SpecError(f"method {exp.train.method.value} needs run.teacher (a trained run directory).")
        teacher = load_model(Path(exp.run.teacher), exp.run.model, shape, train_data.classes).to(device)
        metrics |= _train_on_chips(exp, teacher, train_data, test_data, out, reporter)
    else:
        model, trained = _trained_model(exp, train_data, out, reporter)
        metrics |= trained
        key = _tally_key(exp, str(device), trained.get(SOURCE_DIGEST))
        stats = evaluate(model, test_data, exp.hw, exp.run.eval_chips, exp.run.eval_seed,
                         exp.run.chips_per_pass, reporter=reporter, done=_saved_tally(out / TALLY, key),
                         on_pass=lambda tally: _save_tally(out / TALLY, key, tally))
        metrics |= {"digital_accuracy": stats.ideal_accuracy, "hardware": stats.to_dict()}
        if trained.get("history"):
            plot_loss(trained["history"], out / "loss.png", f"{exp.run.model.value} · {exp.train.method.value}")
        plot_accuracy_histogram({exp.train.method.value: stats.accuracies}, stats.ideal_accuracy,
                                out / "accuracy_per_chip.png", f"{exp.run.model.value} on {stats.n_chips} chips")
    metrics["wall_s"] = time.perf_counter() - t0
    write_json(out / "metrics.json", metrics)
    (out / TALLY).unlink(missing_ok=True)  # metrics.json holds its tally now
    return metrics


def is_finished(exp: Experiment, out: Path) -> bool:
    """Whether ``out`` holds ``exp`` finished as configured: what :func:`train_run` returns as it is
    (unless another run needs a ``model.pt`` that is gone)."""
    config, metrics = Path(out) / "config.toml", Path(out) / "metrics.json"
    if not (config.exists() and metrics.exists()):
        return False
    return _finished_as(exp, Experiment.from_sections(read_toml(config)), _read_json(metrics))


def is_stale(out: Path) -> bool:
    """Whether ``out`` holds a finished run that scored (or retrained students from) another run's
    model, ``run.pretrained`` or ``run.teacher``, whose source has since been trained again to
    other weights, its model file at hand: a run that :func:`train_run`, given the run's own
    ``config.toml``, does again."""
    config, metrics = Path(out) / "config.toml", Path(out) / "metrics.json"
    if not (config.exists() and metrics.exists()):
        return False
    exp = Experiment.from_sections(read_toml(config))
    return any((Path(source) / "model.pt").exists() for source in _changed_sources(exp, _read_json(metrics)))


def _finished_as(exp: Experiment, old: Experiment, metrics: dict) -> bool:
    """Whether a run configured as ``old`` whose ``metrics.json`` holds ``metrics`` is ``exp`` finished:
    also, for a run that loads a model (``run.pretrained``, ``run.teacher``), whether the model it
    used is the one its source holds now (a source trained again since, e.g. on a checkout without
    its weights, makes it stale)."""
    return _paths_spelt_as(exp, old) == old and not _lacks_ideal_scores(exp, metrics) \
        and not _changed_sources(exp, metrics)


WEIGHTS_DIGEST = "weights_sha256"
"""``trained.json`` / ``metrics.json`` key of a trained model's :func:`cosim.runconfig.weights_digest`."""
SOURCE_DIGEST = "pretrained_sha256"
"""``metrics.json`` key of a run that loads ``run.pretrained``: the digest its source recorded for the
model this run scored (absent, or null, for sources trained before digests were recorded)."""
TEACHER_DIGEST = "teacher_sha256"
"""``metrics.json`` key, and ``chips.json`` key of each chip, of an on-chip run: the digest its
``run.teacher`` recorded for the teacher its students were retrained from (absent likewise)."""


def _changed_sources(exp: Experiment, metrics: dict) -> list[str]:
    """The runs whose models ``exp`` loads (``run.pretrained``, ``run.teacher``) that record another
    weights digest now than ``metrics`` (``exp``'s finished record) says were used."""
    return [path for key, path in ((SOURCE_DIGEST, exp.run.pretrained), (TEACHER_DIGEST, exp.run.teacher))
            if path and metrics.get(key) != _recorded_digest(path)]


def _recorded_digest(source: str) -> str | None:
    """The weights digest a run directory recorded (its ``trained.json``, else its ``metrics.json``);
    None for a model file given directly, or a run trained before digests were recorded."""
    for record in (Path(source) / TRAINED, Path(source) / "metrics.json"):
        if record.exists():
            return _read_json(record).get(WEIGHTS_DIGEST)
    return None


_RUN_PATHS = ("data_dir", "teacher", "pretrained", "students_from")


def _paths_spelt_as(exp: Experiment, old: Experiment) -> Experiment:
    """``exp`` with each path of ``[run]`` and ``hardware.surrogate_model`` spelt as ``old`` spells it
    where both name the same file (``results/x`` and its absolute form, from the same working
    directory), so that only a real difference makes a run "another configuration"."""
    def same(a: str, b: str) -> bool:  # spelt otherwise, the same file (equal strings need no change)
        return bool(a) and bool(b) and a != b and Path(a).resolve() == Path(b).resolve()

    run = {k: getattr(old.run, k) for k in _RUN_PATHS if same(getattr(exp.run, k), getattr(old.run, k))}
    exp = replace(exp, run=replace(exp.run, **run))
    if same(exp.hw.surrogate_model, old.hw.surrogate_model):
        exp = replace(exp, hw=replace(exp.hw, surrogate_model=old.hw.surrogate_model))
    return exp


def _differences(new: Experiment, old: Experiment) -> list[str]:
    """Each setting in which ``new`` differs from ``old``, as ``section.key: old value → new value``."""
    a, b = new.to_sections(), old.to_sections()
    return [f"{section}.{key}: {b[section].get(key)!r} → {a[section].get(key)!r}"
            for section in a for key in sorted(a[section].keys() | b[section].keys())
            if a[section].get(key) != b[section].get(key)]


TALLY = "chip_tally.json"
"""An off-chip run's Monte Carlo chips so far (:class:`cosim.eval.ChipTally`), saved after every
pass and when metrics for fewer chips are dropped; with the configuration it belongs to (all
but ``run.eval_chips``) and the torch device, so that no other run's chips are ever taken."""
TALLY_FORMAT = "cosim-chip-tally"
TALLY_VERSION = 1


def _config_key(exp: Experiment, device: str) -> dict:
    """What a run's saved progress (chip tally, β search) belongs to: its whole configuration but
    ``eval_chips``, and the device."""
    return {"config": replace(exp, run=replace(exp.run, eval_chips=1)).to_sections(), "device": device}


def _tally_key(exp: Experiment, device: str, source_digest: str | None) -> dict:
    """What a chip tally belongs to: :func:`_config_key`, and for a run that loads its model, the
    digest of the model scored (left out when none was recorded, as in tallies saved before)."""
    return _config_key(exp, device) | ({SOURCE_DIGEST: source_digest} if source_digest else {})


def _write_keyed(path: Path, fmt: str, version: int, key: dict, content: dict) -> None:
    """Write saved progress: ``content`` with its format, version and ``key``."""
    write_json(path, {"encoding-type": fmt, "encoding-version": version, **key, **content})


def _read_keyed(path: Path, fmt: str, version: int, key: dict, what: str, remedy: str) -> dict | None:
    """Saved progress written by :func:`_write_keyed` for this very ``key``; None when there is
    none, or it belongs to another configuration (or device).

    Raises:
        CosimError: a file that is corrupt, or not ``what`` in a format this version reads.
    """
    if not path.exists():
        return None
    saved = read_json(path, remedy)
    if not isinstance(saved, dict) or (saved.get("encoding-type"), saved.get("encoding-version")) != (fmt, version):
        raise SpecError(f"{path} is not {what} this version of cosim reads; {remedy}")
    return saved if {k: saved.get(k) for k in key} == json.loads(json.dumps(key)) else None


def _save_tally(path: Path, key: dict, tally: ChipTally) -> None:
    _write_keyed(path, TALLY_FORMAT, TALLY_VERSION, key, {"tally": tally.to_dict()})


def _saved_tally(path: Path, key: dict) -> ChipTally:
    """The chips an earlier call saved to ``path`` for this very ``key``; none otherwise."""
    saved = _read_keyed(path, TALLY_FORMAT, TALLY_VERSION, key, "a chip tally",
                        "delete it to evaluate its chips again.")
    return ChipTally.from_dict(saved.get("tally")) if saved else ChipTally()


def _recorded_tally(hardware: dict) -> ChipTally:
    """The tally behind a ``metrics.json`` hardware record. Records written before tallies were
    kept give their chips' correct counts (accuracy × images) and one pooled NLL sum
    (EKL × correct predictions)."""
    if "tally" in hardware:
        return ChipTally.from_dict(hardware["tally"])
    correct = tuple(round(a * hardware["n_images"]) for a in hardware["accuracies"])
    hits = sum(correct)
    return ChipTally(correct, (), hardware["ekl"] * hits if hits else 0.0, len(correct))


TRAINED = "trained.json"
"""An off-chip run's record of its finished training, written beside ``model.pt`` once it is
saved: a run evaluated again on another number of chips loads the model instead of retraining."""
_TRAINING_KEYS = ("history", "beta_search", "beta", WEIGHTS_DIGEST)
IDEAL_SCORE = "ideal_array"
"""``chips.json`` key of an on-chip run off the ideal array (IR drop on): its student's accuracy
on the same chip of the ideal array, so that the IR-drop − ideal difference pairs each chip with
its own student. Missing for chips recorded before runs kept it whose student file is gone."""


def _trained_model(exp: Experiment, train_data: ImageData, out: Path, reporter: Reporter) -> tuple[nn.Module, dict]:
    """An off-chip run's trained model and what its training recorded (``history`` and, after a
    β search, ``beta_search`` and ``beta``; or ``pretrained``): loaded from ``run.pretrained``,
    or from ``out`` when an earlier call finished the training (``trained.json``), else trained."""
    shape, device = tuple(train_data.images.shape[1:]), train_data.images.device
    if exp.run.pretrained:
        source = Path(exp.run.pretrained)
        model = load_model(source, exp.run.model, shape, train_data.classes).to(device)
        history = _read_json(source / "metrics.json").get("history", []) if source.is_dir() else []
        return model, {"history": history, "pretrained": str(source),
                       SOURCE_DIGEST: _recorded_digest(exp.run.pretrained)}
    earlier = _read_json(out / TRAINED) if (out / TRAINED).exists() else None
    if earlier is not None and (out / "model.pt").exists():
        return load_model(out, exp.run.model, shape, train_data.classes).to(device), earlier
    # Chips saved by an interrupted evaluation belong to a model that is gone now (a tally is
    # only written after trained.json; trained.json without model.pt is a fresh checkout of an
    # evaluation interrupted in another, the weights not being committed): the model trained here
    # is evaluated on every chip again. A β search that was over is not run again.
    (out / TALLY).unlink(missing_ok=True)
    cfg, record = exp.train, {}
    if exp.run.beta_search and cfg.method is Method.OVF:
        if earlier and "beta" in earlier:
            beta, search = earlier["beta"], earlier["beta_search"]
        else:
            beta, search = _search_beta(exp, train_data, shape, out, reporter)
        cfg = replace(cfg, beta=beta)
        record = {"beta_search": search, "beta": beta}
    elif cfg.method is Method.OVF:  # β as configured (e.g. `cosim reproduce --beta`): the table names it
        record = {"beta": cfg.beta}
    torch.manual_seed(exp.run.init_seed)
    model = build_model(exp.run.model, shape, train_data.classes).to(device)
    result = fit(model, train_data, cfg, exp.hw, checkpoint=out / "checkpoints" / "train.pt", reporter=reporter)
    digest = save_model(out / "model.pt", result.model, exp.run.model)
    record = {"history": result.history, WEIGHTS_DIGEST: digest} | record
    write_json(out / TRAINED, record)
    (out / BETA_SEARCH).unlink(missing_ok=True)  # trained.json holds the search now
    return result.model, record


BETA_CANDIDATES = (1e-1, 1e-2, 1e-3, 1e-4)
BETA_SEARCH = "beta_search.json"
"""An OVF run's β candidates scored so far, saved after each one with the configuration they
belong to (all but ``run.eval_chips``) and the torch device: a resumed search, also one whose
checkpoints are gone (a fresh checkout of committed results), scores only the candidates left."""
BETA_SEARCH_FORMAT = "cosim-beta-search"
BETA_SEARCH_VERSION = 1


def _saved_candidates(path: Path, key: dict) -> dict[float, dict]:
    """The β candidates an earlier call scored for this very ``key``, by β; none otherwise."""
    remedy = "delete it to search β again."
    saved = _read_keyed(path, BETA_SEARCH_FORMAT, BETA_SEARCH_VERSION, key, "a β search record", remedy)
    if saved is None:
        return {}
    results = saved.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) and "beta" in r for r in results):
        raise SpecError(f"{path} has no list of scored β candidates; {remedy}")
    return {float(r["beta"]): r for r in results}


def _search_beta(exp: Experiment, train_data: ImageData, shape: tuple, out: Path,
                 reporter: Reporter) -> tuple[float, list[dict]]:
    """Paper 002's β search: train on 90 % of the training set per β, score on the other 10 %.
    Each scored candidate is saved to ``out/beta_search.json`` (:data:`BETA_SEARCH`)."""
    n_val = max(1, len(train_data) // 10)
    fit_part = ImageData(train_data.images[:-n_val], train_data.labels[:-n_val], train_data.classes, "search-train")
    val_part = ImageData(train_data.images[-n_val:], train_data.labels[-n_val:], train_data.classes, "search-val")
    key = _config_key(exp, str(train_data.images.device))
    saved = _saved_candidates(out / BETA_SEARCH, key)
    results = []
    for beta in BETA_CANDIDATES:
        if beta in saved:
            results.append(saved[beta])
            continue
        torch.manual_seed(exp.run.init_seed)
        model = build_model(exp.run.model, shape, train_data.classes).to(train_data.images.device)
        trained = fit(model, fit_part, replace(exp.train, beta=beta), exp.hw,
                      checkpoint=out / "checkpoints" / f"beta-{beta:g}.pt", reporter=reporter).model
        stats = evaluate(trained, val_part, exp.hw, exp.run.beta_search_chips, exp.run.eval_seed + 1,
                         exp.run.chips_per_pass, reporter=reporter)
        results.append({"beta": beta, "val_mean": stats.mean, "val_ci95": stats.ci95})
        _write_keyed(out / BETA_SEARCH, BETA_SEARCH_FORMAT, BETA_SEARCH_VERSION, key, {"results": results})
    best = max(results, key=lambda r: r["val_mean"])
    return best["beta"], results


def _chip_checkpoint(out: Path, chip: int, teacher_digest: str) -> Path:
    """Where chip ``chip``'s retraining from the teacher with weights digest ``teacher_digest`` keeps
    its checkpoint: ``checkpoints/chip-<chip>-<first 16 hex digits>.pt`` (``chip-<chip>.pt`` for a
    teacher recorded before digests). A checkpoint of that chip from another teacher (one trained
    again since, or an unknown one) is never resumed: it is deleted here."""
    folder = out / "checkpoints"
    path = folder / (f"chip-{chip}-{teacher_digest[:16]}.pt" if teacher_digest else f"chip-{chip}.pt")
    for old in (folder / f"chip-{chip}.pt", *folder.glob(f"chip-{chip}-*.pt")):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def _train_on_chips(exp: Experiment, teacher: nn.Module, train_data: ImageData, test_data: ImageData,
                    out: Path, reporter: Reporter) -> dict:
    """Retrain one faulty student per chip; accuracy of each on its own chip, beside the unretrained one."""
    teacher_acc = digital_accuracy(teacher, test_data)
    train_hw = _retraining_hardware(exp)
    shape = tuple(train_data.images.shape[1:])
    source = _student_source(exp, teacher, shape, train_data.classes)
    source_done = _read_json(source / "chips.json") if source else {}
    cache = _unretrained_cache(exp, teacher, test_data)
    done_path = out / "chips.json"
    done: dict = _read_json(done_path) if done_path.exists() else {}
    ideal_hw = exp.hw.on_ideal_array()
    scores_ideal = ideal_hw != exp.hw  # off the ideal array: each student is scored on it too
    # A chip whose student was retrained from another teacher (trained again since, to other
    # weights) is retrained; records from before digests were kept carry none, like their teachers.
    teacher_digest = _recorded_digest(exp.run.teacher)
    mark = {TEACHER_DIGEST: teacher_digest} if teacher_digest else {}
    for k in range(exp.run.chips):
        chip = exp.train.chip_seed + k
        if str(chip) in done and done[str(chip)].get(TEACHER_DIGEST) == teacher_digest:
            saved = out / "students" / f"chip-{chip}.pt"
            if scores_ideal and IDEAL_SCORE not in done[str(chip)] and saved.is_file():
                # Recorded before runs kept this score: scored from the saved student.
                model = load_model(saved, exp.run.model, shape, train_data.classes).to(train_data.images.device)
                done[str(chip)][IDEAL_SCORE] = _on_chip_accuracy(model, ideal_hw, chip, test_data)
                write_json(done_path, done)
            continue
        checkpoint = _chip_checkpoint(out, chip, teacher_digest)
        record = source_done.get(str(chip)) if source and (source / "students" / f"chip-{chip}.pt").exists() else None
        record = record if record and record.get(TEACHER_DIGEST) == teacher_digest else None
        if record:
            model = load_model(source / "students" / f"chip-{chip}.pt", exp.run.model, shape,
                               train_data.classes).to(train_data.images.device)
            seconds, history = record["seconds"], record["history"]
        else:
            t0 = time.perf_counter()
            result = fit(build_model(exp.run.model, shape, train_data.classes), train_data,
                         replace(exp.train, chip_seed=chip), train_hw, teacher=teacher,
                         checkpoint=checkpoint, reporter=reporter)
            seconds, history = time.perf_counter() - t0, result.history
            model = result.model
        save_model(out / "students" / f"chip-{chip}.pt", model, exp.run.model, {"chip_seed": chip})
        # A trained student holds its own chip; a loaded one (digital weights) is put on it.
        score = (digital_accuracy(model, test_data) if train_hw == exp.hw and not record
                 else _on_chip_accuracy(model, exp.hw, chip, test_data))
        done[str(chip)] = {
            "retrained": score,
            "unretrained": _unretrained_accuracy(cache, teacher, exp.hw, chip, test_data),
            "seconds": seconds, "history": history,
        } | mark | ({"student_from": str(source)} if record else {}) | (
            {IDEAL_SCORE: _on_chip_accuracy(model, ideal_hw, chip, test_data)} if scores_ideal else {})
        write_json(done_path, done)
        # The chip is recorded and its student saved: its checkpoint (optimizer and chip state,
        # ~50 MB for a LeNet chip) would only fill the disk.
        checkpoint.unlink(missing_ok=True)
    chips = [str(exp.train.chip_seed + k) for k in range(exp.run.chips)]
    retrained = [done[c]["retrained"] for c in chips]
    unretrained = [done[c]["unretrained"] for c in chips]
    stats = summarise(retrained, teacher_acc, teacher_acc, math.nan, len(test_data))
    before = summarise(unretrained, teacher_acc, teacher_acc, math.nan, len(test_data))
    plot_accuracy_histogram({"retrained": retrained, "unretrained": unretrained}, teacher_acc,
                            out / "accuracy_per_chip.png", f"{exp.run.model.value} · {exp.train.method.value}")
    plot_loss(done[chips[0]]["history"], out / "loss.png", f"chip {chips[0]} · {exp.train.method.value}")
    return mark | {"teacher_accuracy": teacher_acc, "hardware": stats.to_dict(), "unretrained": before.to_dict(),
            "seconds_per_chip": sum(done[c]["seconds"] for c in chips) / len(chips)} | (
        {"ideal_array_accuracies": [done[c].get(IDEAL_SCORE) for c in chips],
         "students_loaded": ["student_from" in done[c] for c in chips]} if scores_ideal else {})


def _lacks_ideal_scores(exp: Experiment, metrics: dict) -> bool:
    """Whether a finished on-chip run off the ideal array predates runs scoring their students on
    the ideal array (:data:`IDEAL_SCORE`): such a run is taken up again, which redoes no chip and
    backfills the scores its student files allow."""
    return exp.train.method.on_chip and exp.hw.on_ideal_array() != exp.hw and "students_loaded" not in metrics


def _on_chip_accuracy(model: nn.Module, hw: HardwareConfig, chip: int, test_data: ImageData) -> float:
    """Test accuracy of ``model``'s digital weights written on chip ``chip`` of ``hw``."""
    return digital_accuracy(faulty_student(unconvert(model), hw, chip), test_data)


def _retraining_hardware(exp: Experiment) -> HardwareConfig:
    """The hardware on-chip students retrain through. Retraining knows the chip's fault map, not
    the programming variation of the write that follows it (a fresh draw per write): students train
    without it and meet it on their chip. With ``train_on_ideal_array``, the ideal array."""
    hw = replace(exp.hw, prog_sigma=0.0)
    return hw.on_ideal_array() if exp.run.train_on_ideal_array else hw


def _unretrained_cache(exp: Experiment, teacher: nn.Module, test_data: ImageData) -> tuple[Path, str]:
    """Where the unretrained accuracies of ``exp``'s teacher are kept, and their key.

    The unretrained model of a chip is the same in every on-chip run of one teacher, hardware and
    test set (a table's masked, KD and partition runs), and on the calibrated surrogate it costs as
    much to score as the student; the teacher's run directory keeps each score once, in
    ``unretrained.json`` (``{key: {chip: accuracy}}``). The key hashes everything the score depends
    on: the hardware (and the surrogate file's bytes), the teacher's weights, the test set and the
    torch device type. Like ``chips.json`` it does not cover the code's version."""
    teacher_dir = Path(exp.run.teacher)
    teacher_dir = teacher_dir if teacher_dir.is_dir() else teacher_dir.parent
    digest = hashlib.sha256(json.dumps(hardware_to_dict(exp.hw), sort_keys=True, default=str).encode())
    surrogate = Path(exp.hw.surrogate_model) if exp.hw.surrogate_model else None
    if surrogate is not None and surrogate.is_file():
        digest.update(surrogate.read_bytes())
    for t in (*teacher.state_dict().values(), test_data.images, test_data.labels):
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    digest.update(next(teacher.parameters()).device.type.encode())
    return teacher_dir / "unretrained.json", digest.hexdigest()[:24]


def _unretrained_accuracy(cache: tuple[Path, str], teacher: nn.Module, hw: HardwareConfig, chip: int,
                          test_data: ImageData) -> float:
    """Accuracy of ``teacher`` on chip ``chip`` of ``hw`` without retraining, from ``cache`` (see
    :func:`_unretrained_cache`) when it holds it. The file is re-read just before each write, so runs
    beside each other lose at most a score (scored again later); an unreadable file is scored anew
    and a read-only directory keeps nothing."""
    path, key = cache
    known = _read_cache(path).get(key, {}).get(str(chip))
    if isinstance(known, float):
        return known
    accuracy = digital_accuracy(faulty_student(teacher, hw, chip), test_data)
    table = _read_cache(path)
    table.setdefault(key, {})[str(chip)] = accuracy
    try:
        write_json(path, table)
    except OSError:
        pass
    return accuracy


def _read_cache(path: Path) -> dict:
    """A JSON cache as a dict; empty when missing or unreadable (it is only ever recomputed)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return table if isinstance(table, dict) and all(isinstance(v, dict) for v in table.values()) else {}


def _retraining(exp: Experiment) -> tuple:
    """Everything that shapes an on-chip run's students but the teacher's weights."""
    run = exp.run
    return (run.model, run.dataset, run.data_dir, run.train_limit, run.init_seed, exp.train,
            _retraining_hardware(exp))


def _student_source(exp: Experiment, teacher: nn.Module, shape: tuple, classes: int) -> Path | None:
    """``run.students_from`` once checked to hold students retrained as ``exp``'s are; None when
    unset or not (yet) a run. A directory retrained otherwise is refused."""
    source = Path(exp.run.students_from)
    if not exp.run.students_from or not (source / "chips.json").exists():
        return None
    theirs = Experiment.from_sections(read_toml(source / "config.toml"))
    same = theirs.train.method.on_chip and _retraining(theirs) == _retraining(exp)
    if same:
        other = load_model(Path(theirs.run.teacher), theirs.run.model, shape, classes)
        same = all(torch.equal(a, b.cpu()) for a, b in zip(other.state_dict().values(),
                                                           teacher.state_dict().values(), strict=True))
    if not same:
        raise SpecError(f"run.students_from {source} holds students retrained otherwise (another model, data, "
                        "[train], retraining hardware or teacher); delete it or point students_from elsewhere.")
    return source


def _read_json(path: Path) -> dict:
    return read_json(path, "delete it to redo the chips it listed.")


def evaluate_run(run_dir: Path, dest: Path, n_chips: int | None = None, reporter: Reporter | None = None,
                 hw: HardwareConfig | None = None, temperature: float = 1.0,
                 chips_per_pass: int | None = None) -> dict:
    """Monte Carlo evaluation of a trained run's ``model.pt`` — or, for a run that evaluates
    another run's model (``run.pretrained``), of that model — optionally on other hardware; EKL
    at logit ``temperature``, see :func:`cosim.eval.evaluate`. Written to the JSON file ``dest``
    and returned. Until then the chips so far are saved beside it after every pass
    (``<dest stem>.chip_tally.json``), so that the same call, interrupted, resumes.
    ``chips_per_pass`` (default: the run's ``run.chips_per_pass``) bounds memory. It changes no
    accuracy, since chip k is the same draw in any pass; the EKL moves by float rounding (~1e-8)."""
    run_dir, dest = Path(run_dir), Path(dest)
    exp = Experiment.from_sections(read_toml(run_dir / "config.toml"))
    if exp.train.method.on_chip:
        raise SpecError(f"{run_dir} holds per-chip students ({exp.train.method.value}); their accuracies on their "
                        "own chips are in its metrics.json.")
    device = exp.run.device.resolve()
    _, test_data = _data(exp.run)
    test_data = _to(test_data, device)
    source = Path(exp.run.pretrained) if exp.run.pretrained else run_dir
    model = load_model(source, exp.run.model, tuple(test_data.images.shape[1:]), test_data.classes).to(device)
    hw = hw or exp.hw
    progress = dest.with_suffix("." + TALLY)
    key = _config_key(exp, str(device)) | {"hardware": hardware_to_dict(hw), "temperature": temperature}
    stats = evaluate(model, test_data, hw, n_chips or exp.run.eval_chips, exp.run.eval_seed,
                     chips_per_pass or exp.run.chips_per_pass, reporter=reporter, temperature=temperature,
                     done=_saved_tally(progress, key), on_pass=lambda tally: _save_tally(progress, key, tally))
    result = {"run": str(run_dir), "hardware_config": hardware_to_dict(hw), "temperature": temperature,
              **stats.to_dict()}
    write_json(dest, result)
    progress.unlink(missing_ok=True)  # dest holds the tally now
    return result
