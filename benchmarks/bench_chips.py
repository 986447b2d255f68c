"""What one Monte Carlo chip of a large network costs: drawing it against running images through it.

For VGG-8 (9.3 M weights, 74 M devices in the default differential 4-slice mapping) and LeNet-5,
one run measures, per chip, the time to draw the chips and build their realised weights (eight
chips held at once, as ``cosim.eval.evaluate`` holds them by default; ``--per-pass``), for
programming variation only (σ_d = 0.2, paper 002) and for faults plus variation (25.03 %, paper
000), and the time to run ``--images`` test-sized inputs through each chip once its weights are
built. Printed as ratios to that forward pass, so the figures compare within one run on a shared
machine. With more than one torch thread it also times the draws alone on one thread and on all
of them (chips are drawn side by side, one stream each).

    python benchmarks/bench_chips.py [--passes 1] [--per-pass 8] [--images 200] [--models vgg8 lenet5]

Chips are drawn into arrays allocated once per pass, and a chip without faults skips the work of
its all-zero fault map (its generator still advances by the same draws, so every chip's numbers
are unchanged, bit for bit). Against the code before that change (commit 6beca9a), this script
run back to back on one core with 8 chips per pass gave, for VGG-8: 16.3 → 3.1 s per chip
(σ_d only) and 15.8 → 3.5 s (faults + σ_d); forward of 200 images about 2.5–3 s in both. On
both cores (nothing else running) the draws alone were 1.96x (σ_d) and 2.20x (faults) faster on
two threads than on one.
"""

from __future__ import annotations

import argparse
import time

import torch

from cosim.layers import HardwareConfig, convert, draw_chips, hold_chips, repeat_for_chips
from cosim.layers.modules import crossbar_layers
from cosim.models import build_model
from cosim.specs import FaultSpec


def chip_seconds(model: torch.nn.Module, hw: HardwareConfig, passes: int, per_pass: int,
                 x: torch.Tensor) -> tuple[float, float]:
    """Per chip: (seconds to draw it and build its weights, seconds to run ``x`` through it)."""
    hw_model = convert(model, hw, n_chips=1, seed=0).eval()
    draw = forward = 0.0
    with torch.no_grad():
        for first in range(0, passes * per_pass, per_pass):
            t0 = time.perf_counter()
            hold_chips(hw_model, per_pass, first)
            for layer in crossbar_layers(hw_model):
                layer.realised_weights()
            t1 = time.perf_counter()
            hw_model(repeat_for_chips(x, per_pass))
            draw, forward = draw + t1 - t0, forward + time.perf_counter() - t1
    chips = passes * per_pass
    return draw / chips, forward / chips


def matrix_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """(in, out) of every layer a crossbar holds, as :func:`cosim.layers.convert` maps it."""
    return [(m.weight[0].numel(), m.weight.shape[0]) for m in model.modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def draw_only_seconds(shapes: list[tuple[int, int]], hw: HardwareConfig, per_pass: int, workers: int) -> float:
    """Seconds per chip to draw ``per_pass`` chips of every layer with ``workers`` threads."""
    t0 = time.perf_counter()
    for shape in shapes:
        draw_chips(shape, hw, per_pass, seed=0, workers=workers)
    return (time.perf_counter() - t0) / per_pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=1)
    parser.add_argument("--per-pass", type=int, default=8, help="Chips held at once (evaluate's default: 8).")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--models", nargs="+", default=["vgg8", "lenet5"])
    args = parser.parse_args()
    cases = {"σ_d 0.2, no faults": HardwareConfig(prog_sigma=0.2),
             "25.03 % faults + σ_d 0.1": HardwareConfig(faults=FaultSpec(), prog_sigma=0.1)}
    print(f"{torch.get_num_threads()} threads, {args.passes} x {args.per_pass} chips per case, "
          f"{args.images} images per chip")
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name).eval()
        x = torch.randn(args.images, 1, 28, 28)
        shapes = matrix_shapes(model)
        weights = sum(n_in * n_out for n_in, n_out in shapes)
        for label, hw in cases.items():
            draw, forward = chip_seconds(model, hw, args.passes, args.per_pass, x)
            print(f"{name} ({weights / 1e6:.2f} M weights), {label}: draw + weights {draw:.2f} s per chip, "
                  f"forward {forward:.2f} s; draw = {draw / forward:.2f}x the forward of {args.images} images")
            threads = torch.get_num_threads()
            if threads > 1:
                one, many = (draw_only_seconds(shapes, hw, args.per_pass, w) for w in (1, threads))
                print(f"  the draws alone: {one:.2f} s per chip on 1 thread, {many:.2f} s on {threads} "
                      f"({one / many:.2f}x faster)")


if __name__ == "__main__":
    main()
