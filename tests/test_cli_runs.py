"""``cosim train`` / ``evaluate`` / ``data check`` end to end on tiny IDX data, and their bad input.
Resuming, growing and redoing runs: ``test_cli_resume.py``."""

import json

import pytest
from conftest import invoke


def test_train_writes_a_complete_run(teacher_run):
    metrics = json.loads((teacher_run / "metrics.json").read_text())
    assert metrics["digital_accuracy"] > 0.9 and metrics["hardware"]["n_chips"] == 3
    assert metrics["hardware"]["mean"] <= metrics["digital_accuracy"] + 0.02
    assert metrics["command"] == f"cosim train --config {teacher_run}/config.toml --out {teacher_run}"
    for name in ("config.toml", "model.pt", "loss.png", "accuracy_per_chip.png"):
        assert (teacher_run / name).stat().st_size > 0
    assert (teacher_run / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert 'p_sa1 = 0.05' in (teacher_run / "config.toml").read_text()


def test_a_finished_run_is_returned_as_it_is(teacher_run, tiny_mnist, monkeypatch):
    before = (teacher_run / "metrics.json").read_bytes()  # holds wall_s: any re-run would change it
    res = invoke("train", "--config", teacher_run / "config.toml", "--out", teacher_run)
    assert res.exit_code == 0, res.output
    assert (teacher_run / "metrics.json").read_bytes() == before
    # The same command with the data folder spelt relative to the working directory: the same run.
    config = (teacher_run / "config.toml").read_text()
    monkeypatch.chdir(tiny_mnist.parent)
    res = invoke("train", "--out", teacher_run, "--data-dir", tiny_mnist.name, "--model", "lenet5", "--epochs", 2,
                 "--eval-chips", 3, "--set", "hardware.p_sa1=0.05")
    assert res.exit_code == 0, res.output
    assert (teacher_run / "metrics.json").read_bytes() == before
    assert (teacher_run / "config.toml").read_text() == config  # keeps its own spelling


def test_onchip_retraining_and_evaluate(teacher_run, tiny_mnist, tmp_path):
    out = tmp_path / "masked"
    res = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--method", "masked", "--teacher", teacher_run,
                 "--chips", 2, "--set", "hardware.p_sa1=0.09", "--set", "hardware.p_tf=0.14")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["hardware"]["n_chips"] == 2 and m["unretrained"]["n_chips"] == 2
    assert m["hardware"]["mean"] >= m["unretrained"]["mean"]
    assert sorted(p.name for p in (out / "students").iterdir()) == ["chip-0.pt", "chip-1.pt"]
    assert not list((out / "checkpoints").glob("chip-*.pt"))  # a finished chip's checkpoint is dropped
    # Same command again: both chips are done, nothing is retrained, metrics identical.
    again = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--method", "masked", "--teacher", teacher_run,
                   "--chips", 2, "--set", "hardware.p_sa1=0.09", "--set", "hardware.p_tf=0.14")
    assert again.exit_code == 0, again.output
    assert json.loads((out / "metrics.json").read_text())["hardware"] == m["hardware"]
    res = invoke("evaluate", "--run", teacher_run, "--chips", 4)
    assert res.exit_code == 0, res.output
    plain = json.loads((teacher_run / "evaluation.json").read_text())
    assert plain["n_chips"] == 4 and plain["temperature"] == 1.0
    res = invoke("evaluate", "--run", teacher_run, "--chips", 4, "--temperature", 4, "--out", tmp_path / "t4.json")
    assert res.exit_code == 0, res.output
    hot = json.loads((tmp_path / "t4.json").read_text())
    assert hot["accuracies"] == plain["accuracies"] and hot["ekl"] > plain["ekl"]


def test_evaluate_a_run_that_evaluates_another_runs_model(teacher_run, tiny_mnist, tmp_path):
    """A run with ``run.pretrained`` holds no model.pt; ``evaluate`` uses the model it names."""
    out = tmp_path / "evaluation-only"
    res = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--model", "lenet5", "--eval-chips", 3,
                 "--set", f"run.pretrained={teacher_run}", "--set", "hardware.p_sa1=0.02")
    assert res.exit_code == 0, res.output
    assert not (out / "model.pt").exists()
    own = json.loads((out / "metrics.json").read_text())["hardware"]
    res = invoke("evaluate", "--run", out, "--chips", 3)
    assert res.exit_code == 0, res.output
    again = json.loads((out / "evaluation.json").read_text())
    assert again["accuracies"] == own["accuracies"] and again["hardware_config"]["p_sa1"] == 0.02
    # One chip a pass (less memory): the same chips, the same numbers.
    res = invoke("evaluate", "--run", out, "--chips", 3, "--chips-per-pass", 1, "--out", tmp_path / "one.json")
    assert res.exit_code == 0, res.output
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["accuracies"] == own["accuracies"] and one["ekl"] == pytest.approx(again["ekl"], rel=1e-6)


def test_students_retrain_without_programming_variation_and_meet_it_on_their_chip(teacher_run, tiny_mnist,
                                                                                      tmp_path):
    import torch

    from cosim.data import load_dataset
    from cosim.eval import digital_accuracy
    from cosim.runconfig import Experiment, load_model, read_toml
    from cosim.train import faulty_student

    runs = {}
    for sigma in (0.0, 2.0):
        out = tmp_path / f"prog{sigma:g}"
        res = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--method", "partition_ovf", "--teacher",
                     teacher_run, "--chips", 1, "--set", "train.sigma_d=0.2", "--set", f"hardware.prog_sigma={sigma}",
                     "--set", "run.train_limit=300")
        assert res.exit_code == 0, res.output
        runs[sigma] = out
    a, b = (torch.load(runs[s] / "students" / "chip-0.pt", weights_only=True)["state_dict"] for s in (0.0, 2.0))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same retraining
    exp = Experiment.from_sections(read_toml(runs[2.0] / "config.toml"))
    test = load_dataset("mnist", "test", data_dir=tiny_mnist)
    student = load_model(runs[2.0] / "students" / "chip-0.pt", exp.run.model, (1, 28, 28), 10)
    on_chip = digital_accuracy(faulty_student(student, exp.hw, 0), test)
    done = json.loads((runs[2.0] / "chips.json").read_text())["0"]
    assert done["retrained"] == on_chip
    assert on_chip < json.loads((runs[0.0] / "chips.json").read_text())["0"]["retrained"]  # σ 2 wrecks the chip


def test_students_from_loads_the_same_students_instead_of_retraining(teacher_run, tiny_mnist, tmp_path, monkeypatch):
    """An IR-drop run retrains through the ideal array, so its students are the ideal run's, bit
    for bit; with run.students_from it loads them (no retraining) and scores them the same."""
    import torch

    import cosim.experiment

    common = ["--data-dir", tiny_mnist, "--method", "masked", "--teacher", teacher_run, "--set",
              "hardware.mapping=differential_slices", "--set", "hardware.p_sa1=0.09", "--set", "run.train_limit=300"]
    ir = common + ["--set", "hardware.array_model=surrogate", "--set", "hardware.surrogate_model=device_models/default.h5",
                   "--set", "run.train_on_ideal_array=true"]
    ideal, retrained, loaded = tmp_path / "ideal", tmp_path / "retrained", tmp_path / "loaded"
    assert invoke("train", "--out", ideal, "--chips", 1, *common).exit_code == 0
    res = invoke("train", "--out", retrained, "--chips", 1, *ir)
    assert res.exit_code == 0, res.output
    a, b = (torch.load(d / "students" / "chip-0.pt", weights_only=True)["state_dict"] for d in (ideal, retrained))
    assert all(torch.equal(a[k], b[k]) for k in a)

    fitted = []
    real_fit = cosim.experiment.fit
    monkeypatch.setattr(cosim.experiment, "fit", lambda *a, **k: fitted.append(a[2].chip_seed) or real_fit(*a, **k))
    res = invoke("train", "--out", loaded, "--chips", 1, *ir, "--set", f"run.students_from={ideal}")
    assert res.exit_code == 0, res.output
    mine, theirs = (json.loads((d / "chips.json").read_text())["0"] for d in (loaded, retrained))
    assert not fitted and mine["student_from"] == str(ideal) and mine["retrained"] == theirs["retrained"]
    # Each IR-drop run also scores its student on the ideal array: the ideal run's score, bit for bit.
    on_ideal = json.loads((ideal / "chips.json").read_text())["0"]
    assert "ideal_array" not in on_ideal and mine["ideal_array"] == theirs["ideal_array"] == on_ideal["retrained"]
    assert json.loads((loaded / "metrics.json").read_text())["ideal_array_accuracies"] == [on_ideal["retrained"]]
    # A run finished before runs kept that score is taken up again by the same command, redoing no
    # chip, and scores its chips from their student files.
    chips, metrics = (json.loads((retrained / f).read_text()) for f in ("chips.json", "metrics.json"))
    del chips["0"]["ideal_array"], metrics["ideal_array_accuracies"], metrics["students_loaded"]
    (retrained / "chips.json").write_text(json.dumps(chips))
    (retrained / "metrics.json").write_text(json.dumps(metrics))
    assert invoke("train", "--out", retrained, "--chips", 1, *ir).exit_code == 0
    assert not fitted
    assert json.loads((retrained / "chips.json").read_text())["0"]["ideal_array"] == on_ideal["retrained"]
    assert json.loads((retrained / "metrics.json").read_text())["students_loaded"] == [False]
    # Pointing an existing run at a student source is no change of configuration.
    res = invoke("train", "--out", retrained, "--chips", 1, *ir, "--set", f"run.students_from={ideal}")
    assert res.exit_code == 0, res.output
    # On the ideal array: programming variation plays no part in retraining, so that run's students
    # are the same too; chips the source lacks are retrained.
    res = invoke("train", "--out", tmp_path / "varied", "--chips", 2, *common, "--set", "hardware.prog_sigma=0.3",
                 "--set", f"run.students_from={ideal}")
    assert res.exit_code == 0, res.output
    assert fitted == [1]
    # Students retrained otherwise (another budget) are refused, with nothing retrained.
    res = invoke("train", "--out", tmp_path / "other", "--chips", 2, *ir, "--set", f"run.students_from={ideal}",
                 "--set", "train.epochs=2")
    assert res.exit_code == 1 and "holds students retrained otherwise" in res.output
    assert fitted == [1]


def test_unretrained_scores_are_kept_once_per_teacher_and_hardware(teacher_run, tiny_mnist, tmp_path, monkeypatch):
    """A table's masked, KD and partition runs put the same unretrained teacher on each chip: its
    score is kept in the teacher's folder and read back, bit for bit; other hardware, or an
    unreadable cache, is scored anew."""
    import cosim.experiment

    common = ["--data-dir", tiny_mnist, "--teacher", teacher_run, "--set", "run.train_limit=300"]
    assert invoke("train", "--out", tmp_path / "masked", "--method", "masked", "--chips", 2, *common,
                  "--set", "hardware.p_sa1=0.09").exit_code == 0
    scored = []
    real = cosim.experiment.faulty_student
    monkeypatch.setattr(cosim.experiment, "faulty_student", lambda m, hw, chip: scored.append(chip) or real(m, hw, chip))

    def unretrained(name, *extra):
        res = invoke("train", "--out", tmp_path / name, "--chips", 2, *common, *extra)
        assert res.exit_code == 0, res.output
        return [json.loads((tmp_path / name / "chips.json").read_text())[c]["unretrained"] for c in "01"]

    masked = [json.loads((tmp_path / "masked" / "chips.json").read_text())[c]["unretrained"] for c in "01"]
    assert unretrained("kd", "--method", "kd", "--set", "hardware.p_sa1=0.09") == masked and scored == []
    other = unretrained("other", "--method", "kd", "--set", "hardware.p_sa1=0.3")
    assert scored == [0, 1] and other != masked  # SA1 on 30 % of the cells: another score
    assert len(json.loads((teacher_run / "unretrained.json").read_text())) == 2
    (teacher_run / "unretrained.json").write_text("{")
    assert unretrained("partition", "--method", "partition", "--set", "hardware.p_sa1=0.09") == masked
    assert scored == [0, 1, 0, 1]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--set", "train.epochz=2"], "unknown training key(s) epochz"),
        (["--set", "hardware.p_sa1=1.5"], "p_sa1"),
        (["--set", "run.colour=1"], "unknown run key(s) colour"),
        (["--set", "nonsense"], "is not section.key=value"),
        (["--method", "kd"], "needs run.teacher"),
    ],
)
def test_bad_configuration_one_line(tiny_mnist, tmp_path, extra, fragment):
    res = invoke("train", "--out", tmp_path / "r", "--data-dir", tiny_mnist, *extra)
    assert res.exit_code != 0
    assert fragment in res.output and "Traceback" not in res.output


def test_bad_files_one_line(tiny_mnist, teacher_run, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train\nepochs = 1")
    res = invoke("train", "--out", tmp_path / "r", "--config", cfg)
    assert res.exit_code == 1 and "is not valid TOML" in res.output
    res = invoke("train", "--out", tmp_path / "r2", "--data-dir", tiny_mnist, "--model", "mlp", "--method", "masked",
                 "--teacher", teacher_run)
    assert res.exit_code == 1 and "holds a lenet5 model, not the configured mlp" in res.output
    (tiny_mnist / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")
    res = invoke("data", "check", "--data-dir", tiny_mnist)
    assert res.exit_code == 1 and "fails its checksum" in res.output


def test_ovf_beta_search_picks_the_best_validation_beta(tiny_mnist, tmp_path):
    out = tmp_path / "ovf"
    res = invoke("train", "--out", out, "--data-dir", tiny_mnist, "--model", "mlp", "--method", "ovf", "--epochs", 1,
                 "--eval-chips", 8, "--set", "run.beta_search=true", "--set", "train.sigma_d=0.2",
                 "--set", "hardware.prog_sigma=0.2")
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    search = m["beta_search"]
    assert [r["beta"] for r in search] == [0.1, 0.01, 0.001, 0.0001]
    best = max(search, key=lambda r: r["val_mean"])["beta"]
    assert m["beta"] == best and m["hardware"]["n_chips"] == 8 and m["method"] == "ovf"


