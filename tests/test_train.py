"""Training methods, the loop's exact resume, checkpoints, and the partition rule."""

import math
import os
import signal

import pytest
import torch
from torch import nn

from cosim.data import load_dataset
from cosim.errors import SpecError
from cosim.eval import digital_accuracy
from cosim.layers import HardwareConfig, crossbar_layers
from cosim.models import build_model
from cosim.specs import FaultSpec
from cosim.train import CheckpointError, TrainConfig, fit, load_checkpoint, load_weights, partition_blocks
from cosim.train.methods import build_phases
from cosim.train.noise import noisy_forward, slice_noise_factor

HW = HardwareConfig(mapping="one_cell", faults=FaultSpec())


@pytest.fixture
def tiny(tiny_mnist):
    return load_dataset("mnist", "train", data_dir=tiny_mnist), load_dataset("mnist", "test", data_dir=tiny_mnist)


@pytest.fixture
def teacher(tiny):
    torch.manual_seed(0)
    model = build_model("lenet5")
    fit(model, tiny[0], TrainConfig(epochs=2, batch_size=64), HW)
    return model


def test_partition_blocks_follow_equation_5():
    # LeNet-5: conv 6 (k=0), conv 16 (k=floor(log2 16/6)=1), FC joins the last block.
    assert partition_blocks(build_model("lenet5")) == [(0, 4), (4, 14)]
    # ConvNet 32-64-128: three blocks, FC in the last.
    net = build_model("convnet")
    blocks = partition_blocks(net)
    assert len(blocks) == 3 and blocks[-1][1] == len(net)
    assert [net[s].out_channels for s, _ in blocks] == [32, 64, 128]
    # VGG-8 128,128 | 256,256 | 512,512 + FC.
    vgg = build_model("vgg8")
    assert [sum(isinstance(m, nn.Conv2d) for m in vgg[s:e]) for s, e in partition_blocks(vgg)] == [2, 2, 2]
    # VGG-16 64,64 | 128,128 | 256 ×3 | 512 ×6 + FC (log2(C/64): the two 512 stages share a block).
    vgg16 = build_model("vgg16")
    assert [sum(isinstance(m, nn.Conv2d) for m in vgg16[s:e]) for s, e in partition_blocks(vgg16)] == [2, 2, 3, 6]
    assert partition_blocks(build_model("mlp")) == [(0, 6)]
    # ResNet-18: stem + stage 64 | stage 128 | stage 256 | stage 512 + pool, FC (residual blocks whole).
    assert partition_blocks(build_model("resnet18", (3, 32, 32), 10)) == [(0, 5), (5, 7), (7, 9), (9, 14)]
    with pytest.raises(SpecError, match="flat nn.Sequential"):
        partition_blocks(nn.Linear(2, 2))


def test_slice_noise_factor_and_noisy_forward_statistics():
    assert slice_noise_factor(HardwareConfig()) == pytest.approx(math.sqrt(9 * 4369) / 255, rel=1e-12)
    torch.manual_seed(1)
    lin = nn.Linear(50, 4000, bias=False)
    x = torch.randn(1, 50)
    before = lin.weight.detach().clone()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        y = noisy_forward(lin, x, g, additive_sigma=0.2, factor=0.7776) - lin(x)
    want = 0.7776 * 0.2 * lin.weight.abs().max() * x.norm()
    # 4000 independent outputs: the sample std is within 5 % of the truth (its rel. SE is 1.1 %).
    assert abs(y.std().item() / want.item() - 1) < 0.05
    assert torch.equal(lin.weight, before)  # stored weights untouched
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        ratio = noisy_forward(lin, torch.eye(50)[:1], g, lognormal_sigma=0.3) / lin.weight[:, 0]
    assert abs(ratio.log().std().item() / 0.3 - 1) < 0.05


def test_vanilla_learns_and_onchip_methods_recover(tiny, teacher):
    train, test = tiny
    assert digital_accuracy(teacher, test) > 0.95
    from cosim.train import faulty_student

    harsh = HardwareConfig(faults=FaultSpec())  # physical preset, paper 000's 25 % faulty devices
    before = digital_accuracy(faulty_student(teacher, harsh, 0), test)
    assert before < 0.93  # the chip does hurt
    for method in ("masked", "kd", "partition"):
        result = fit(build_model("lenet5"), train, TrainConfig(method=method, epochs=2, chip_seed=0, batch_size=64),
                     harsh, teacher=teacher)
        after = digital_accuracy(result.model, test)
        assert after > max(0.95, before + 0.03), (method, before, after)
        assert crossbar_layers(result.model)[0].seed == crossbar_layers(faulty_student(teacher, harsh, 0))[0].seed


def test_masked_training_never_moves_faulty_weights(tiny, teacher):
    result = fit(build_model("lenet5"), tiny[0], TrainConfig(method="masked", epochs=1, batch_size=64), HW,
                 teacher=teacher)
    for layer, start in zip(crossbar_layers(result.model), [m for m in teacher.modules()
                                                             if isinstance(m, (nn.Linear, nn.Conv2d))]):
        faulty = layer.healthy == 0
        assert faulty.any()
        assert torch.equal(layer.weight[faulty], start.weight[faulty])
        assert (layer.weight[~faulty] != start.weight[~faulty]).float().mean() > 0.5


def test_ovf_loss_combines_branches_as_paper_002():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    cfg = TrainConfig(method="ovf", sigma_d=0.1, beta=0.1, ovf_branches=3, ovf_step=0.05)
    _, (phase,) = build_phases(cfg.method, model, cfg, HardwareConfig(), None)
    x, y = torch.randn(8, 1, 3, 4), torch.randint(0, 5, (8,))
    got = phase.loss(x, y, torch.Generator().manual_seed(7))
    # Independently: one N(0, 1) pattern for the whole step, scaled by each forward's σ.
    eps = torch.randn(5, 12, generator=torch.Generator().manual_seed(7))
    w, b = model[1].weight.detach(), model[1].bias.detach()
    c = slice_noise_factor(HardwareConfig())
    outs = [x.flatten(1) @ (w + eps * c * (0.1 + 0.05 * n) * w.abs().max()).T + b for n in range(4)]
    total = outs[0] / 4 - 0.1 * (0.01 * outs[1] + 0.1 * outs[2] + 1.0 * outs[3]) / 4
    torch.testing.assert_close(got, nn.functional.cross_entropy(total, y))


def test_partition_ovf_without_noise_is_partition(teacher, tiny):
    """partition_ovf divides OVF's combination by its noise-free weight: at σ = 0 it is partition."""
    x = tiny[0].images[:32]
    plain = TrainConfig(method="partition", chip_seed=2)
    ovf = TrainConfig(method="partition_ovf", chip_seed=2, sigma_d=0.0, ovf_step=0.0, beta=0.1)
    harsh = HardwareConfig(faults=FaultSpec())
    _, ref = build_phases(plain.method, build_model("lenet5"), plain, harsh, teacher)
    _, got = build_phases(ovf.method, build_model("lenet5"), ovf, harsh, teacher)
    assert len(ref) == len(got) == 2
    for a, b in zip(ref, got):
        la = a.loss(x, None, torch.Generator().manual_seed(0))
        lb = b.loss(x, None, torch.Generator().manual_seed(0))
        assert float(la.detach()) > 1e-4
        torch.testing.assert_close(lb, la, rtol=1e-5, atol=1e-7)


class _Interrupt:
    """A reporter that sends this process SIGINT after ``at`` training steps."""

    def __init__(self, at):
        self.at, self.seen = at, 0

    def start(self, total, description):
        pass

    def advance(self, steps=1):
        self.seen += steps
        if self.seen == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def note(self, text):
        pass

    def finish(self):
        pass


@pytest.mark.parametrize("method, at", [("gni", 7), ("partition", 25)])
def test_interrupted_and_resumed_equals_uninterrupted(tiny, teacher, tmp_path, method, at):
    cfg = TrainConfig(method=method, epochs=2, batch_size=100, sigma_d=0.1, checkpoint_every=5, chip_seed=1)
    torch.manual_seed(4)
    init = build_model("lenet5")

    def start():
        m = build_model("lenet5")
        m.load_state_dict(init.state_dict())
        return m

    ref = fit(start(), tiny[0], cfg, HW, teacher=teacher)
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(start(), tiny[0], cfg, HW, teacher=teacher, checkpoint=ckpt, reporter=_Interrupt(at))
    assert load_checkpoint(ckpt)["position"] != [0, 0, 0]
    resumed = fit(start(), tiny[0], cfg, HW, teacher=teacher, checkpoint=ckpt)
    assert resumed.resumed_from is not None
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in ref.history], rel=1e-12)


def test_checkpoint_errors(tiny, tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(build_model("mlp"), tiny[0].head(200), TrainConfig(epochs=1), HW, checkpoint=ckpt)
    state = load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="different model"):
        load_weights(build_model("lenet5"), state, ckpt)
    with pytest.raises(CheckpointError, match="another configuration"):
        fit(build_model("mlp"), tiny[0].head(200), TrainConfig(epochs=2), HW, checkpoint=ckpt)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(SpecError, match="unknown training key"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(SpecError, match="retrains a trained model"):
        fit(build_model("mlp"), tiny[0], TrainConfig(method="kd"), HW)
