"""Chips: one seeded draw of everything random on the hardware, and the weights it realises.

A chip draw for a weight matrix of ``in × out`` (inputs on array rows, outputs on columns) holds,
for ``n`` chips at once, per physical device: the fault code and TF exponent θ (drawn with
:func:`cosim.device.draw_fault_map`, the one fault model of DESIGN §3) and the programming
deviation Δg in device levels (paper 002, eqs. 2–3). Device tensors have shape
``(n, polarities, slices, in, out)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cosim.device import FaultCode, draw_fault_map
from cosim.layers.arrays import exact_effective_conductance, tile_spec
from cosim.layers.config import ArrayModel, HardwareConfig


@dataclass(frozen=True)
class ChipDraw:
    """Random state of ``n`` chips for one weight matrix.

    Attributes:
        codes: int8 (n, P, S, in, out) fault codes.
        theta: float64 (n, P, S, in, out) TF exponents (0 where not TF).
        prog_noise: float64 (n, S, in, out) programming deviation of the active device, levels.
    """

    codes: torch.Tensor
    theta: torch.Tensor
    prog_noise: torch.Tensor

    @property
    def n_chips(self) -> int:
        """Number of chips drawn."""
        return int(self.codes.shape[0])

    def healthy_weights(self) -> torch.Tensor:
        """bool (n, in, out): True where none of a weight's devices is faulty."""
        return (self.codes == FaultCode.NONE).all(dim=2).all(dim=1)

    def to(self, device: torch.device) -> "ChipDraw":
        """The same draw on another torch device."""
        return ChipDraw(self.codes.to(device), self.theta.to(device), self.prog_noise.to(device))


def draw_chips(shape_in_out: tuple[int, int], hw: HardwareConfig, n_chips: int, seed: int) -> ChipDraw:
    """Draw ``n_chips`` chips for an ``in × out`` weight matrix from one explicit seed.

    The same ``(shape, hw, n_chips, seed)`` always gives the same draw; chip ``k`` of a draw of
    ``n`` chips equals chip ``k`` of any larger draw only if the shapes match (draws are not
    prefix-stable; store the seed, not the chip index).
    """
    rng = np.random.default_rng(seed)
    full = (n_chips, hw.polarities, hw.slices, *shape_in_out)
    fault_map = draw_fault_map(full, hw.faults, rng)
    noise = rng.normal(0.0, 1.0, (n_chips, hw.slices, *shape_in_out)) * hw.prog_sigma * hw.device_levels
    return ChipDraw(
        codes=torch.from_numpy(fault_map.codes),
        theta=torch.from_numpy(fault_map.theta),
        prog_noise=torch.from_numpy(noise),
    )


def slice_levels(w_in_out: torch.Tensor, hw: HardwareConfig, chips: ChipDraw) -> tuple[torch.Tensor, torch.Tensor]:
    """Differential level of every slice as the hardware realises it (no gradient).

    Args:
        w_in_out: (in, out) weights (transposed ``nn.Linear`` weight).
        hw: the configuration (physical preset).
        chips: the draw.

    Returns:
        ``(delta, scale)``: ``delta`` float64 (n, S, in, out) is ``(G⁺ − G⁻)/(g_on − g_off)·(2^K−1)``
        per slice after variation, faults and the array model; the realised weight is
        ``scale · Σ_s 2^{sK} delta_s`` with ``scale = max|W| / (2^M − 1)``.
    """
    dev = hw.device
    w = w_in_out.detach().to(torch.float64)
    wmax = w.abs().max().clamp_min(torch.finfo(torch.float64).tiny)
    full = 2**hw.weight_bits - 1
    q = torch.round(w.abs() / wmax * full).clamp(0, full).to(torch.int64)
    levels = hw.device_levels
    digits = torch.stack([(q >> (s * hw.bits_per_device)) & levels for s in range(hw.slices)]).to(torch.float64)
    active = digits.unsqueeze(0) + chips.prog_noise  # (n, S, in, out)
    positive = (w >= 0).unsqueeze(0).unsqueeze(0)
    zero = torch.zeros_like(active)
    lv = torch.stack([torch.where(positive, active, zero), torch.where(positive, zero, active)], dim=1)
    g = dev.g_off_siemens + lv / levels * (dev.g_on_siemens - dev.g_off_siemens)  # (n, P, S, in, out)
    g = torch.where(chips.codes == FaultCode.TF, g * torch.exp(-chips.theta), g)
    g = torch.where(chips.codes == FaultCode.SA1, torch.full_like(g, dev.g_on_siemens), g)
    g = torch.where(chips.codes == FaultCode.SA0, torch.full_like(g, dev.g_off_siemens), g)
    if hw.array_model is ArrayModel.EXACT:
        g = _exact(g, hw)
    delta = (g[:, 0] - g[:, 1]) / (dev.g_on_siemens - dev.g_off_siemens) * levels
    return delta, wmax / full


def one_cell_weights(w_in_out: torch.Tensor, hw: HardwareConfig, chips: ChipDraw) -> torch.Tensor:
    """Paper 000's one-cell preset, differentiable in ``w``: (n, in, out) realised weights.

    Healthy: ``w``; TF: ``w·e^{−θ}``; SA1: ``sign(w)·max|W|`` (its gradient flows to the largest
    weight, which sets the mapping's full scale); SA0: 0.
    """
    codes = chips.codes[:, 0, 0].to(w_in_out.device)
    theta = chips.theta[:, 0, 0].to(device=w_in_out.device, dtype=w_in_out.dtype)
    wmax = w_in_out.abs().max()
    sign = torch.where(w_in_out.detach() >= 0, 1.0, -1.0).to(w_in_out.dtype)
    w = w_in_out.unsqueeze(0)
    out = torch.where(codes == FaultCode.TF, w * torch.exp(-theta), w)
    out = torch.where(codes == FaultCode.SA1, (sign * wmax).expand_as(out), out)
    return torch.where(codes == FaultCode.SA0, torch.zeros_like(out), out)


def _exact(g: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """Replace every tile's conductances by its effective conductance matrix (circuit solved)."""
    n, p, s, n_in, n_out = g.shape
    out = torch.empty_like(g)
    gn = g.cpu().numpy()
    spec = tile_spec(hw)
    for r0 in range(0, n_in, hw.tile_rows):
        for c0 in range(0, n_out, hw.tile_cols):
            rows, cols = min(hw.tile_rows, n_in - r0), min(hw.tile_cols, n_out - c0)
            for idx in np.ndindex(n, p, s):
                # Unused cells of a partial tile are real devices left at HRS, on rows driven at 0 V.
                tile = np.full((hw.tile_rows, hw.tile_cols), hw.device.g_off_siemens)
                tile[:rows, :cols] = gn[idx][r0 : r0 + rows, c0 : c0 + cols]
                geff = exact_effective_conductance(tile, spec)
                out[idx][r0 : r0 + rows, c0 : c0 + cols] = torch.from_numpy(geff[:rows, :cols])
    return out.to(g.device)
