"""What a readout trim fits to: the programmed levels, or the levels the known fault map implies.

One 40→20 float64 layer on the exact circuit (16×16 tiles, 4 Ω row wires, 2.5 Ω elsewhere),
paper 000's fault rates, chips drawn with seeds 1..8 (weights drawn with the same seed). Prints
each readout's relative distance from the programmed weights (ideal array, no faults) and from
the ideal array with the same faults, mean over the seeds (docs/decisions.md, "Readout trim").

    python results/readout-trim/probe_reference.py     # about 1 min on one core
"""

import torch

from cosim.layers import CrossbarLinear, HardwareConfig
from cosim.specs import FaultSpec

READOUTS = ((None, None), ("column", None), ("column", "known_faults"), ("layer", None), ("layer", "known_faults"))


def distances(seed: int) -> dict[str, tuple[float, float]]:
    """Readout name → (distance from the programmed weights, from the ideal array with the same faults)."""
    common = dict(tile_rows=16, tile_cols=16, faults=FaultSpec(), r_wire_row_ohm=4.0)
    torch.manual_seed(seed)  # the weights' initialisation (``seed`` below draws the chips)
    faulty = CrossbarLinear(40, 20, hw=HardwareConfig(**common), seed=seed, dtype=torch.float64)
    clean = CrossbarLinear(40, 20, hw=HardwareConfig(**(common | dict(faults=FaultSpec.none()))), seed=seed,
                           dtype=torch.float64)
    out = {}
    with torch.no_grad():
        clean.weight.copy_(faulty.weight)  # the weights only: a state dict would carry the fault draw too
        w_prog, w_faulty = clean.realised_weights(), faulty.realised_weights()
        for trim, reference in READOUTS:
            hw = HardwareConfig(array_model="exact", readout_trim=trim, trim_reference=reference, **common)
            layer = CrossbarLinear(40, 20, hw=hw, seed=seed, dtype=torch.float64)
            layer.load_state_dict(faulty.state_dict())
            w = layer.realised_weights()
            name = f"{trim}, {reference or 'programmed'}" if trim else "untrimmed"
            out[name] = (float((w - w_prog).norm() / w_prog.norm()), float((w - w_faulty).norm() / w_faulty.norm()))
    return out


def main() -> None:
    torch.set_num_threads(1)
    rows: dict[str, list] = {}
    for seed in range(1, 9):
        for name, d in distances(seed).items():
            rows.setdefault(name, []).append(d)
    print("| readout (trim, reference) | from programmed | from ideal array with the same faults |")
    print("|---|---|---|")
    for name, ds in rows.items():
        t = torch.tensor(ds)
        print(f"| {name} | {t[:, 0].mean():.3f} | {t[:, 1].mean():.4f} |")


if __name__ == "__main__":
    main()
