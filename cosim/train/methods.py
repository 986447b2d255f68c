"""The retraining methods as training phases: what is trained and which loss it minimises.

A method is turned into one or more :class:`Phase` s (partition retraining: one per block) that
the loop in :mod:`cosim.train.loop` runs with Adam, checkpoints and resume. On-chip methods
train the faulty student: a copy of the teacher converted to crossbar layers holding one chip
(``chip_seed``), whose faulty weights receive no gradient (paper 000 eq. 7).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cosim.errors import SpecError
from cosim.layers import HardwareConfig, convert
from cosim.train.config import Method, TrainConfig
from cosim.train.noise import noisy_forward, slice_noise_factor, standard_normals

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class Phase:
    """One stage of training.

    Attributes:
        name: for progress and logs.
        params: what the optimiser updates.
        train_modules: modules in train mode during the phase (everything else in eval mode).
        loss: ``loss(x, y, generator)`` for one batch; ``generator`` seeds any noise.
    """

    name: str
    params: list[nn.Parameter]
    train_modules: list[nn.Module]
    loss: Loss


def faulty_student(teacher: nn.Module, hw: HardwareConfig, chip_seed: int) -> nn.Module:
    """A copy of ``teacher`` on crossbar layers holding chip ``chip_seed`` (the teacher is untouched)."""
    return convert(copy.deepcopy(teacher), hw, n_chips=1, seed=chip_seed)


def partition_blocks(model: nn.Module) -> list[tuple[int, int]]:
    """Paper 000 eq. 5: ``[start, end)`` module ranges of a flat ``nn.Sequential``, one per block.

    A module holding convolutions gets block ``k = floor(log2(C/f))`` (C its output channels, f
    the first convolution's); Linear layers join the last block; modules without weights (BN,
    ReLU, pooling) belong to the block of the weight layer before them. Blocks never go back
    (a narrower layer after a wider one stays in the wider one's block). A model without
    convolutions is one block.
    """
    if not isinstance(model, nn.Sequential):
        raise SpecError("partition retraining needs a flat nn.Sequential model (every zoo model is one).")
    first, current, owner = None, 0, []
    for m in model:
        convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
        if convs:
            channels = convs[-1].out_channels if not isinstance(m, nn.Conv2d) else m.out_channels
            first = first or channels
            current = max(current, int(math.floor(math.log2(channels / first) + 1e-9)))
        owner.append(current)
    bounds, start = [], 0
    for i in range(1, len(owner) + 1):
        if i == len(owner) or owner[i] != owner[start]:
            bounds.append((start, i))
            start = i
    return bounds


def build_phases(method: Method, model: nn.Module, cfg: TrainConfig, hw: HardwareConfig,
                 teacher: nn.Module | None) -> tuple[nn.Module, list[Phase]]:
    """The trained model (the student for on-chip methods) and its phases."""
    if method.needs_teacher and teacher is None:
        raise SpecError(f"method {method.value} retrains a trained model: give the teacher checkpoint.")
    factor = slice_noise_factor(hw)
    if method in (Method.VANILLA, Method.GNI, Method.DVA):
        sigma = cfg.sigma_d if method is Method.GNI else 0.0
        lognormal = cfg.dva_sigma if method is Method.DVA else 0.0

        def plain(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            out = model(x) if method is Method.VANILLA else noisy_forward(model, x, g, sigma, factor, lognormal)
            return F.cross_entropy(out, y)
        return model, [Phase(method.value, list(model.parameters()), [model], plain)]
    if method is Method.OVF:
        def ovf(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return F.cross_entropy(ovf_output(model, x, g, cfg, factor), y)
        return model, [Phase("ovf", list(model.parameters()), [model], ovf)]
    assert teacher is not None
    teacher.eval()
    student = faulty_student(teacher, hw, cfg.chip_seed)
    if method is Method.MASKED:
        return student, [Phase("masked", list(student.parameters()), [student],
                               lambda x, y, g: F.cross_entropy(student(x), y))]
    if method is Method.KD:
        t = cfg.kd_temperature

        def kd(x: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            with torch.no_grad():
                soft = F.softmax(teacher(x) / t, dim=1)
            out = student(x)
            distil = F.kl_div(F.log_softmax(out / t, dim=1), soft, reduction="batchmean") * t * t
            return cfg.kd_alpha * distil + (1 - cfg.kd_alpha) * F.cross_entropy(out, y)
        return student, [Phase("kd", list(student.parameters()), [student], kd)]
    phases = []
    for b, (start, end) in enumerate(partition_blocks(student)):
        block = student[start:end]

        def blockwise(x: torch.Tensor, y: torch.Tensor, g: torch.Generator, start: int = start, end: int = end,
                      block: nn.Module = block) -> torch.Tensor:
            with torch.no_grad():
                target = teacher[:end](x)
                earlier = student[:start]  # the already retrained student's earlier blocks (eval mode)
                if method is Method.PARTITION_OVF and start > 0:
                    inp = noisy_forward(earlier, x, g, cfg.sigma_d, factor)
                else:
                    inp = earlier(x)
            if method is Method.PARTITION_OVF:
                # Normalised so that without noise it is the block's own output (features, not logits).
                out = ovf_output(block, inp, g, cfg, factor) / ovf_weight(cfg)
            else:
                out = block(inp)
            # Huber per element, i.e. the block's summed Huber divided by c·w·h (paper 000 eq. 11), batch-mean.
            return F.huber_loss(out, target, delta=cfg.huber_delta)
        phases.append(Phase(f"block {b} (modules {start}-{end - 1})", list(block.parameters()), [block], blockwise))
    return student, phases


def ovf_weight(cfg: TrainConfig) -> float:
    """``a_b − a_f·β·Σ_n γ_n``: the factor OVF's combined output puts on a noise-free output."""
    n = cfg.ovf_branches
    return (1.0 - cfg.beta * sum(10.0 ** (k - n) for k in range(1, n + 1))) / (n + 1)


def ovf_output(model: nn.Module, x: torch.Tensor, g: torch.Generator, cfg: TrainConfig,
               factor: float) -> torch.Tensor:
    """Paper 002 eq. 1: ``O_total = a_b·O_b − a_f·β·Σ_n γ_n·Out_n``.

    ``γ_n = 10^{n−N}``, ``a_b = a_f = 1/(N+1)``; the backbone forward sees σ_d and forward ``n``
    sees ``σ_d + n·ovf_step``, all with one Gaussian noise pattern drawn per call (paper 002: the
    variational forwards reuse the backbone's noise pattern with a larger σ).
    """
    n = cfg.ovf_branches
    pattern = standard_normals(model, g)
    total = noisy_forward(model, x, g, cfg.sigma_d, factor, pattern=pattern) / (n + 1)
    for k in range(1, n + 1):
        branch = noisy_forward(model, x, g, cfg.sigma_d + k * cfg.ovf_step, factor, pattern=pattern)
        total = total - cfg.beta * 10.0 ** (k - n) * branch / (n + 1)
    return total
