"""``cosim train`` / ``evaluate`` run again: interrupted runs resume, grown runs run only what
they lack, and runs whose source model was trained again since are done again."""

import json
import shutil

import pytest
import torch
from conftest import invoke


def train_again_elsewhere(run, monkeypatch):
    """Train ``run`` again (its ``model.pt`` gone) to weights a little off its first ones, as
    another machine's rounding gives (``fit`` is wrapped to move one weight); its new digest."""
    import cosim.experiment
    from cosim.experiment import Experiment, train_run
    from cosim.runconfig import read_toml

    real_fit = cosim.experiment.fit

    def moved(*a, **k):
        result = real_fit(*a, **k)
        with torch.no_grad():
            next(result.model.parameters()).view(-1)[0] += 0.5
        return result

    with monkeypatch.context() as patch:
        patch.setattr(cosim.experiment, "fit", moved)
        (run / "model.pt").unlink()
        train_run(Experiment.from_sections(read_toml(run / "config.toml")), run, needs_model=True)
    return json.loads((run / "trained.json").read_text())["weights_sha256"]


def test_an_evaluation_of_a_model_trained_again_since_is_done_again(teacher_run, tiny_mnist, tmp_path, monkeypatch):
    """A run that scores another run's model records that model's weights digest. When the source
    is trained again to other weights (a checkout without its weights, on another machine), the
    finished evaluation is stale: the next call scores the new model, and takes none of the old
    model's saved chips. An on-chip run retrains the students its old teacher gave. Records
    written before digests existed are taken as they are."""
    import cosim.experiment
    from cosim.runconfig import load_model, weights_digest

    out = tmp_path / "evaluation-only"
    args = ("train", "--out", out, "--data-dir", tiny_mnist, "--model", "lenet5", "--eval-chips", 3,
            "--set", f"run.pretrained={teacher_run}", "--set", "hardware.p_sa1=0.02")
    assert invoke(*args).exit_code == 0
    first = json.loads((out / "metrics.json").read_text())
    digest = weights_digest(load_model(teacher_run, "lenet5", (1, 28, 28), 10))
    assert json.loads((teacher_run / "trained.json").read_text())["weights_sha256"] == digest
    assert first["pretrained_sha256"] == digest
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert invoke(*args).exit_code == 0 and (out / "metrics.json").stat().st_mtime_ns == stamp  # current: kept
    # An on-chip run retrains its students from the teacher: each chip records the teacher's digest.
    onchip = tmp_path / "masked"
    onchip_args = ("train", "--out", onchip, "--data-dir", tiny_mnist, "--method", "masked", "--teacher", teacher_run,
                   "--chips", 2, "--set", "hardware.p_sa1=0.09")
    assert invoke(*onchip_args).exit_code == 0
    chips = json.loads((onchip / "chips.json").read_text())
    assert [chips[c]["teacher_sha256"] for c in ("0", "1")] == [digest] * 2
    assert json.loads((onchip / "metrics.json").read_text())["teacher_sha256"] == digest

    new = train_again_elsewhere(teacher_run, monkeypatch)
    assert new != digest == first["pretrained_sha256"]
    real_fit, fitted = cosim.experiment.fit, []
    monkeypatch.setattr(cosim.experiment, "fit", lambda *a, **k: fitted.append(a[2].method.value) or real_fit(*a, **k))
    # The old evaluation is dropped, and its chips (kept as a tally when a finished run is redone)
    # are not taken for the new model: every chip is scored again.
    scored = []
    real_evaluate = cosim.experiment.evaluate

    def counting(*a, **k):
        scored.append(len(k["done"].correct))
        return real_evaluate(*a, **k)

    monkeypatch.setattr(cosim.experiment, "evaluate", counting)
    assert invoke(*args).exit_code == 0
    again = json.loads((out / "metrics.json").read_text())
    assert scored == [0] and again["pretrained_sha256"] == new
    fresh = tmp_path / "fresh"  # the same evaluation, from scratch, of the model now on disk
    assert invoke(*(a if a != out else fresh for a in args)).exit_code == 0
    assert json.loads((fresh / "metrics.json").read_text())["hardware"]["accuracies"] == again["hardware"]["accuracies"]

    # The on-chip run's students came from the old teacher: both chips are retrained from the new,
    # and then it is current.
    fitted.clear()
    assert invoke(*onchip_args).exit_code == 0 and fitted == ["masked", "masked"]
    chips = json.loads((onchip / "chips.json").read_text())
    assert [chips[c]["teacher_sha256"] for c in ("0", "1")] == [new] * 2
    fitted.clear()
    assert invoke(*onchip_args).exit_code == 0 and fitted == []

    # Records without digests (written before them) on both sides: the evaluation is taken as it is.
    for path, key in ((teacher_run / "trained.json", "weights_sha256"), (teacher_run / "metrics.json", "weights_sha256"),
                      (out / "metrics.json", "pretrained_sha256")):
        record = json.loads(path.read_text())
        record.pop(key, None)
        path.write_text(json.dumps(record))
    stamp = (out / "metrics.json").stat().st_mtime_ns
    scored.clear()
    assert invoke(*args).exit_code == 0 and scored == [] and (out / "metrics.json").stat().st_mtime_ns == stamp


def test_a_chip_interrupted_before_its_teacher_was_trained_again_starts_over(teacher_run, tiny_mnist, tmp_path,
                                                                             monkeypatch):
    """A chip's retraining, interrupted after its first epoch, leaves a checkpoint. If the teacher
    is then trained again to other weights, the next call must not resume the old teacher's
    student: the chip starts over from the new teacher and ends as a fresh run from it does."""
    import cosim.experiment
    from cosim.report import NullReporter

    def args(out):
        return ("train", "--out", out, "--data-dir", tiny_mnist, "--method", "masked", "--teacher", teacher_run,
                "--chips", 1, "--epochs", 2, "--set", "hardware.p_sa1=0.09", "--set", "run.train_limit=300")

    class StopAtSecondEpoch(NullReporter):
        epochs = 0

        def start(self, total, description):
            self.epochs += 1
            if self.epochs == 2:
                raise KeyboardInterrupt

    real_fit, results = cosim.experiment.fit, []
    monkeypatch.setattr(cosim.experiment, "fit", lambda *a, **k: real_fit(*a, **k | {"reporter": StopAtSecondEpoch()}))
    out = tmp_path / "masked"
    assert invoke(*args(out)).exit_code != 0
    [old_checkpoint] = (out / "checkpoints").glob("chip-0*.pt")  # after epoch 1 of 2

    monkeypatch.setattr(cosim.experiment, "fit", real_fit)
    train_again_elsewhere(teacher_run, monkeypatch)

    def recording(*a, **k):
        results.append(real_fit(*a, **k))
        return results[-1]

    monkeypatch.setattr(cosim.experiment, "fit", recording)
    res = invoke(*args(out))
    assert res.exit_code == 0, res.output
    assert [r.resumed_from for r in results] == [None] and not old_checkpoint.exists()
    fresh = tmp_path / "fresh"
    assert invoke(*args(fresh)).exit_code == 0
    resumed, anew = (json.loads((d / "chips.json").read_text())["0"] for d in (out, fresh))
    assert resumed["history"] == anew["history"] and resumed["retrained"] == anew["retrained"]
    assert resumed["teacher_sha256"] == json.loads((teacher_run / "trained.json").read_text())["weights_sha256"]
    assert not list((out / "checkpoints").glob("chip-*.pt"))


def test_a_grown_run_interrupted_is_not_taken_for_finished(teacher_run, tiny_mnist, tmp_path, monkeypatch):
    """Growing a finished run to more chips writes the new configuration first; interrupted
    there, the next call must finish the missing chip, not return the old chips' metrics."""
    import cosim.experiment

    args = ["train", "--out", tmp_path / "masked", "--data-dir", tiny_mnist, "--method", "masked", "--teacher",
            teacher_run, "--set", "hardware.p_sa1=0.09", "--set", "run.train_limit=300"]
    assert invoke(*args, "--chips", 1).exit_code == 0

    real_fit, calls = cosim.experiment.fit, []

    def interrupted_once(*a, **k):
        calls.append(a[2].chip_seed)
        if len(calls) == 1:
            raise RuntimeError("interrupted")
        return real_fit(*a, **k)

    monkeypatch.setattr(cosim.experiment, "fit", interrupted_once)
    assert invoke(*args, "--chips", 2).exit_code != 0
    res = invoke(*args, "--chips", 2)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "masked" / "metrics.json").read_text())
    assert m["hardware"]["n_chips"] == 2 and m["unretrained"]["n_chips"] == 2
    assert calls == [1, 1]  # chip 0 was kept, chip 1 retrained after the interruption


def test_an_interrupted_beta_search_resumes_without_its_checkpoints(tiny_mnist, tmp_path, monkeypatch):
    """Scored β candidates survive in beta_search.json: a resumed search (checkpoints deleted, as
    on a fresh checkout of committed results) trains only the candidates left and ends as an
    uninterrupted search does."""
    import cosim.experiment

    def args(out):
        return ("train", "--out", out, "--data-dir", tiny_mnist, "--model", "mlp", "--method", "ovf", "--epochs", 1,
                "--eval-chips", 2, "--set", "run.beta_search=true", "--set", "run.beta_search_chips=2",
                "--set", "train.sigma_d=0.2", "--set", "hardware.prog_sigma=0.2")

    whole = tmp_path / "whole"
    assert invoke(*args(whole)).exit_code == 0
    expected = json.loads((whole / "metrics.json").read_text())
    assert not (whole / "beta_search.json").exists()  # trained.json holds the search once it is over

    out = tmp_path / "resumed"
    real_evaluate, scored = cosim.experiment.evaluate, []

    def stop_at_third(*a, **k):
        if len(scored) == 2:
            raise KeyboardInterrupt
        scored.append(1)
        return real_evaluate(*a, **k)

    monkeypatch.setattr(cosim.experiment, "evaluate", stop_at_third)
    assert invoke(*args(out)).exit_code != 0
    saved = json.loads((out / "beta_search.json").read_text())
    assert saved["encoding-type"] == "cosim-beta-search" and [r["beta"] for r in saved["results"]] == [0.1, 0.01]
    shutil.rmtree(out / "checkpoints")
    monkeypatch.setattr(cosim.experiment, "evaluate", real_evaluate)
    real_fit, fitted = cosim.experiment.fit, []

    def counting_fit(model, data, cfg, *a, **k):
        fitted.append((data.name, cfg.beta))
        return real_fit(model, data, cfg, *a, **k)

    monkeypatch.setattr(cosim.experiment, "fit", counting_fit)
    res = invoke(*args(out))
    assert res.exit_code == 0, res.output
    assert [b for name, b in fitted if name == "search-train"] == [0.001, 0.0001]  # the two left, no more
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["beta_search"] == expected["beta_search"] and resumed["beta"] == expected["beta"]
    assert resumed["hardware"]["accuracies"] == expected["hardware"]["accuracies"]

    # An evaluation interrupted in another checkout (trained.json committed; model.pt, checkpoints
    # and the finished metrics not): the model is trained again with the β its search chose, and
    # the search is not run again.
    (out / "model.pt").unlink()
    (out / "metrics.json").unlink()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    fitted.clear()
    res = invoke(*args(out))
    assert res.exit_code == 0, res.output
    assert [b for _, b in fitted] == [expected["beta"]] and (out / "model.pt").exists()
    again = json.loads((out / "metrics.json").read_text())
    assert again["beta_search"] == expected["beta_search"] and again["beta"] == expected["beta"]

    # A finished run of a fresh checkout (metrics.json and trained.json committed, model.pt not)
    # whose model another run loads (the IR-drop twin of `cosim reproduce --ir-drop`): trained
    # again with the β its search chose, the same weights from the same seeds, no search again.
    from cosim.experiment import Experiment, train_run
    from cosim.runconfig import read_toml

    weights = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    (out / "model.pt").unlink()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    fitted.clear()
    metrics = train_run(Experiment.from_sections(read_toml(out / "config.toml")), out, needs_model=True)
    assert [b for _, b in fitted] == [expected["beta"]]
    retrained = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(weights[k], retrained[k]) for k in weights)
    assert metrics["beta_search"] == expected["beta_search"]
    assert metrics["hardware"]["accuracies"] == again["hardware"]["accuracies"]

    # A record of another configuration is not taken; one in an unknown format is refused.
    other = tmp_path / "other"
    (other).mkdir()
    (other / "beta_search.json").write_text(json.dumps(saved | {"config": {"train": {"epochs": 9}}}))
    fitted.clear()
    assert invoke(*args(other)).exit_code == 0
    assert [b for name, b in fitted if name == "search-train"] == [0.1, 0.01, 0.001, 0.0001]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "beta_search.json").write_text(json.dumps({"encoding-type": "something-else", "encoding-version": 1}))
    res = invoke(*args(bad))
    assert res.exit_code == 1 and "is not a β search record" in res.output and "Traceback" not in res.output


def test_more_evaluation_chips_reevaluate_the_trained_model_without_retraining(tiny_mnist, tmp_path, monkeypatch):
    import cosim.experiment

    out = tmp_path / "ovf"
    args = ("train", "--out", out, "--data-dir", tiny_mnist, "--model", "mlp", "--method", "ovf", "--epochs", 1,
            "--set", "run.beta_search=true", "--set", "run.beta_search_chips=2", "--set", "train.sigma_d=0.2",
            "--set", "hardware.prog_sigma=0.2", "--eval-chips")
    assert invoke(*args, 3).exit_code == 0
    first = json.loads((out / "metrics.json").read_text())
    model = (out / "model.pt").read_bytes()
    fitted = []
    monkeypatch.setattr(cosim.experiment, "fit", lambda *a, **k: fitted.append(1))  # any training fails the test
    res = invoke(*args, 5)
    assert res.exit_code == 0, res.output
    grown = json.loads((out / "metrics.json").read_text())
    assert fitted == [] and (out / "model.pt").read_bytes() == model
    assert grown["hardware"]["n_chips"] == 5 and grown["hardware"]["accuracies"][:3] == first["hardware"]["accuracies"]
    for key in ("beta", "beta_search", "history"):
        assert grown[key] == first[key]

    # A run trained before trained.json existed: its metrics keep the training's record, even
    # when the re-evaluation is interrupted after they were dropped.
    (out / "trained.json").unlink()
    real_evaluate = cosim.experiment.evaluate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cosim.experiment, "evaluate", interrupted)
    assert invoke(*args, 7).exit_code != 0 and not (out / "metrics.json").exists()
    monkeypatch.setattr(cosim.experiment, "evaluate", real_evaluate)
    res = invoke(*args, 7)
    assert res.exit_code == 0, res.output
    regrown = json.loads((out / "metrics.json").read_text())
    assert fitted == [] and regrown["hardware"]["accuracies"][:5] == grown["hardware"]["accuracies"]
    for key in ("beta", "beta_search", "history"):
        assert regrown[key] == first[key]
    res = invoke("train", "--config", out / "config.toml", "--out", out, "--set", "train.epochs=2")
    assert res.exit_code == 1 and "another configuration (train.epochs: 1 → 2)" in res.output


def test_more_evaluation_chips_run_only_the_new_chips_and_an_interrupted_evaluation_resumes(
        tiny_mnist, tmp_path, monkeypatch):
    import cosim.eval

    held = []
    real_hold = cosim.eval.hold_chips

    def hold(model, n, first=0):
        held.append(first)
        if first in stop_at:
            raise KeyboardInterrupt
        real_hold(model, n, first)

    stop_at: set[int] = set()
    # held: the chips each pass draws. A fresh evaluation (one chip a pass here) runs chip 0 on the
    # conversion's own draw, so its list starts at 1; a resumed one starts at its first new chip.
    monkeypatch.setattr(cosim.eval, "hold_chips", hold)
    args = ("train", "--data-dir", tiny_mnist, "--model", "mlp", "--epochs", 1, "--set", "run.chips_per_pass=1",
            "--set", "hardware.prog_sigma=0.5", "--set", "hardware.p_sa1=0.2", "--eval-chips")
    fresh_dir, out = tmp_path / "fresh", tmp_path / "grown"
    assert invoke(*args, 9, "--out", fresh_dir).exit_code == 0
    fresh = json.loads((fresh_dir / "metrics.json").read_text())["hardware"]
    assert len(set(fresh["accuracies"])) > 1  # the chips differ, so a wrong chip offset shows
    assert invoke(*args, 3, "--out", out).exit_code == 0
    assert invoke("evaluate", "--run", out, "--chips", 2).exit_code == 0  # writes <run>/evaluation.json
    held.clear()
    assert invoke(*args, 5, "--out", out).exit_code == 0
    assert held == [3, 4]  # chips 0-2 were kept
    assert json.loads((out / "evaluation.json").read_text())["n_chips"] == 2  # cosim evaluate's file is left alone
    # A record written before tallies were kept: its chips are kept too, EKL from the pooled sum.
    m = json.loads((out / "metrics.json").read_text())
    del m["hardware"]["tally"]
    (out / "metrics.json").write_text(json.dumps(m))
    held.clear()
    stop_at.add(7)
    assert invoke(*args, 9, "--out", out).exit_code != 0  # interrupted after chips 5 and 6
    assert held == [5, 6, 7] and not (out / "metrics.json").exists()
    assert len(json.loads((out / "chip_tally.json").read_text())["tally"]["correct"]) == 7
    other = tmp_path / "other"  # another configuration's chips are never taken
    other.mkdir()
    (other / "chip_tally.json").write_bytes((out / "chip_tally.json").read_bytes())
    held.clear()
    assert invoke(*args, 3, "--out", other, "--set", "hardware.prog_sigma=0.1").exit_code == 0
    assert held == [1, 2]  # all three chips run: none taken
    held.clear()
    stop_at.clear()
    assert invoke(*args, 9, "--out", out).exit_code == 0
    assert held == [7, 8] and not (out / "chip_tally.json").exists()
    grown = json.loads((out / "metrics.json").read_text())["hardware"]
    assert grown["accuracies"] == fresh["accuracies"] and grown["tally"]["n_pooled"] == 5
    assert grown["ekl"] == pytest.approx(fresh["ekl"], rel=1e-6)
    # cosim evaluate resumes too, from <out stem>.chip_tally.json, and only for the same question.
    held.clear()
    stop_at.add(4)
    res = invoke("evaluate", "--run", fresh_dir, "--chips", 6, "--out", tmp_path / "e.json")
    assert res.exit_code != 0 and held == [1, 2, 3, 4] and not (tmp_path / "e.json").exists()
    assert len(json.loads((tmp_path / "e.chip_tally.json").read_text())["tally"]["correct"]) == 4
    held.clear()
    stop_at.clear()
    res = invoke("evaluate", "--run", fresh_dir, "--chips", 6, "--out", tmp_path / "e.json", "--temperature", 2)
    assert res.exit_code == 0 and held == [1, 2, 3, 4, 5]  # another temperature: nothing taken
    (tmp_path / "e.json").unlink()
    stop_at.add(4)
    assert invoke("evaluate", "--run", fresh_dir, "--chips", 6, "--out", tmp_path / "e.json").exit_code != 0
    held.clear()
    stop_at.clear()
    assert invoke("evaluate", "--run", fresh_dir, "--chips", 6, "--out", tmp_path / "e.json").exit_code == 0
    assert held == [4, 5] and not (tmp_path / "e.chip_tally.json").exists()
    assert json.loads((tmp_path / "e.json").read_text())["accuracies"] == fresh["accuracies"][:6]
    # A model that is gone (weights deleted, or never committed) is trained again, and the chips
    # its predecessor left in chip_tally.json are not taken for the new one's: with its training
    # record gone too, and with the record kept (a fresh checkout of committed results: trained.json
    # and the tally are committed, model.pt and checkpoints are not).
    for keep_record in (False, True):
        retrained = tmp_path / f"retrained-{keep_record}"
        held.clear()
        stop_at.add(4)
        assert invoke(*args, 9, "--out", retrained).exit_code != 0
        assert len(json.loads((retrained / "chip_tally.json").read_text())["tally"]["correct"]) == 4
        (retrained / "model.pt").unlink()
        shutil.rmtree(retrained / "checkpoints", ignore_errors=True)
        if not keep_record:
            (retrained / "trained.json").unlink()
        held.clear()
        stop_at.clear()
        res = invoke(*args, 9, "--out", retrained)
        assert res.exit_code == 0, res.output
        assert held == list(range(1, 9)) and (retrained / "model.pt").exists()
        assert (retrained / "trained.json").exists() and not (retrained / "chip_tally.json").exists()
    (out / "metrics.json").unlink()  # as if interrupted, with a damaged tally: one clear message
    (out / "chip_tally.json").write_text('{"tally": []}')
    res = invoke(*args, 9, "--out", out)
    assert res.exit_code == 1 and "is not a chip tally this version of cosim reads" in res.output
