"""``cosim reproduce --quick`` end to end on tiny IDX data: every experiment, its table and files."""

import json

import pytest
from typer.testing import CliRunner

from cosim.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("experiment, rows", [("paper000-table3", 2), ("paper002-fig3", 2), ("paper001-dva-dfp", 6),
                                                     ("partition-ovf", 1)])
def test_quick_experiment_writes_its_table(tiny_mnist, tmp_path, experiment, rows):
    out = tmp_path / experiment
    res = runner.invoke(app, ["reproduce", experiment, "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = (out / "table.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| lenet5")]
    assert len(body) == rows
    assert "±" in body[0] and f"cosim reproduce {experiment} --quick" in table
    summary = json.loads((out / "summary.json").read_text())
    for run in summary["runs"].values():
        metrics = json.loads((out / run["metrics_file"]).read_text())
        assert 0.0 <= metrics["hardware"]["mean"] <= 1.0
    if experiment in ("paper002-fig3", "partition-ovf"):
        assert (out / "lenet5-accuracy.png").read_bytes()[:4] == b"\x89PNG"
    if experiment == "partition-ovf":  # the paired column is the mean per-chip difference
        acc = {m: json.loads((out / "runs" / f"lenet5-sigma0.3-{m}" / "metrics.json").read_text())["hardware"]["accuracies"]
               for m in ("partition", "partition_ovf")}
        expected = 100 * sum(b - a for a, b in zip(acc["partition"], acc["partition_ovf"])) / len(acc["partition"])
        assert body[0].split("|")[-2].strip().startswith(f"{expected:+.2f} ±")
    # A second call resumes: nothing is retrained, the table is the same.
    again = runner.invoke(app, ["reproduce", experiment, "--quick", "--data-dir", str(tiny_mnist), "--out", str(out)])
    assert again.exit_code == 0
    assert [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| lenet5")] == body


def test_reproduce_list_and_unknown():
    res = runner.invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0 and "paper000-table2" in res.output and "paper001-dva-dfp" in res.output
    res = runner.invoke(app, ["reproduce", "paper999"])
    assert res.exit_code == 1 and "unknown experiment 'paper999'" in res.output


def test_overrides_reach_every_run_and_the_command():
    from pathlib import Path

    from cosim.reproduce import FULL, PAPER_MODELS, QUICK, ExperimentName, Overrides, plan

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
    assert Overrides().apply(QUICK) == QUICK and Overrides().flags() == ""


def test_quick_ir_drop_table_evaluates_on_the_calibrated_surrogate(tiny_mnist, tmp_path):
    out = tmp_path / "irdrop"
    res = runner.invoke(app, ["reproduce", "paper000-table3", "--quick", "--ir-drop", "--data-dir", str(tiny_mnist),
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    body = [line for line in (out / "table.md").read_text().splitlines() if line.startswith("| lenet5")]
    assert len(body) == 1 and "| differential_slices |" in body[0]  # no circuit for the one-cell preset
    config = (out / "runs" / "lenet5-differential_slices-partition" / "config.toml").read_text()
    assert 'array_model = "surrogate"' in config and "train_on_ideal_array = true" in config
    metrics = json.loads((out / "runs" / "lenet5-differential_slices-partition" / "metrics.json").read_text())
    assert 0.0 <= metrics["hardware"]["mean"] <= 1.0 and metrics["hardware"]["n_chips"] == 2
