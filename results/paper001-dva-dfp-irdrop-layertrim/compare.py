"""Paper 001's LeNet-5 cells on three readouts, paired per chip: ideal array, IR drop untrimmed,
IR drop with a per-layer readout trim (session 36). Prints markdown; reads only the runs'
metrics.json.

    python results/paper001-dva-dfp-irdrop-layertrim/compare.py
"""

import json
from functools import cache
from pathlib import Path

from cosim.tables import paired

ROOT = Path("results")
ARRAYS = {"ideal": ROOT / "paper001-dva-dfp", "IR drop": ROOT / "paper001-dva-dfp-irdrop",
          "IR drop, layer trim": ROOT / "paper001-dva-dfp-irdrop-layertrim"}
COMBOS = (("vanilla", "static_fixed_point"), ("vanilla", "dynamic_fixed_point"), ("dva", "static_fixed_point"),
          ("dva", "dynamic_fixed_point"))
LABELS = {"static_fixed_point": "static", "dynamic_fixed_point": "DFP"}
CELLS = [(ratio, sigma) for ratio in (10, 100) for sigma in (0.1, 0.3, 0.5)]


@cache
def hardware(array: str, ratio: int, sigma: float, method: str, fmt: str) -> dict:
    """The Monte Carlo result of one paper 001 cell's model on ``array``."""
    name = f"lenet5-onoff{ratio}-sigma{sigma:g}-{method}-{fmt}" + ("" if array == "ideal" else "-irdrop")
    return json.loads((ARRAYS[array] / "runs" / name / "metrics.json").read_text())["hardware"]


def pct(d) -> str:
    return f"{100 * d.mean:+.2f} ± {100 * d.ci95:.2f}"


def main() -> None:
    print("| on/off | σ | model, format | ideal | IR drop | IR drop, layer trim | untrimmed − ideal | trim − ideal "
          "| trim − untrimmed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for ratio, sigma in CELLS:
        for method, fmt in COMBOS:
            h = {a: hardware(a, ratio, sigma, method, fmt) for a in ARRAYS}
            cells = " | ".join(f"{100 * h[a]['mean']:.2f}" for a in ARRAYS)
            print(f"| {ratio} | {sigma:g} | {method}, {LABELS[fmt]} | {cells} "
                  f"| {pct(paired(h['ideal'], h['IR drop']))} | {pct(paired(h['ideal'], h['IR drop, layer trim']))} "
                  f"| {pct(paired(h['IR drop'], h['IR drop, layer trim']))} |")
    print("\n| on/off | σ | DVA + DFP − vanilla static, ideal | IR drop | IR drop, layer trim |")
    print("|---|---|---|---|---|")
    for ratio, sigma in CELLS:
        gaps = [pct(paired(hardware(a, ratio, sigma, "vanilla", "static_fixed_point"),
                           hardware(a, ratio, sigma, "dva", "dynamic_fixed_point"))) for a in ARRAYS]
        print(f"| {ratio} | {sigma:g} | " + " | ".join(gaps) + " |")


if __name__ == "__main__":
    main()
