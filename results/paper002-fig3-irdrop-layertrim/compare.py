"""The LeNet-5 σ_d sweep on three readouts, paired per chip: ideal array, IR drop untrimmed, IR drop
with a per-layer readout trim (session 35). Prints markdown; reads only the runs' metrics.json.

    python results/paper002-fig3-irdrop-layertrim/compare.py [fashion-mnist]

(default MNIST; ``fashion-mnist`` reads the ``paper002-fig3-fashion-mnist*`` folders).
"""

import json
import sys
from functools import cache
from pathlib import Path

from cosim.tables import paired

ROOT = Path("results")
DATASET = f"-{sys.argv[1]}" if len(sys.argv) > 1 else ""
ARRAYS = {"ideal": ROOT / f"paper002-fig3{DATASET}", "IR drop": ROOT / f"paper002-fig3{DATASET}-irdrop",
          "IR drop, layer trim": ROOT / f"paper002-fig3{DATASET}-irdrop-layertrim"}


@cache
def hardware(array: str, sigma: float, method: str) -> dict:
    """The Monte Carlo result of ``method``'s LeNet-5 at σ_d ``sigma`` on ``array``."""
    name = f"lenet5-sigma{sigma:g}-{method}" + ("" if array == "ideal" else "-irdrop")
    return json.loads((ARRAYS[array] / "runs" / name / "metrics.json").read_text())["hardware"]


def pct(d) -> str:
    return f"{100 * d.mean:+.2f} ± {100 * d.ci95:.2f}"


def main() -> None:
    print("| σ_d | method | ideal | IR drop | IR drop, layer trim | trim − untrimmed | trim − ideal |")
    print("|---|---|---|---|---|---|---|")
    for sigma in (0.1, 0.2, 0.3, 0.4):
        for method in ("vanilla", "gni", "ovf"):
            h = {a: hardware(a, sigma, method) for a in ARRAYS}
            cells = " | ".join(f"{100 * h[a]['mean']:.2f} ± {100 * h[a]['ci95']:.2f}" for a in ARRAYS)
            print(f"| {sigma:g} | {method} | {cells} | {pct(paired(h['IR drop'], h['IR drop, layer trim']))} "
                  f"| {pct(paired(h['ideal'], h['IR drop, layer trim']))} |")
    print("\n| σ_d | OVF − GNI, ideal | IR drop | IR drop, layer trim |")
    print("|---|---|---|---|")
    for sigma in (0.1, 0.2, 0.3, 0.4):
        gaps = [pct(paired(hardware(a, sigma, "gni"), hardware(a, sigma, "ovf"))) for a in ARRAYS]
        print(f"| {sigma:g} | " + " | ".join(gaps) + " |")
    zero = {a: hardware(a, 0, "vanilla") for a in ARRAYS}
    print("\nσ_d 0 (one model, no randomness): " + ", ".join(f"{a} {100 * h['mean']:.2f} %" for a, h in zero.items()))


if __name__ == "__main__":
    main()
