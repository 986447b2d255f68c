"""Where paper 001's vanilla LeNet-5 weights land on the ideal and on the IR-drop array, per layer
(ad hoc, session 36): does the circuit damp the devices' lognormal variation beyond a gain per layer?

    python results/paper001-dva-dfp-irdrop-layertrim/probe_damping.py [ON_OFF] [SIGMA] [FORMAT] [CHIPS]

(defaults 100, 0.5, static_fixed_point, 4). Converts the vanilla model with that cell's IR-drop
run's hardware (eval seed 1000, the first CHIPS chips) and prints, per crossbar layer and array,
the relative distance of the realised weights from the programmed ones (the ideal array without
variation), |W − W_prog| / |W_prog|, after the least-squares gain per chip and layer is divided
out (so a pure gain counts as no error), and that gain.
"""
import copy
import sys
from dataclasses import replace

import torch

from cosim.layers import convert, crossbar_layers
from cosim.runconfig import hardware_from_dict, load_model, read_toml

ratio = int(sys.argv[1]) if len(sys.argv) > 1 else 100
sigma = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
fmt = sys.argv[3] if len(sys.argv) > 3 else "static_fixed_point"
chips = int(sys.argv[4]) if len(sys.argv) > 4 else 4
run = f"results/paper001-dva-dfp-irdrop-layertrim/runs/lenet5-onoff{ratio}-sigma{sigma:g}-vanilla-{fmt}-irdrop"
hw_trim = hardware_from_dict(read_toml(f"{run}/config.toml")["hardware"])
hw_ir = replace(hw_trim, readout_trim=None)
base = load_model("results/paper001-dva-dfp/runs/lenet5-train-vanilla", "lenet5", (1, 28, 28), 10).eval()
programmed = replace(hw_ir.on_ideal_array(), faults=replace(hw_ir.faults, p_tf=0.0))
arrays = {"programmed": programmed, "ideal": hw_ir.on_ideal_array(), "IR drop": hw_ir, "IR drop, layer trim": hw_trim}
weights = {}
for name, hw in arrays.items():
    model = convert(copy.deepcopy(base), hw, chips, 1000)
    with torch.no_grad():
        weights[name] = [layer.realised_weights().double() for layer in crossbar_layers(model)]
print(f"on/off {ratio}, σ {sigma:g}, {fmt}, chips 0..{chips - 1}: per layer, mean over chips of the distance "
      "after the gain (and the gain)")
for i, w_prog in enumerate(weights["programmed"]):
    cells = []
    for name in ("ideal", "IR drop", "IR drop, layer trim"):
        w = weights[name][i]
        gain = (w * w_prog).sum(dim=(1, 2)) / (w_prog ** 2).sum(dim=(1, 2))
        dist = (w / gain.view(-1, 1, 1) - w_prog).flatten(1).norm(dim=1) / w_prog.flatten(1).norm(dim=1)
        cells.append(f"{name} {float(dist.mean()):.4f} (gain {float(gain.mean()):.3f})")
    print(f"layer {i}: " + "; ".join(cells), flush=True)
