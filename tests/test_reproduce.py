"""``cosim reproduce --quick`` end to end on tiny IDX data: every experiment, its table and files."""

import json
import math
import tomllib

import pytest
import torch
from typer.testing import CliRunner

from cosim.cli.main import app

runner = CliRunner()


def _mean_gain_pct(before: list[float], after: list[float]) -> float:
    """The mean per-chip difference ``after − before`` in points, computed here independently of
    :mod:`cosim.tables` (both lists cover the same chips)."""
    assert len(before) == len(after)
    return 100 * sum(b - a for a, b in zip(before, after)) / len(before)


@pytest.mark.parametrize("experiment, rows", [("paper000-table3", 2), ("paper002-fig3", 2), ("paper001-dva-dfp", 1),
                                                     ("partition-ovf", 1)])
def test_quick_experiment_writes_its_table(tiny_mnist, tmp_path, experiment, rows):
    out = tmp_path / experiment
    res = runner.invoke(app, ["reproduce", experiment, "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = (out / "table.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| lenet5")]
    assert len(body) == rows
    assert "±" in body[0] and f"cosim reproduce {experiment} --quick" in table
    assert "; networks in this table: lenet5.\n" in table  # the header names what the table holds
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"].values():
        metrics = json.loads((out / run["metrics_file"]).read_text())
        assert 0.0 <= metrics["hardware"]["mean"] <= 1.0
    if experiment in ("paper002-fig3", "partition-ovf"):
        assert (out / "lenet5-accuracy.png").read_bytes()[:4] == b"\x89PNG"
    if experiment == "paper000-table3":  # one recovery plot per preset
        assert sorted(p.name for p in out.glob("*.png")) == ["recovery-differential_slices.png", "recovery-one_cell.png"]
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.glob("*.png"))
    if experiment == "paper001-dva-dfp":  # one plot per on/off ratio
        ratios = {r["keys"]["ratio"] for r in summary["runs"].values() if "ratio" in r["keys"]}
        assert sorted(p.name for p in out.glob("*.png")) == sorted(f"lenet5-onoff{r:g}-accuracy.png" for r in ratios)
        assert all(p.read_bytes()[:4] == b"\x89PNG" for p in out.glob("*.png"))
    if experiment == "partition-ovf":  # the paired column is the mean per-chip difference
        acc = {m: json.loads((out / "runs" / f"lenet5-sigma0.3-{m}" / "metrics.json").read_text())["hardware"]["accuracies"]
               for m in ("partition", "partition_ovf")}
        expected = _mean_gain_pct(acc["partition"], acc["partition_ovf"])
        assert body[0].split("|")[-2].strip().startswith(f"{expected:+.2f} ±")
    if experiment == "paper002-fig3":  # the OVF − GNI column is the mean per-chip difference
        acc = {m: json.loads((out / "runs" / f"lenet5-sigma0.3-{m}" / "metrics.json").read_text())["hardware"]["accuracies"]
               for m in ("gni", "ovf")}
        expected = _mean_gain_pct(acc["gni"], acc["ovf"])
        assert body[1].split("|")[6].strip().startswith(f"{expected:+.2f} ±")
    # A second call resumes: nothing is retrained, the table is the same.
    again = runner.invoke(app, ["reproduce", experiment, "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)])
    assert again.exit_code == 0
    assert [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| lenet5")] == body
    # Both calls are on record, oldest first, in the summary and the table's header.
    calls = json.loads((out / "summary.json").read_text())["calls"]
    assert [c["command"] for c in calls] == [f"cosim reproduce {experiment} --quick --data-dir {tiny_mnist} --out {out}"] * 2
    assert calls[0]["finished_utc"] <= calls[1]["finished_utc"]
    history = [line for line in (out / "table.md").read_text().splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert [line[:3] for line in history] == ["1. ", "2. "] and all(calls[0]["command"] in line for line in history)


def test_a_corrupt_summary_stops_reproduce_before_any_work(tiny_mnist, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "summary.json").write_text('{"experiment": "paper000-table3", "calls": [')
    res = runner.invoke(app, ["reproduce", "paper000-table3", "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)])
    assert res.exit_code == 1 and "summary.json is corrupt" in res.output and "Traceback" not in res.output
    assert not (out / "runs").exists()


def test_reproduce_list_and_unknown():
    res = runner.invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0 and "paper000-table2" in res.output and "paper001-dva-dfp" in res.output
    assert "default networks vgg8 (the paper's: vgg8, resnet18)" in " ".join(res.output.split())
    res = runner.invoke(app, ["reproduce", "paper999"])
    assert res.exit_code == 1 and "unknown experiment 'paper999'" in res.output


def test_overrides_reach_every_run_and_the_command():
    from dataclasses import replace
    from pathlib import Path

    from cosim.plans import FULL, PAPER_MODELS, QUICK, ExperimentName, plan
    from cosim.reproduce import Overrides

    assert all(set(b.models) <= set(PAPER_MODELS[n]) for n, b in FULL.items())  # tables look for these

    o = Overrides(models=("mlp",), chips=7, retrain_epochs=3, retrain_limit=0)
    b = o.apply(QUICK)
    runs = plan(ExperimentName.PAPER000_TABLE3, b, "", False, Path("x"))
    onchip = [r for r in runs if "method" in r.keys]
    assert len(onchip) == 6 and {r.keys["model"] for r in runs} == {"mlp"}
    for r in onchip:
        assert r.sections["train"]["epochs"] == 3
        assert r.sections["run"]["train_limit"] == 0 and r.sections["run"]["chips"] == 7
    teacher = next(r for r in runs if r.keys.get("role") == "teacher")
    assert teacher.sections["train"]["epochs"] == QUICK.teacher_epochs  # retraining overrides leave teachers alone
    assert o.flags() == " --model mlp --chips 7 --retrain-epochs 3 --retrain-limit 0"
    limited = plan(ExperimentName.PAPER000_TABLE3, replace(o, train_limit=500, test_limit=0).apply(QUICK), "", False,
                   Path("x"))
    assert {r.sections["run"]["test_limit"] for r in limited} == {0} and QUICK.test_limit != 0
    assert {r.sections["run"]["train_limit"] for r in limited if "method" in r.keys} == {0}  # retrain_limit
    assert next(r for r in limited if r.keys.get("role") == "teacher").sections["run"]["train_limit"] == 500
    assert replace(o, train_limit=500, test_limit=0).flags().endswith(" --train-limit 500 --test-limit 0")
    assert Overrides().apply(QUICK) == QUICK and Overrides().flags() == ""


def test_quick_ir_drop_table_evaluates_on_the_calibrated_surrogate(tiny_mnist, tmp_path, monkeypatch):
    """On-chip students retrain on the ideal array whatever --ir-drop says, so the IR-drop table
    loads the ideal table's students instead of retraining them; its Δ table pairs the two tables' chips.
    A readout trim fitted to the known fault map scores the same students in a folder of its own."""
    import cosim.tables

    titles: list = []
    plot_bars = cosim.tables.plot_bars
    monkeypatch.setattr(cosim.tables, "plot_bars", lambda *a, **k: (titles.append(a[4]), plot_bars(*a, **k)))
    ideal, out = tmp_path / "ideal", tmp_path / "irdrop"
    args = ["reproduce", "paper000-table3", "--quick", "--data-dir", str(tiny_mnist)]
    assert runner.invoke(app, args + ["--out", str(ideal)]).exit_code == 0
    # An ideal run of a network this IR-drop folder does not run: not its twin, not in its summary.
    other = ideal / "runs" / "mlp-differential_slices-kd"
    other.mkdir()
    (other / "metrics.json").write_bytes((ideal / "runs" / "lenet5-differential_slices-kd" / "metrics.json").read_bytes())
    res = runner.invoke(app, args + ["--ir-drop", "--out", str(out), "--ideal-out", str(ideal)])
    assert res.exit_code == 0, res.output
    assert sorted(k for k in json.loads((out / "summary.json").read_text())["runs"] if k.endswith("@ideal")) == [
        f"lenet5-differential_slices-{m}@ideal" for m in ("kd", "masked", "partition")]
    table = (out / "table.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| lenet5")]
    assert len(body) == 2 and "| differential_slices |" in body[0]  # no circuit for the one-cell preset
    run = "lenet5-differential_slices-partition"
    config = (out / "runs" / run / "config.toml").read_text()
    assert 'array_model = "surrogate"' in config and "train_on_ideal_array = true" in config
    chips = json.loads((out / "runs" / run / "chips.json").read_text())
    assert [chips[c]["student_from"] for c in ("0", "1")] == [str(ideal / "runs" / run)] * 2
    for chip in (0, 1):
        a, b = (torch.load(d / "runs" / run / "students" / f"chip-{chip}.pt", weights_only=True)["state_dict"]
                for d in (ideal, out))
        assert all(torch.equal(a[k], b[k]) for k in a)
    mine, twin = (json.loads((d / "runs" / run / "metrics.json").read_text())["hardware"] for d in (out, ideal))
    assert mine["n_chips"] == twin["n_chips"] == 2 and 0.0 <= mine["mean"] <= 1.0
    expected = _mean_gain_pct(twin["accuracies"], mine["accuracies"])
    assert body[1].startswith("| lenet5 | differential_slices | 2 |") and body[1].split("|")[-2].strip().startswith(
        f"{expected:+.2f} ±")
    assert titles[-1] == "differential_slices, IR drop: retrained students"
    known = tmp_path / "known"
    res = runner.invoke(app, args + ["--ir-drop", "--readout-trim", "layer", "--trim-reference", "known_faults",
                                     "--out", str(known), "--ideal-out", str(ideal)])
    assert res.exit_code == 0, res.output
    assert tomllib.loads((known / "runs" / run / "config.toml").read_text())["hardware"] == tomllib.loads(
        config)["hardware"] | {"readout_trim": "layer", "trim_reference": "known_faults"}
    chips = json.loads((known / "runs" / run / "chips.json").read_text())
    assert [chips[c]["student_from"] for c in ("0", "1")] == [str(ideal / "runs" / run)] * 2
    assert "fitted on each chip once after programming to the levels the chip's known fault map implies" in (
        known / "table.md").read_text()
    assert titles[-1] == "differential_slices, IR drop (layer trim, known faults): retrained students"
    summary = json.loads((known / "summary.json").read_text())
    assert (summary["readout_trim"], summary["trim_reference"]) == ("layer", "known_faults")
    assert " --readout-trim layer --trim-reference known_faults " in summary["command"]


@pytest.mark.parametrize("experiment, ir_rows", [("paper002-fig3", 2), ("paper001-dva-dfp", 1)])
def test_quick_ir_drop_reuses_the_ideal_models_and_pairs_chips(tiny_mnist, tmp_path, monkeypatch, experiment,
                                                              ir_rows):
    """Off-chip experiments with --ir-drop train (or reuse) their models in the ideal folder and
    evaluate those very models on the surrogate; the Δ column is the mean per-chip difference."""
    import cosim.tables

    legends: dict = {}  # plot file name → its series' labels, from the last call that drew it
    plot_sweep = cosim.tables.plot_sweep
    monkeypatch.setattr(cosim.tables, "plot_sweep", lambda x, series, path, *a: (
        legends.__setitem__(path.name, list(series)), plot_sweep(x, series, path, *a)))
    ideal, out = tmp_path / "ideal", tmp_path / "irdrop"
    args = ["reproduce", experiment, "--quick", "--data-dir", str(tiny_mnist)]
    res = runner.invoke(app, args + ["--ir-drop", "--out", str(out), "--ideal-out", str(ideal)])
    assert res.exit_code == 0, res.output
    trained = sorted(p.parent.name for p in (ideal / "runs").glob("*/model.pt"))
    assert trained and not list((out / "runs").glob("*/model.pt"))  # models live in the ideal folder only
    summary = json.loads((out / "summary.json").read_text())
    ir_runs = {k: v for k, v in summary["runs"].items() if v["keys"].get("array") == "irdrop"}
    for name, run in ir_runs.items():
        config = (out / "runs" / name / "config.toml").read_text()
        assert 'array_model = "surrogate"' in config and f'pretrained = "{ideal}/runs/' in config
    table = (out / "table.md").read_text()
    ir_table = table.split("calibrated IR-drop array")[1]
    body = [line for line in ir_table.splitlines() if line.startswith("| lenet5")]
    assert len(body) == ir_rows and "--ideal-out" in table and "; networks in this table: lenet5.\n" in table
    # The first IR row's first Δ, recomputed from the two runs' per-chip accuracies.
    name = next(iter(ir_runs))
    twin = json.loads((ideal / "runs" / name.removesuffix("-irdrop") / "metrics.json").read_text())["hardware"]
    mine = json.loads((out / "runs" / name / "metrics.json").read_text())["hardware"]
    assert mine["n_chips"] == twin["n_chips"] == 2
    expected = _mean_gain_pct(twin["accuracies"], mine["accuracies"])
    assert f"{expected:+.2f} ±" in body[0]
    ir_series = [label for labels in legends.values() for label in labels if "IR drop" in label]
    assert ir_series and all(label.endswith(", IR drop") for label in ir_series)
    if experiment == "paper002-fig3":  # σ_d = 0: vanilla, GNI and OVF are one model, evaluated once
        assert [p.name for p in (out / "runs").glob("lenet5-sigma0-*")] == ["lenet5-sigma0-vanilla-irdrop"]
    stamps = {p: p.stat().st_mtime_ns for p in (ideal / "runs").glob("*/model.pt")}
    if experiment == "paper002-fig3":
        # With a readout trim: the same models scored again, on the trimmed IR-drop array, in a folder of their own.
        trimmed = tmp_path / "trimmed"
        res = runner.invoke(app, args + ["--ir-drop", "--readout-trim", "layer", "--out", str(trimmed),
                                         "--ideal-out", str(ideal)])
        assert res.exit_code == 0, res.output
        assert {p: p.stat().st_mtime_ns for p in (ideal / "runs").glob("*/model.pt")} == stamps
        summary = json.loads((trimmed / "summary.json").read_text())
        assert summary["readout_trim"] == "layer" and " --ir-drop --readout-trim layer " in summary["command"]
        assert sorted(summary["runs"]) == sorted(json.loads((out / "summary.json").read_text())["runs"])
        for run in ir_runs:
            config = tomllib.loads((trimmed / "runs" / run / "config.toml").read_text())
            assert config["hardware"] == tomllib.loads((out / "runs" / run / "config.toml").read_text())[
                "hardware"] | {"readout_trim": "layer"}
        table = (trimmed / "table.md").read_text()
        assert 'IR-drop readout trimmed: one digital gain per layer' in table and "IR-drop readout" not in (
            out / "table.md").read_text()
        mine = json.loads((trimmed / "runs" / name / "metrics.json").read_text())["hardware"]
        expected = _mean_gain_pct(twin["accuracies"], mine["accuracies"])
        body = [line for line in table.split("calibrated IR-drop array")[1].splitlines() if line.startswith("| lenet5")]
        assert f"{expected:+.2f} ±" in body[0]
        assert legends["lenet5-accuracy.png"] == ["vanilla", "gni", "ovf", "vanilla, IR drop (layer trim)",
                                                  "gni, IR drop (layer trim)", "ovf, IR drop (layer trim)"]
    if experiment == "paper001-dva-dfp":
        # The trim on the ideal array (a control): the same models scored on the ideal array with its
        # readout trimmed, on every on/off ratio (no surrogate range to keep to), paired with the same twins.
        trimmed = tmp_path / "ideal-trimmed"
        res = runner.invoke(app, args + ["--readout-trim", "layer", "--out", str(trimmed), "--ideal-out", str(ideal)])
        assert res.exit_code == 0, res.output
        assert {p: p.stat().st_mtime_ns for p in (ideal / "runs").glob("*/model.pt")} == stamps
        summary = json.loads((trimmed / "summary.json").read_text())
        assert summary["readout_trim"] == "layer" and not summary["ir_drop"]
        apart = {k for k, v in summary["runs"].items() if v["keys"].get("array") == "trimmed"}
        assert apart == {k.removesuffix("-irdrop") + "-trimmed" for k in ir_runs}
        run = next(iter(sorted(apart)))
        config = tomllib.loads((trimmed / "runs" / run / "config.toml").read_text())
        assert config["hardware"] == tomllib.loads((ideal / "runs" / run.removesuffix("-trimmed") / "config.toml")
                                                   .read_text())["hardware"] | {"readout_trim": "layer"}
        table = (trimmed / "table.md").read_text()
        assert "Ideal-array readout trimmed (a control without a circuit" in table and "calibrated" not in table
        twin, mine = (json.loads((d / "runs" / r / "metrics.json").read_text())["hardware"]
                      for d, r in ((ideal, run.removesuffix("-trimmed")), (trimmed, run)))
        body = [line for line in table.split("The same models on the ideal array (layer trim):")[1].splitlines()
                if line.startswith("| lenet5")]
        assert f"{_mean_gain_pct(twin['accuracies'], mine['accuracies']):+.2f} ±" in body[0]
        assert "Δ: ideal array (layer trim) − ideal array, per chip" in table
        assert all(label.endswith(", ideal array (layer trim)") for label in legends["lenet5-onoff10-accuracy.png"][4:])
    # The ideal experiment run on its own afterwards finds every run finished: nothing is retrained.
    res = runner.invoke(app, args + ["--out", str(ideal)])
    assert res.exit_code == 0, res.output
    assert {p: p.stat().st_mtime_ns for p in (ideal / "runs").glob("*/model.pt")} == stamps
    assert "IR-drop" not in (ideal / "table.md").read_text()


def test_ir_drop_deltas_pair_each_chip_with_its_own_student_where_scored():
    """The ideal side of an IR-drop Δ is the run's own student on the ideal array where the run
    scored it, else the ideal twin's student of that chip; chips of the second kind whose student
    was retrained (not loaded from the twin) are counted as pairing with another student."""
    from cosim.tables import _Deltas, ideal_array_side

    twin = {"hardware": {"accuracies": [0.90, 0.80, 0.70, 0.60], "n_images": 100}}
    run = {"hardware": {"accuracies": [0.85, 0.75, 0.65], "n_images": 100},
           "ideal_array_accuracies": [0.91, None, None], "students_loaded": [False, True, False]}
    ideal, other = ideal_array_side(twin, run)
    assert ideal["accuracies"] == [0.91, 0.80, 0.70] and other == [False, False, True]
    header = ["| model | preset | chips paired | masked FT Δ | KD Δ |", "|---|---|---|---|---|"]
    deltas = _Deltas(list(header))
    deltas.add("m | p", {("m", "p", "kd"): twin}, ("m", "p"), {"kd": run}, ("masked", "kd"))
    assert deltas.lines[2].startswith("| m | p | 3 (1 other student) | — | -5.33 ± ")
    assert "\"(k other student)\": k of the chips" in deltas.section([])
    own = _Deltas(list(header))  # every chip scored its own student: no footnote
    own.add("m | p", {("m", "p", "kd"): twin}, ("m", "p"), {"kd": run | {"ideal_array_accuracies": [0.91, 0.8, 0.7]}},
            ("masked", "kd"))
    assert own.lines[2].startswith("| m | p | 3 | — | ") and "other student" not in own.section([])
    assert _Deltas(list(header)).section([]) == ""  # no row, no table
    # An older run without its own scores, longer than its twin: pairs over the twin's chips.
    ideal, other = ideal_array_side(twin | {"hardware": {"accuracies": [0.9, 0.8], "n_images": 100}},
                                  {"hardware": run["hardware"]})
    assert ideal["accuracies"] == [0.9, 0.8] and other == [True, True]


def test_ideal_out_needs_ir_drop_or_a_trim(tmp_path):
    res = runner.invoke(app, ["reproduce", "paper002-fig3", "--quick", "--ideal-out", str(tmp_path)])
    assert res.exit_code == 2 and "--ideal-out applies only with --ir-drop or --readout-trim" in res.output


def test_readout_trim_and_its_reference_must_be_known(tmp_path):
    from cosim.errors import SpecError
    from cosim.reproduce import reproduce

    res = runner.invoke(app, ["reproduce", "paper002-fig3", "--quick", "--ir-drop", "--readout-trim", "row"])
    assert res.exit_code == 2 and "--readout-trim" in res.output
    with pytest.raises(SpecError, match="unknown readout trim 'row'; one of column, layer"):
        reproduce("paper002-fig3", tmp_path, quick=True, readout_trim="row")
    with pytest.raises(SpecError, match="unknown readout trim 'row'; one of column, layer"):
        reproduce("paper002-fig3", tmp_path, quick=True, ir_drop=True, readout_trim="row")
    # What the trim fits to: only with a trim, and one of the known references.
    res = runner.invoke(app, ["reproduce", "partition-ovf", "--quick", "--ir-drop", "--trim-reference", "known_faults"])
    assert res.exit_code == 2 and "--trim-reference says what the readout trim fits to" in res.output
    res = runner.invoke(app, ["reproduce", "partition-ovf", "--quick", "--ir-drop", "--readout-trim", "layer",
                              "--trim-reference", "faults"])
    assert res.exit_code == 2 and "--trim-reference" in res.output
    for reference in ("known_faults", "programmed"):
        with pytest.raises(SpecError, match="applies only with --readout-trim"):
            reproduce("partition-ovf", tmp_path, quick=True, ir_drop=True, trim_reference=reference)
    with pytest.raises(SpecError, match="unknown trim reference 'faults'; one of programmed, known_faults"):
        reproduce("partition-ovf", tmp_path, quick=True, ir_drop=True, readout_trim="layer", trim_reference="faults")
    assert not any(tmp_path.iterdir())  # refused before any work


def test_default_folders_name_the_data_set_array_and_trim():
    from cosim.layers.config import ReadoutTrim, TrimReference
    from cosim.reproduce import folder_suffix

    assert folder_suffix("mnist", False, False) == ""
    assert folder_suffix("mnist", True, False) == "-irdrop"
    assert folder_suffix("fashion-mnist", True, True, ReadoutTrim.COLUMN) == "-fashion-mnist-irdrop-columntrim-quick"
    assert folder_suffix("mnist", True, False, ReadoutTrim.LAYER, TrimReference.KNOWN_FAULTS) == (
        "-irdrop-layertrim-knownfaults")
    assert folder_suffix("fashion-mnist", False, False, ReadoutTrim.LAYER) == "-fashion-mnist-layertrim"


@pytest.mark.parametrize("experiment", ["paper000-table3", "paper002-fig3", "paper001-dva-dfp", "partition-ovf"])
def test_readout_trim_reaches_every_ir_drop_run_and_no_ideal_one(experiment):
    """A trimmed plan is the untrimmed one with readout_trim added to exactly the runs on the
    circuit (the IR-drop evaluations and on-chip IR-drop runs), each a valid configuration."""
    from pathlib import Path

    from cosim.layers.config import ReadoutTrim, TrimReference
    from cosim.plans import FULL, IR_DROP, ExperimentName, plan
    from cosim.runconfig import Experiment
    from cosim.tables import ir_name

    name = ExperimentName(experiment)
    plain = plan(name, FULL[name], "", True, Path("ir"), Path("ideal"))
    trimmed = plan(name, FULL[name], "", True, Path("ir"), Path("ideal"), ReadoutTrim.COLUMN)
    known = plan(name, FULL[name], "", True, Path("ir"), Path("ideal"), ReadoutTrim.COLUMN, TrimReference.KNOWN_FAULTS)
    assert [(r.name, r.keys, r.home) for r in plain] == [(r.name, r.keys, r.home) for r in trimmed] == [
        (r.name, r.keys, r.home) for r in known]
    on_circuit = 0
    for a, b, c in zip(plain, trimmed, known):
        hw = a.sections.get("hardware", {})
        if hw.get("array_model") == "surrogate":
            on_circuit += 1
            assert b.sections == a.sections | {"hardware": hw | {"readout_trim": "column"}}
            assert c.sections == a.sections | {"hardware": hw | {"readout_trim": "column", "trim_reference": "known_faults"}}
            assert Experiment.from_sections(b.sections).hw.readout_trim is ReadoutTrim.COLUMN
            assert Experiment.from_sections(c.sections).hw.trim_reference is TrimReference.KNOWN_FAULTS
        else:
            assert b.sections == c.sections == a.sections
    assert on_circuit > 0
    # Plots name the trim beside the IR-drop array; the ideal array's runs name neither.
    assert (ir_name(plain), ir_name(trimmed), ir_name(known)) == (
        "IR drop", "IR drop (column trim)", "IR drop (column trim, known faults)")
    assert ir_name([r for r in trimmed if r.sections.get("hardware", {}).get("array_model") != "surrogate"]) == "IR drop"
    # The trim on the ideal array: the same runs scored apart, with the trim in place of the circuit
    # (paper 001 adds on/off 2, outside the surrogate's range), and the same plain ideal runs.
    control = plan(name, FULL[name], "", False, Path("ir"), Path("ideal"), ReadoutTrim.COLUMN)
    assert ir_name(control) == "ideal array (column trim)"

    def scored_apart(runs: list, drop: dict) -> list:
        return sorted((r.name.removesuffix("-irdrop").removesuffix("-trimmed"), str(r.home), json.dumps(
            {k: v for k, v in r.sections.items() if k != "hardware"} | {"hardware": {
                k: v for k, v in r.sections["hardware"].items() if k not in drop}}, sort_keys=True))
            for r in runs if "readout_trim" in r.sections.get("hardware", {}) and r.keys.get("ratio") != 2.0)

    assert scored_apart(control, {}) == scored_apart(trimmed, IR_DROP)
    assert all("array_model" not in r.sections["hardware"] for r in control if "readout_trim" in r.sections.get(
        "hardware", {}))

    def plain_ideal(runs: list) -> list:
        return [(r.name, r.sections) for r in runs if "readout_trim" not in r.sections.get("hardware", {})
                and r.keys.get("ratio") != 2.0]

    assert plain_ideal(control) == plain_ideal(trimmed)
    if name is ExperimentName.PAPER001_DVA_DFP:
        assert {r.keys["ratio"] for r in control if r.keys.get("array") == "trimmed"} == {2.0, 10.0, 100.0}


def test_ir_drop_plans_stay_inside_the_calibrated_range_and_point_at_the_ideal_models():
    from pathlib import Path

    from cosim.plans import FULL, IR_DROP, ExperimentName, plan

    name = ExperimentName.PAPER001_DVA_DFP
    runs = plan(name, FULL[name], "", True, Path("ir"), Path("ideal"))
    twins = [r for r in runs if r.keys.get("array") == "irdrop"]
    ideal = {r.name: r for r in runs if "array" not in r.keys and "role" not in r.keys}
    assert {r.keys["ratio"] for r in twins} == {10.0, 100.0}  # ratio 2 lies outside 10..1000
    assert len(twins) == len(ideal) == 2 * 3 * 2 * 2
    for r in twins:
        source = ideal[r.name.removesuffix("-irdrop")]
        assert r.home == Path("ir") and source.home == Path("ideal")
        assert r.sections["hardware"] == source.sections["hardware"] | IR_DROP
        assert r.sections["run"]["pretrained"] == source.sections["run"]["pretrained"]
        assert r.sections["run"]["pretrained"].startswith("ideal/runs/lenet5-train-")
    assert not any(r.keys.get("sigma") == 0 for r in runs if "sigma" in r.keys)


def test_quick_ir_drop_partition_ovf_pairs_the_ideal_students(tiny_mnist, tmp_path):
    """partition-ovf's students, too, retrain through the ideal array (so the ideal table's are
    loaded); its IR-drop table gets a Δ part pairing each student's chip with the ideal table's."""
    ideal, out = tmp_path / "ideal", tmp_path / "irdrop"
    args = ["reproduce", "partition-ovf", "--quick", "--data-dir", str(tiny_mnist)]
    assert runner.invoke(app, args + ["--out", str(ideal)]).exit_code == 0
    res = runner.invoke(app, args + ["--ir-drop", "--out", str(out), "--ideal-out", str(ideal)])
    assert res.exit_code == 0, res.output
    run = "lenet5-sigma0.3-partition_ovf"
    assert json.loads((out / "runs" / run / "chips.json").read_text())["1"]["student_from"] == str(ideal / "runs" / run)
    a, b = (torch.load(d / "runs" / run / "students" / "chip-1.pt", weights_only=True)["state_dict"] for d in (ideal, out))
    assert all(torch.equal(a[k], b[k]) for k in a)
    table = (out / "table.md").read_text()
    body = [line for line in table.split("paired per chip")[1].splitlines() if line.startswith("| lenet5")]
    deltas = []
    for method in ("partition", "partition_ovf"):
        mine, twin = (json.loads((d / "runs" / f"lenet5-sigma0.3-{method}" / "metrics.json").read_text())["hardware"]
                      for d in (out, ideal))
        assert mine["n_chips"] == twin["n_chips"] == 2
        deltas.append(100 * sum(y - x for x, y in zip(twin["accuracies"], mine["accuracies"])) / 2)
    cells = [c.strip() for c in body[0].split("|")[1:-1]]
    assert len(body) == 1 and cells[:3] == ["lenet5", "0.3", "2"]
    assert cells[3].startswith(f"{deltas[0]:+.2f} ±") and cells[4].startswith(f"{deltas[1]:+.2f} ±")
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(k for k in summary["runs"] if k.endswith("@ideal")) == [
        "lenet5-sigma0.3-partition@ideal", "lenet5-sigma0.3-partition_ovf@ideal"]


def test_bar_plots_zoom_to_every_bar_and_the_target_and_skip_missing_bars(tmp_path):
    from cosim.plots import bar_range, plot_bars

    series = {"a": ([98.0, math.nan], [0.5, math.nan]), "b": ([99.5, 97.0], [0.2, 0.1])}
    lo, hi = bar_range(series)
    assert (lo, hi) == pytest.approx((96.9 - 0.28, 99.7 + 0.28))  # 96.9 … 99.7, padded by 10 % of 2.8
    assert bar_range(series, target=95.0) == pytest.approx((95.0 - 0.47, 99.7 + 0.47))
    assert bar_range({"a": ([math.nan], [math.nan])}) is None
    assert bar_range({"a": ([50.0], [0.0])}) == pytest.approx((49.9, 50.1))  # a flat span still gets an axis
    plot_bars(["x", "y"], series, tmp_path / "bars.png", "recovery %", "t", target=99.0)
    assert (tmp_path / "bars.png").read_bytes()[:4] == b"\x89PNG"


def test_sigma_override_runs_only_those_sigmas_and_the_table_keeps_every_sigma_on_disk(tiny_mnist, tmp_path):
    """``--sigma`` picks the σ of a sweep; runs of other σ already in the folder stay in its table."""
    from pathlib import Path

    from cosim.plans import FULL, ExperimentName, plan
    from cosim.reproduce import Overrides

    o = Overrides(sigmas=(0.3, 0.1, 0.3))
    b = o.apply(FULL[ExperimentName.PAPER002_FIG3])
    assert b.sigmas == (0.1, 0.3) and o.flags() == " --sigma 0.1 --sigma 0.3"
    assert {r.keys["sigma"] for r in plan(ExperimentName.PAPER002_FIG3, b, "", False, Path("x")) if "sigma" in r.keys} \
        == {0.1, 0.3}
    out = tmp_path / "p001"
    args = ["reproduce", "paper001-dva-dfp", "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)]
    for bad, message in ((["--sigma", "0"], "studies σ > 0 only"), (["--sigma", "inf"], "finite number")):
        res = runner.invoke(app, args + bad)
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["reproduce", "paper000-table3", "--quick", "--sigma", "0.2", "--out", str(tmp_path / "t3")])
    assert res.exit_code == 1 and "has no σ sweep" in res.output and not (tmp_path / "t3").exists()
    assert not out.exists()

    def sigmas_in_table() -> list[str]:
        return [line.split("|")[3].strip() for line in (out / "table.md").read_text().splitlines()
                if line.startswith("| lenet5")]

    res = runner.invoke(app, args + ["--sigma", "0.2"])
    assert res.exit_code == 0, res.output
    assert sigmas_in_table() == ["0.2"] and not list((out / "runs").glob("*sigma0.3*"))
    assert json.loads((out / "summary.json").read_text())["calls"][0]["command"] == (
        f"cosim reproduce paper001-dva-dfp --quick --data-dir {tiny_mnist} --sigma 0.2 --out {out}")
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*sigma0.2*/metrics.json")}
    res = runner.invoke(app, args)  # the quick sweep's own σ (0.3), beside the 0.2 runs already there
    assert res.exit_code == 0, res.output
    assert sigmas_in_table() == ["0.2", "0.3"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the σ 0.2 runs were not redone
    # A σ whose runs are not all finished (a --sigma call stopped half-way) is left out of the table.
    next(iter(stamps)).unlink()
    res = runner.invoke(app, args + ["--sigma", "0.3"])
    assert res.exit_code == 0, res.output
    assert sigmas_in_table() == ["0.3"]
    # The table covers every network in the folder, also one that paper 001 does not name (the MLP)
    # after a later call for another network.
    for extra in (["--model", "mlp"], []):
        res = runner.invoke(app, args + ["--sigma", "0.3"] + extra)
        assert res.exit_code == 0, res.output
        rows = [line for line in (out / "table.md").read_text().splitlines() if line.startswith(("| lenet5", "| mlp"))]
        assert [r.split("|")[1].strip() for r in rows] == ["lenet5", "mlp"]
        assert "; networks in this table: lenet5, mlp.\n" in (out / "table.md").read_text()
    # A model file that is not committed (VGG-8's are not) is trained again, from its seeds, when a
    # new σ needs it; before, the call stopped at "model file ... does not exist".
    vanilla = out / "runs" / "lenet5-train-vanilla"
    weights = torch.load(vanilla / "model.pt", weights_only=True)["state_dict"]
    (vanilla / "model.pt").unlink()
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/metrics.json")}
    res = runner.invoke(app, args + ["--sigma", "0.3"])  # finished σ: nothing needs the model, nothing is redone
    assert res.exit_code == 0, res.output
    assert not (vanilla / "model.pt").exists()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    res = runner.invoke(app, args + ["--sigma", "0.4"])
    assert res.exit_code == 0, res.output
    again = torch.load(vanilla / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert (vanilla / "metrics.json").exists() and sigmas_in_table() == ["0.3", "0.4"]


def test_cells_of_other_sigmas_are_scored_again_when_their_model_is_trained_again(tiny_mnist, tmp_path, monkeypatch):
    """A --sigma call on a checkout without the vanilla model's weights trains it again; where that
    gives other weights (another machine), every vanilla cell of the other σ in the folder is
    scored again, so the table sets no evaluation of the old model beside the new one's. The
    models trained for their own σ (GNI, OVF) are left as they are."""
    import cosim.experiment

    out = tmp_path / "p002"
    args = ["reproduce", "paper002-fig3", "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)]
    assert runner.invoke(app, args).exit_code == 0  # σ_d 0 and 0.3
    runs = out / "runs"
    own = {p: p.stat().st_mtime_ns for p in runs.glob("lenet5-sigma0.3-[go]*/metrics.json")}
    assert len(own) == 2
    real_fit = cosim.experiment.fit

    def elsewhere(*a, **k):  # another machine's rounding: the weights come out a little different
        result = real_fit(*a, **k)
        with torch.no_grad():
            next(result.model.parameters()).view(-1)[0] += 0.5
        return result

    monkeypatch.setattr(cosim.experiment, "fit", elsewhere)
    (runs / "lenet5-vanilla" / "model.pt").unlink()
    res = runner.invoke(app, args + ["--sigma", "0.2"])
    assert res.exit_code == 0, res.output
    new = json.loads((runs / "lenet5-vanilla" / "trained.json").read_text())["weights_sha256"]
    scored = {p.parent.name: json.loads(p.read_text()).get("pretrained_sha256") for p in runs.glob("*/metrics.json")}
    vanilla_cells = {n for n in scored if n.endswith("-vanilla") and "sigma" in n} | {
        n for n in scored if n.startswith("lenet5-sigma0-")}
    assert vanilla_cells == {"lenet5-sigma0-vanilla", "lenet5-sigma0-gni", "lenet5-sigma0-ovf",
                             "lenet5-sigma0.2-vanilla", "lenet5-sigma0.3-vanilla"}
    assert all(scored[n] == new for n in vanilla_cells)
    assert {p: p.stat().st_mtime_ns for p in own} == own
    rows = [line.split("|")[2].strip() for line in (out / "table.md").read_text().splitlines()
            if line.startswith("| lenet5")]
    assert rows == ["0", "0.2", "0.3"]


def test_paper002_table_leaves_out_a_sigma_whose_runs_are_not_all_finished(tmp_path):
    """A --sigma call stopped half-way leaves a σ with some methods only: no row, no crash."""
    from cosim.plans import RunPlan
    from cosim.tables import table_paper002

    def hw(acc: list[float]) -> dict:
        return {"hardware": {"accuracies": acc, "mean": sum(acc) / len(acc), "ci95": 0.01, "ekl": 0.1,
                             "n_images": 100}}

    runs, metrics = [], {}
    for sigma, methods in ((0.2, ("vanilla", "gni", "ovf")), (0.4, ("vanilla", "gni"))):
        for m in methods:
            runs.append(RunPlan(f"m-sigma{sigma:g}-{m}", {}, {"model": "m", "sigma": sigma, "method": m}))
            metrics[runs[-1].name] = hw([0.5, 0.7] if m == "ovf" else [0.4, 0.5])
    body = [line for line in table_paper002(runs, metrics, tmp_path).splitlines() if line.startswith("| m |")]
    assert len(body) == 1 and body[0].startswith("| m | 0.2 | 45.00 ± 1.00 | 45.00 ± 1.00 | 60.00 ± 1.00 (—) | +15.00 ±")


def test_beta_fixes_ovf_beta_for_every_sigma_without_a_search(tiny_mnist, tmp_path):
    """``--beta`` (paper 002 only) trains OVF with that β at every σ_d > 0, no β search; the
    table names it as fixed, and a folder whose OVF runs searched β refuses it."""
    from pathlib import Path

    from cosim.plans import QUICK, ExperimentName, plan
    from cosim.reproduce import Overrides

    o = Overrides(beta=1e-3)
    ovf = {r.keys["sigma"]: r for r in plan(ExperimentName.PAPER002_FIG3, o.apply(QUICK), "", False, Path("x"))
           if r.keys.get("method") == "ovf"}
    assert sorted(ovf) == [0.0, 0.3] and o.flags() == " --beta 0.001"
    assert ovf[0.3].sections["train"]["beta"] == 1e-3 and ovf[0.3].sections["run"]["beta_search"] is False
    assert "beta" not in ovf[0.0].sections["train"]  # σ_d = 0: the vanilla model, no OVF training
    searched = next(r for r in plan(ExperimentName.PAPER002_FIG3, QUICK, "", False, Path("x"))
                    if r.keys.get("method") == "ovf" and r.keys["sigma"] == 0.3)
    assert searched.sections["run"]["beta_search"] is True and "beta" not in searched.sections["train"]

    out = tmp_path / "p002"
    args = ["reproduce", "paper002-fig3", "--quick", "--data-dir", str(tiny_mnist), "--sigma", "0.3", "--out", str(out)]
    for bad, message in ((["--beta", "0"], "--beta must be a finite number > 0"),
                         (["--beta", "nan"], "--beta must be a finite number > 0")):
        res = runner.invoke(app, args + bad)
        assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = runner.invoke(app, ["reproduce", "paper000-table3", "--quick", "--beta", "0.01", "--out", str(tmp_path / "t3")])
    assert res.exit_code == 1 and "has no β to set" in res.output and not (tmp_path / "t3").exists()

    res = runner.invoke(app, args + ["--beta", "0.001"])
    assert res.exit_code == 0, res.output
    run = out / "runs" / "lenet5-sigma0.3-ovf"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["beta"] == 1e-3 and "beta_search" not in metrics  # trained with it, nothing searched
    assert "beta = 0.001" in (run / "config.toml").read_text()
    row = next(line for line in (out / "table.md").read_text().splitlines() if line.startswith("| lenet5 | 0.3 "))
    assert "(0.001, fixed)" in row
    assert json.loads((out / "summary.json").read_text())["calls"][-1]["command"].endswith(f"--beta 0.001 --out {out}")
    # The same folder without --beta would mix a searched β into a fixed-β sweep: refused, nothing redone.
    stamp = (run / "metrics.json").stat().st_mtime_ns
    res = runner.invoke(app, args)
    assert res.exit_code == 1 and "holds a run with another configuration" in res.output and "Traceback" not in res.output
    assert (run / "metrics.json").stat().st_mtime_ns == stamp


def test_paper000_runs_resnet18_unchanged(tiny_mnist, tmp_path):
    """ResNet-18, one of paper 000's two rows no session ran at full size (no accelerator lent),
    goes through the same command end to end: teacher, both presets, every method, and partition
    retraining block by block over the network's own four blocks (eq. 5). (VGG-16 takes the same
    path; its blocks are checked in test_train.)"""
    out = tmp_path / "t2"
    args = ["reproduce", "paper000-table2", "--quick", "--data-dir", str(tiny_mnist), "--out", str(out),
            "--model", "resnet18", "--chips", "1", "--train-limit", "64", "--retrain-limit", "64", "--test-limit", "32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [line.split("|")[1:-1] for line in (out / "table.md").read_text().splitlines()
            if line.startswith("| resnet18 ")]
    assert sorted(r[1].strip() for r in rows) == ["differential_slices", "one_cell"]
    assert all("±" in cell for r in rows for cell in r[4:])  # unretrained and all three methods scored
    chip = json.loads((out / "runs" / "resnet18-one_cell-partition" / "chips.json").read_text())["0"]
    assert [h["phase"] for h in chip["history"]] == ["block 0 (modules 0-4)", "block 1 (modules 5-6)",
                                                      "block 2 (modules 7-8)", "block 3 (modules 9-13)"]
