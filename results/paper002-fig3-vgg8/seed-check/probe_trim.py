"""One crossbar layer's realised weights on the IR-drop array against the ideal array's, untrimmed
and with each readout trim (ad hoc, session 34).

Usage: python probe_trim.py LAYER_INDEX

Converts the seed-1 GNI VGG-8 on the ideal array and on ``irdrop-hardware.toml``'s array (chip
seed 1000, one chip), at σ_d 0 and 0.1, and prints for crossbar layer LAYER_INDEX, per trim, the
relative distance |W_ir − W_ideal| / |W_ideal| and the gain <W_ir, W_ideal> / <W_ideal, W_ideal>.
"""
import copy
import sys
from dataclasses import replace

import torch

from cosim.layers import convert, crossbar_layers
from cosim.runconfig import hardware_from_dict, load_model, read_toml

d = "results/paper002-fig3-vgg8/seed-check"
hw0 = hardware_from_dict(read_toml(f"{d}/irdrop-hardware.toml")["hardware"])
base = load_model(f"{d}/vgg8-sigma0.1-gni-seed1", "vgg8", (1, 28, 28), 10).eval()
layer_idx = int(sys.argv[1])
for sigma in (0.0, 0.1):
    row = {}
    for trim in (None, "column", "layer"):
        hw = replace(hw0, prog_sigma=sigma, readout_trim=trim)
        hws = {"ideal": hw.on_ideal_array(), "c": hw}
        ws = {}
        for k, h in hws.items():
            m = convert(copy.deepcopy(base), h, 1, 1000)
            layer = crossbar_layers(m)[layer_idx]
            with torch.no_grad():
                ws[k] = layer.realised_weights()
        diff = ws["c"] - ws["ideal"]
        gain = float((ws["c"] * ws["ideal"]).sum() / (ws["ideal"] ** 2).sum())
        row[trim] = (round(float(diff.norm() / ws["ideal"].norm()), 4), round(gain, 4))
    print(layer_idx, sigma, row, flush=True)
