"""Per-layer effect of the IR-drop array at σ_d = 0 (ad hoc, session 33).

Usage: python probe_layers.py RUN MODEL HARDWARE.toml N_IMAGES

Converts RUN's model twice, on the ideal array and on HARDWARE.toml's array (chip seed 1000, one
chip), feeds each crossbar layer of the IR-drop copy the input that layer gets in the ideal
network, and prints per layer the gain <y_ir, y_id> / <y_id, y_id> and the relative error
|y_ir − y_id| / |y_id| over the first N_IMAGES MNIST test images; then both networks' accuracy.
"""
import copy
import sys
import time

import torch

from cosim.data import load_dataset
from cosim.layers.modules import convert, crossbar_layers
from cosim.runconfig import hardware_from_dict, load_model, read_toml

run, name, hw_file, n_images = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
test = load_dataset("mnist", "test").head(n_images)
hw_ir = hardware_from_dict(read_toml(hw_file)["hardware"])
base = load_model(run, name, tuple(test.images.shape[1:]), test.classes).eval()
t0 = time.time()
ideal = convert(copy.deepcopy(base), hw_ir.on_ideal_array(), 1, 1000).eval()
irdrop = convert(copy.deepcopy(base), hw_ir, 1, 1000).eval()
inputs, outputs = {}, {}


def record(k):
    def hook(module, args, y):
        inputs[k], outputs[k] = args[0].detach(), y.detach()
    return hook


hooks = [layer.register_forward_hook(record(k)) for k, layer in enumerate(crossbar_layers(ideal))]
with torch.no_grad():
    logits_ideal = ideal(test.images)
    for h in hooks:
        h.remove()
    for k, layer in enumerate(crossbar_layers(irdrop)):
        y_ir, y_id = layer(inputs[k]), outputs[k]
        print({"layer": k, "shape": list(layer.weight.shape), "gain": round(float((y_ir * y_id).sum() / (y_id * y_id).sum()), 4),
               "rel_err": round(float((y_ir - y_id).norm() / y_id.norm()), 4)}, flush=True)
    logits_ir = irdrop(test.images)


def accuracy(z):
    return round(float((z.argmax(1) == test.labels).float().mean()), 4)


print({"acc_ideal": accuracy(logits_ideal), "acc_irdrop": accuracy(logits_ir), "images": n_images,
       "seconds": round(time.time() - t0)})
