"""Seconds per epoch of every training method against vanilla, LeNet-5 on MNIST, in one run.

Issue 5's target: OVF (N = 3 extra forwards) costs at most about 4x vanilla's epoch. On-chip
methods run on the paper-000 multi-fault chip (physical preset); the teacher is this run's own
vanilla model. Epochs are over the first --images training images (the ratio is what counts).

    python benchmarks/bench_methods.py [--images 10000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from cosim.data import load_dataset
from cosim.layers import HardwareConfig
from cosim.models import build_model
from cosim.specs import FaultSpec
from cosim.train import Method, TrainConfig, fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default; use 1 on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist", "train").head(args.images)
    hw = HardwareConfig(faults=FaultSpec(), prog_sigma=0.1)
    torch.manual_seed(0)
    teacher = build_model("lenet5")
    fit(teacher, data, TrainConfig(epochs=1), hw)  # warm-up, and the teacher of the on-chip methods
    seconds = {}
    for method in Method:
        cfg = TrainConfig(method=method, epochs=1, sigma_d=0.1, dva_sigma=0.1)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        fit(build_model("lenet5"), data, cfg, hw, teacher=teacher if method.needs_teacher else None)
        seconds[method] = time.perf_counter() - t0
    base = seconds[Method.VANILLA]
    print(f"LeNet-5, one epoch over {len(data)} MNIST images, batch 128, {torch.get_num_threads()} threads")
    print(f"{'method':<15}{'s/epoch':>10}{'x vanilla':>11}")
    for method, s in seconds.items():
        print(f"{method.value:<15}{s:>10.2f}{s / base:>11.2f}")
    ratio = seconds[Method.OVF] / base
    print(f"OVF target <= ~4x vanilla: {ratio:.2f}x {'ok' if ratio <= 4.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
