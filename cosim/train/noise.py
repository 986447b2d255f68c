"""Weight-noise forwards for GNI, DVA and OVF, without touching the stored weights.

The bit-sliced programming variation of DESIGN §3 adds to each weight the sum of ``M/K``
independent Gaussians of std ``σ_d·(2^K−1)·2^{sK}·max|W|/(2^M−1)``; a sum of independent
Gaussians is Gaussian, so the injected noise is exactly ``N(0, (c·σ_d·max|W|)²)`` with
``c = (2^K−1)·sqrt(Σ_s 4^{sK})/(2^M−1)`` (0.7776 for M = 8, K = 2). DVA multiplies each weight
by ``e^θ``, θ ~ N(0, σ²). Noise reaches every Linear/Conv2d weight; max|W| is taken without
gradient, the noise is added differentiably (the gradient is that of the noisy weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from cosim.layers import HardwareConfig


def slice_noise_factor(hw: HardwareConfig) -> float:
    """``c`` above: weight-noise std per unit σ_d and unit max|W| for the configured slices."""
    levels = 2**hw.bits_per_device - 1
    return levels * math.sqrt(sum(4.0 ** (s * hw.bits_per_device) for s in range(hw.weight_bits // hw.bits_per_device))) / (
        2**hw.weight_bits - 1)


def weight_names(model: nn.Module) -> list[str]:
    """Names of the weights that sit on crossbars (every Linear/Conv2d weight)."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Conv2d))]


def standard_normals(model: nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One N(0, 1) draw per crossbar weight (a noise *pattern* that :func:`noisy_forward` can scale)."""
    params = dict(model.named_parameters())
    return {name: torch.randn(params[name].shape, generator=generator, device=params[name].device,
                              dtype=params[name].dtype) for name in weight_names(model)}


def noisy_forward(model: nn.Module, x: torch.Tensor, generator: torch.Generator, additive_sigma: float = 0.0,
                  factor: float = 1.0, lognormal_sigma: float = 0.0,
                  pattern: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``model(x)`` with weight noise (see module doc); the stored weights stay clean.

    Args:
        additive_sigma: σ_d of the bit-sliced variation (0: none).
        factor: ``c`` from :func:`slice_noise_factor`.
        lognormal_sigma: σ of the multiplicative ``e^θ`` (0: none).
        generator: the seeded source of every fresh draw (on the model's device).
        pattern: the additive noise's standard normals (from :func:`standard_normals`); ``None``
            draws a fresh pattern. OVF passes one pattern to all its forwards (paper 002: the
            variational forwards use the backbone's Gaussian noise pattern with a larger σ).
    """
    params = dict(model.named_parameters())
    noisy = {}
    for name in weight_names(model):
        w = params[name]
        out = w
        if lognormal_sigma > 0:
            theta = torch.randn(w.shape, generator=generator, device=w.device, dtype=w.dtype) * lognormal_sigma
            out = out * torch.exp(theta)
        if additive_sigma > 0:
            eps = pattern[name] if pattern is not None else torch.randn(
                w.shape, generator=generator, device=w.device, dtype=w.dtype)
            out = out + eps * (factor * additive_sigma * w.detach().abs().max())
        noisy[name] = out
    return functional_call(model, noisy, (x,), strict=False)
