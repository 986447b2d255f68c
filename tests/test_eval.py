"""Monte Carlo evaluation: statistics, chunk invariance, EKL, recovery."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cosim.data import ImageData
from cosim.errors import SpecError
from cosim.eval import digital_accuracy, evaluate, summarise
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
    stats = evaluate(model, data, HardwareConfig(mapping="one_cell", faults=FaultSpec.none()), n_chips=3)
    acc = digital_accuracy(model, data)
    assert stats.accuracies == (acc, acc, acc) and stats.std == 0 and stats.recovery == 1.0
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
