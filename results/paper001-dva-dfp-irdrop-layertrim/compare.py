"""Paper 001's LeNet-5 cells on four readouts, paired per chip: the ideal array, the ideal array
with a per-layer readout trim (the control of session 37), IR drop untrimmed, and IR drop with
the per-layer trim (session 36). Prints markdown; reads only the runs' metrics.json.

    python results/paper001-dva-dfp-irdrop-layertrim/compare.py

"ideal trim − ideal" is what the trim does without a circuit (it takes out the lognormal
variation's mean gain e^{σ²/2}); "IR trim − ideal trim" is the circuit's effect once both
readouts are trimmed to the same gain.
"""

import json
from functools import cache
from pathlib import Path

from cosim.tables import paired

ROOT = Path("results")
ARRAYS = {"ideal": (ROOT / "paper001-dva-dfp", ""), "ideal, layer trim": (ROOT / "paper001-dva-dfp-layertrim", "-trimmed"),
          "IR drop": (ROOT / "paper001-dva-dfp-irdrop", "-irdrop"),
          "IR drop, layer trim": (ROOT / "paper001-dva-dfp-irdrop-layertrim", "-irdrop")}
DIFFS = (("ideal, layer trim", "ideal"), ("IR drop", "ideal"), ("IR drop, layer trim", "ideal"),
         ("IR drop, layer trim", "ideal, layer trim"))
SHORT = {"ideal": "ideal", "ideal, layer trim": "ideal trim", "IR drop": "IR", "IR drop, layer trim": "IR trim"}
COMBOS = (("vanilla", "static_fixed_point"), ("vanilla", "dynamic_fixed_point"), ("dva", "static_fixed_point"),
          ("dva", "dynamic_fixed_point"))
LABELS = {"static_fixed_point": "static", "dynamic_fixed_point": "DFP"}
CELLS = [(ratio, sigma) for ratio in (10, 100) for sigma in (0.1, 0.3, 0.5)]


@cache
def hardware(array: str, ratio: int, sigma: float, method: str, fmt: str) -> dict:
    """The Monte Carlo result of one paper 001 cell's model on ``array``."""
    folder, suffix = ARRAYS[array]
    name = f"lenet5-onoff{ratio}-sigma{sigma:g}-{method}-{fmt}{suffix}"
    return json.loads((folder / "runs" / name / "metrics.json").read_text())["hardware"]


def pct(d) -> str:
    return f"{100 * d.mean:+.2f} ± {100 * d.ci95:.2f}"


def main() -> None:
    print("| on/off | σ | model, format | " + " | ".join(ARRAYS) + " | "
          + " | ".join(f"{SHORT[a]} − {SHORT[b]}" for a, b in DIFFS) + " |")
    print("|---|---|---|" + "---|" * (len(ARRAYS) + len(DIFFS)))
    for ratio, sigma in CELLS:
        for method, fmt in COMBOS:
            h = {a: hardware(a, ratio, sigma, method, fmt) for a in ARRAYS}
            cells = " | ".join(f"{100 * h[a]['mean']:.2f}" for a in ARRAYS)
            print(f"| {ratio} | {sigma:g} | {method}, {LABELS[fmt]} | {cells} | "
                  + " | ".join(pct(paired(h[b], h[a])) for a, b in DIFFS) + " |")
    print("\n| on/off | σ | DVA + DFP − vanilla static, " + " | ".join(ARRAYS) + " |")
    print("|---|---|" + "---|" * len(ARRAYS))
    for ratio, sigma in CELLS:
        gaps = [pct(paired(hardware(a, ratio, sigma, "vanilla", "static_fixed_point"),
                           hardware(a, ratio, sigma, "dva", "dynamic_fixed_point"))) for a in ARRAYS]
        print(f"| {ratio} | {sigma:g} | " + " | ".join(gaps) + " |")


if __name__ == "__main__":
    main()
