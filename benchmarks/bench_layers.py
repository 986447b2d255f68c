"""Crossbar layer speed against plain torch, measured as ratios in one run.

MLP 784-512-10 and LeNet-5 (1x28x28), batch 256, forward and forward+backward, for:
faults + variation on the ideal array; the exact IR-drop model with its tiles cached;
and per-tile, per-slice ADC quantisation.

    python benchmarks/bench_layers.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from cosim.layers import HardwareConfig, convert
from cosim.specs import FaultSpec


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))


def lenet5() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def timed(model: nn.Module, x: torch.Tensor, backward: bool, repeats: int) -> float:
    def step() -> None:
        if backward:
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
        else:
            with torch.no_grad():
                model(x)

    step()  # warm-up (fills the caches)
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(256, 1, 28, 28)
    faults = FaultSpec()
    configs = {
        "faults+variation, ideal": (HardwareConfig(faults=faults, prog_sigma=0.1), 1.5),
        "exact IR drop, cached": (HardwareConfig(faults=faults, prog_sigma=0.1, array_model="exact"), 1.5),
        "ADC 8 bit per tile/slice": (HardwareConfig(faults=faults, prog_sigma=0.1, adc_bits=8, dac_bits=8), 10.0),
    }
    print(f"{'model':<8}{'configuration':<28}{'pass':<18}{'torch ms':>10}{'cosim ms':>10}{'ratio':>8}{'target':>8}")
    for name, build in (("MLP", mlp), ("LeNet-5", lenet5)):
        ref = build()
        for label, (hw, target) in configs.items():
            model = convert(copy.deepcopy(ref), hw, seed=1)
            for backward in (False, True):
                model.train(backward)
                ref.train(backward)
                t_ref = timed(ref, x, backward, args.repeats)
                # Training with the exact model re-solves the tiles after every weight update;
                # the target is for cached tiles, i.e. a forward+backward without an optimiser step.
                t_hw = timed(model, x, backward, args.repeats)
                pass_name = "forward+backward" if backward else "forward"
                verdict = "ok" if t_hw / t_ref <= target else "MISSED"
                print(f"{name:<8}{label:<28}{pass_name:<18}{t_ref * 1e3:>10.2f}{t_hw * 1e3:>10.2f}"
                      f"{t_hw / t_ref:>8.2f}{'<=' + format(target, 'g'):>7} {verdict}")


if __name__ == "__main__":
    main()
