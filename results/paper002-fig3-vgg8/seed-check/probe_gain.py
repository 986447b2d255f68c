"""Digital accuracy with every Conv2d/Linear weight scaled by one gain, no circuit (ad hoc, session 33).

Usage: python probe_gain.py RUN MODEL [RUN MODEL …]

A uniform gain below 1 is what the IR-drop array does to each layer to first order (see
probe_layers.py). Scored on the first 1000 MNIST test images, as the runs are.
"""
import copy
import sys

import torch
from torch import nn

from cosim.data import load_dataset
from cosim.runconfig import load_model

test = load_dataset("mnist", "test").head(1000)
for run, name in zip(sys.argv[1::2], sys.argv[2::2]):
    base = load_model(run, name, (1, 28, 28), 10).eval()
    scores = []
    for gain in (1.0, 0.95, 0.9, 0.85, 0.8):
        model = copy.deepcopy(base)
        with torch.no_grad():
            for module in model.modules():
                if type(module) in (nn.Conv2d, nn.Linear):
                    module.weight.mul_(gain)
            accuracy = float((model(test.images).argmax(1) == test.labels).float().mean())
        scores.append(f"{gain}: {100 * accuracy:.1f}")
    print(run.rstrip("/").split("/")[-1], " | ".join(scores), flush=True)
