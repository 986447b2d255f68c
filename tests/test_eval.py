"""Monte Carlo evaluation: statistics, chunk invariance, EKL, recovery, growing by chips, chips alike."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from cosim.data import ImageData
from cosim.errors import SpecError
from cosim.eval import ChipTally, digital_accuracy, evaluate, summarise
from cosim.layers import HardwareConfig
from cosim.specs import FaultSpec


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, 1, 4, 5, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))
    torch.manual_seed(seed)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
        flip = torch.rand(400, generator=g) < 0.2  # 80 % digital accuracy
        y[flip] = (y[flip] + 1) % 3
    return model, ImageData(x, y, 3, "synthetic")


def test_summary_statistics_by_hand():
    s = summarise(np.array([0.90, 0.92, 0.94]), ideal=0.95, reference=0.95, ekl=0.1, n_images=100)
    assert s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    assert s.ci95 == pytest.approx(4.302652729911275 * 0.02 / math.sqrt(3))  # t(0.975, 2)
    assert s.p1 == pytest.approx(0.9004) and s.recovery == pytest.approx(0.92 / 0.95)


def test_no_hardware_effects_gives_the_digital_accuracy_and_its_ekl():
    model, data = _problem()
    passes = []
    stats = evaluate(model, data, HardwareConfig(mapping="one_cell", faults=FaultSpec.none()), n_chips=3,
                     on_pass=lambda t: passes.append(len(t)))
    acc = digital_accuracy(model, data)
    assert stats.accuracies == (acc, acc, acc) and stats.std == 0 and stats.recovery == 1.0
    assert passes == [1, 3]  # nothing is drawn, so chip 0 is run and stands for the others
    with torch.no_grad():
        logp = torch.log_softmax(model(data.images), dim=1)
    hit = logp.argmax(dim=1) == data.labels
    assert stats.ekl == pytest.approx(float(-logp[hit, data.labels[hit]].mean()), rel=1e-5)


def test_chips_do_not_depend_on_chunking_and_faults_cost_accuracy():
    model, data = _problem(1)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.1, tile_rows=8, tile_cols=8)
    a = evaluate(model, data, hw, n_chips=6, seed=3, chips_per_pass=1)
    b = evaluate(model, data, hw, n_chips=6, seed=3, chips_per_pass=4, batch_size=128)
    assert a.accuracies == b.accuracies
    assert len(set(a.accuracies)) > 1 and a.mean < a.ideal_accuracy
    c = evaluate(model, data, hw, n_chips=6, seed=4)
    assert c.accuracies != a.accuracies


def test_temperature_equals_a_last_layer_scaled_down_on_the_same_chips():
    """EKL at temperature T = EKL of the model whose last layer is divided by T (max-scaled mapping:
    the chips realise the same relative weights), accuracy unchanged."""
    model, data = _problem(2)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.1, tile_rows=8, tile_cols=8)
    hot = evaluate(model, data, hw, n_chips=4, seed=5, temperature=4.0)
    cooled = type(model)(*[nn.Linear(m.in_features, m.out_features) if isinstance(m, nn.Linear) else m
                           for m in model])
    cooled.load_state_dict(model.state_dict())
    with torch.no_grad():
        cooled[-1].weight.div_(4.0)
        cooled[-1].bias.div_(4.0)
    ref = evaluate(cooled, data, hw, n_chips=4, seed=5)
    assert hot.accuracies == ref.accuracies
    assert hot.ekl == pytest.approx(ref.ekl, rel=1e-4)
    assert hot.ekl > evaluate(model, data, hw, n_chips=4, seed=5).ekl  # softer outputs, larger −log p
    with pytest.raises(SpecError, match="temperature must be a positive number"):
        evaluate(model, data, hw, n_chips=1, temperature=0.0)


def test_an_evaluation_extended_or_cut_equals_a_fresh_one_and_runs_only_the_new_chips():
    """Chips are prefix-stable, so chips 0–2 kept from one call and chips 3–6 run by the next give
    the fresh 7-chip numbers; the kept chips are not run again (one on_pass call per new chip)."""
    model, data = _problem(3)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.2, tile_rows=8, tile_cols=8)
    fresh = evaluate(model, data, hw, n_chips=7, seed=2, chips_per_pass=3)
    three = evaluate(model, data, hw, n_chips=3, seed=2)
    passes = []
    grown = evaluate(model, data, hw, n_chips=7, seed=2, chips_per_pass=1, done=three.tally,
                     on_pass=lambda t: passes.append(len(t)))
    assert passes == [4, 5, 6, 7]
    assert grown.accuracies == fresh.accuracies and grown.tally.correct == fresh.tally.correct
    assert grown.ekl == pytest.approx(fresh.ekl, rel=1e-6) and grown.ci95 == fresh.ci95
    assert len(set(fresh.accuracies)) > 1  # the chips differ: a wrong chip offset could not pass
    cut = evaluate(model, data, hw, n_chips=3, seed=2, done=fresh.tally, on_pass=passes.append)
    assert cut.accuracies == three.accuracies and cut.ekl == pytest.approx(three.ekl, rel=1e-6)
    assert passes == [4, 5, 6, 7]  # nothing was run
    # The tally's EKL is the mean −log p_label over every correct prediction, as without it.
    assert fresh.ekl == pytest.approx(sum(fresh.tally.nll) / sum(fresh.tally.correct), rel=1e-12)


def test_a_pooled_tally_extends_and_refuses_to_be_split():
    """Records from before per-chip sums hold one pooled NLL sum: extending them is exact, cutting
    inside the pooled chips starts again (and still gives the fresh numbers)."""
    model, data = _problem(4)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.2, tile_rows=8, tile_cols=8)
    fresh = evaluate(model, data, hw, n_chips=5, seed=1)
    old = evaluate(model, data, hw, n_chips=3, seed=1)
    pooled = ChipTally(old.tally.correct, (), old.ekl * sum(old.tally.correct), 3)
    grown = evaluate(model, data, hw, n_chips=5, seed=1, done=pooled)
    assert grown.accuracies == fresh.accuracies and grown.ekl == pytest.approx(fresh.ekl, rel=1e-6)
    assert grown.tally.n_pooled == 3 and len(grown.tally.nll) == 2
    assert len(pooled.head(2)) == 0 and pooled.head(3) == pooled and len(grown.tally.head(4).nll) == 1
    two = evaluate(model, data, hw, n_chips=2, seed=1, done=pooled)
    assert two.accuracies == fresh.accuracies[:2]
    assert ChipTally.from_dict(grown.tally.to_dict()) == grown.tally
    with pytest.raises(SpecError, match="one NLL sum per chip"):
        ChipTally((1, 2), (0.5,))
    with pytest.raises(SpecError, match="not a chip tally"):
        ChipTally.from_dict({"correct": [1]})


def test_chips_that_draw_nothing_are_run_once_and_give_the_full_evaluations_numbers():
    """σ_d = 1e-300 draws every chip (and changes no weight), so it is the full evaluation that
    σ_d = 0's one-chip shortcut must equal, on the physical mapping."""
    model, data = _problem(5)
    passes = []
    hw = HardwareConfig(tile_rows=8, tile_cols=8, weight_bits=4)
    short = evaluate(model, data, hw, n_chips=5, seed=1, chips_per_pass=2, on_pass=lambda t: passes.append(len(t)))
    full = evaluate(model, data, replace(hw, prog_sigma=1e-300), n_chips=5, seed=1, chips_per_pass=2,
                    on_pass=lambda t: passes.append(len(t)))
    assert passes == [1, 5, 2, 4, 5]
    assert short.accuracies == full.accuracies and short.ekl == pytest.approx(full.ekl, rel=1e-6)
    assert short.accuracies[0] != digital_accuracy(model, data)  # quantised: the chip is not the digital model


def test_each_chip_is_drawn_once(monkeypatch):
    """A fresh evaluation draws every chip once, the first pass's with the conversion itself (no
    throwaway draw); a resumed one draws only its new chips and the one its conversion holds."""
    import cosim.layers.modules as modules

    drawn = []
    real = modules.draw_chips

    def counting(shape, hw, n_chips, seed, first_chip=0, *args):
        drawn.append((first_chip, n_chips))
        return real(shape, hw, n_chips, seed, first_chip, *args)

    monkeypatch.setattr(modules, "draw_chips", counting)
    model, data = _problem(6)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.2, tile_rows=8, tile_cols=8)
    fresh = evaluate(model, data, hw, n_chips=7, seed=3, chips_per_pass=3)
    assert drawn == [(0, 3)] * 2 + [(3, 3)] * 2 + [(6, 1)] * 2  # two crossbar layers
    drawn.clear()
    grown = evaluate(model, data, hw, n_chips=7, seed=3, chips_per_pass=3, done=fresh.tally.head(4))
    assert drawn == [(0, 1)] * 2 + [(4, 3)] * 2 and grown.accuracies == fresh.accuracies
