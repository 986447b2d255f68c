"""Where LeNet-5's realised weights land on the ideal and on the IR-drop array, per layer (ad hoc,
session 35): does the circuit damp the programming noise beyond a gain per layer?

    python results/paper002-fig3-irdrop-layertrim/probe_damping.py [SIGMA_D] [CHIPS]

Converts paper002-fig3's vanilla LeNet-5 with its IR-drop runs' hardware (eval seed 1000, the
first CHIPS chips, default 4) and prints, per crossbar layer and array, the relative distance of
the realised weights from the programmed ones (the ideal array at σ_d 0), |W − W_prog| / |W_prog|,
after the least-squares gain per chip and layer is divided out (so a pure gain counts as no error),
and that gain.
"""
import copy
import sys
from dataclasses import replace

import torch

from cosim.layers import convert, crossbar_layers
from cosim.runconfig import hardware_from_dict, load_model, read_toml

sigma = float(sys.argv[1]) if len(sys.argv) > 1 else 0.3
chips = int(sys.argv[2]) if len(sys.argv) > 2 else 4
run = "results/paper002-fig3-irdrop-layertrim/runs/lenet5-sigma0.3-vanilla-irdrop"
hw_ir = replace(hardware_from_dict(read_toml(f"{run}/config.toml")["hardware"]), prog_sigma=sigma, readout_trim=None)
base = load_model("results/paper002-fig3/runs/lenet5-vanilla", "lenet5", (1, 28, 28), 10).eval()
arrays = {"programmed": replace(hw_ir.on_ideal_array(), prog_sigma=0.0), "ideal": hw_ir.on_ideal_array(),
          "IR drop": hw_ir, "IR drop, layer trim": replace(hw_ir, readout_trim="layer")}
weights = {}
for name, hw in arrays.items():
    model = convert(copy.deepcopy(base), hw, chips, 1000)
    with torch.no_grad():
        weights[name] = [layer.realised_weights().double() for layer in crossbar_layers(model)]
print(f"σ_d {sigma:g}, chips 0..{chips - 1}: per layer, mean over chips of the distance after the gain (and the gain)")
for i, w_prog in enumerate(weights["programmed"]):
    cells = []
    for name in ("ideal", "IR drop", "IR drop, layer trim"):
        w = weights[name][i]
        gain = (w * w_prog).sum(dim=(1, 2)) / (w_prog ** 2).sum(dim=(1, 2))
        dist = (w / gain.view(-1, 1, 1) - w_prog).flatten(1).norm(dim=1) / w_prog.flatten(1).norm(dim=1)
        cells.append(f"{name} {float(dist.mean()):.4f} (gain {float(gain.mean()):.3f})")
    print(f"layer {i}: " + "; ".join(cells), flush=True)
