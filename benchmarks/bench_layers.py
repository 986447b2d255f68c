"""Crossbar layer speed against plain torch, measured as ratios in one run.

MLP 784-512-10 and LeNet-5 (1x28x28), batch 256, forward, forward+backward (weights unchanged,
so cached tiles stay valid) and a full training step (an SGD update, after which the chip's
realised weights are rebuilt), for:
faults + variation on the ideal array; the exact IR-drop model with its tiles cached;
and per-tile, per-slice ADC quantisation.

    python benchmarks/bench_layers.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import copy
import statistics
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


PASSES = ("forward", "forward+backward", "train step (SGD)")


def step_fn(model: nn.Module, x: torch.Tensor, kind: str):
    opt = torch.optim.SGD(model.parameters(), lr=1e-6)

    def step() -> None:
        if kind == "forward":
            with torch.no_grad():
                model(x)
            return
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        if kind == PASSES[2]:
            opt.step()  # the weights change: the chip's realised weights are rebuilt next pass
    return step


def compare(ref: nn.Module, model: nn.Module, x: torch.Tensor, kind: str, repeats: int) -> tuple[float, float]:
    """Median seconds per pass of ``ref`` and ``model``, timed alternately so that drift hits both."""
    steps = [step_fn(ref, x, kind), step_fn(model, x, kind)]
    times: list[list[float]] = [[], []]
    for step in steps:
        step()  # warm-up (fills the caches)
    for _ in range(repeats):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            times[i].append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


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
            for kind in PASSES:
                if kind == PASSES[2] and hw.array_model == "exact":
                    continue  # the exact model re-solves every tile after each update: not a cached figure
                model.train(kind != "forward")
                ref.train(kind != "forward")
                t_ref, t_hw = compare(ref, model, x, kind, args.repeats)
                pass_name = kind
                verdict = "ok" if t_hw / t_ref <= target else "MISSED"
                print(f"{name:<8}{label:<28}{pass_name:<18}{t_ref * 1e3:>10.2f}{t_hw * 1e3:>10.2f}"
                      f"{t_hw / t_ref:>8.2f}{'<=' + format(target, 'g'):>7} {verdict}")


if __name__ == "__main__":
    main()
