"""The behavioural surrogate of one array's MVM: a few relaxed sweeps of the line equations.

Every word line and bit line of the crossbar is a resistor chain with cells hanging off it, so
given the cell currents ``I`` (rows × cols) the line voltages follow from cumulative sums:

* row ``i`` (driven at column 0 through ``r_driver``):
  ``V_row[i, j] = V_i − r_driver·Σ_m I[i, m] − r_row·Σ_{k=1..j} Σ_{m≥k} I[i, m]``;
  a floating row has no driver and takes the voltage at which its cells' currents sum to 0;
* column ``j`` (sensed after its last row through ``r_sense``):
  ``V_col[i, j] = r_sense·Σ_m I[m, j] + r_col·Σ_{k=i..rows−2} Σ_{m≤k} I[m, j]``;
* cells: ``I = G·ΔV`` (linear) or ``G·sinh(aΔV)/a``, with a 1T1R cell's access resistance in
  series and unselected 1T1R rows switched off.

The surrogate starts from the ideal currents and applies ``iterations`` damped sweeps
``I ← (1−ω)·I + ω·cell(V_row(I) − V_col(I))``; ``ω = 2/(2 + λ)`` with ``λ`` a power-iteration
estimate of the largest eigenvalue of the linearised line-loading operator, which makes the
sweep a contraction for every array. Its calibrated coefficients (:class:`SurrogateParams`) are
the number of sweeps and two scale factors on the row-side and column-side resistances that
absorb what the truncated sweep leaves. Everything is torch and differentiable in ``G`` and
``V``; cost is ``O(iterations · batch · rows · cols)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cosim.specs import ArraySpec, CellIV, CellKind, Unselected

POWER_STEPS = 6
"""Power-iteration steps of the damping estimate."""


@dataclass(frozen=True)
class SurrogateParams:
    """The calibrated coefficients of the surrogate.

    Attributes:
        iterations: relaxed sweeps of the line equations.
        row_scale: factor on ``r_wire_row_ohm`` and ``r_driver_ohm``.
        col_scale: factor on ``r_wire_col_ohm`` and ``r_sense_ohm``.
    """

    iterations: int = 16
    row_scale: float = 1.0
    col_scale: float = 1.0


def _row_drop(current: torch.Tensor, r_row: float) -> torch.Tensor:
    """(…, rows, cols): ``r_row · Σ_{k=1..j} Σ_{m≥k} I[…, m]`` along each row (0 at column 0)."""
    tail = torch.flip(torch.cumsum(torch.flip(current, [-1]), -1), [-1])  # Σ_{m≥k}
    drop = torch.cumsum(tail[..., 1:], -1) * r_row
    return torch.nn.functional.pad(drop, (1, 0))


def _col_rise(current: torch.Tensor, r_col: float, r_sense: float) -> torch.Tensor:
    """(…, rows, cols): column node voltages for cell currents ``current``."""
    head = torch.cumsum(current, -2)  # Σ_{m≤k}
    rise = torch.flip(torch.cumsum(torch.flip(head[..., :-1, :], [-2]), -2), [-2]) * r_col
    return torch.nn.functional.pad(rise, (0, 0, 0, 1)) + r_sense * current.sum(-2, keepdim=True)


def surrogate_currents(g_siemens: torch.Tensor, v_volt: torch.Tensor, spec: ArraySpec,
                       params: SurrogateParams = SurrogateParams()) -> torch.Tensor:
    """Column currents the array returns for each input vector.

    Args:
        g_siemens: (rows, cols) or (batch, rows, cols) device conductances, siemens.
        v_volt: (batch, rows) input voltages, volts (0 = unselected row).
        spec: the array's parasitics, cell kind, unselected-row policy and I–V law.
        params: calibrated coefficients.

    Returns:
        (batch, cols) currents into the sense nodes, amperes (same dtype as ``v_volt``).
    """
    v = v_volt
    g = g_siemens.to(v.dtype).expand(v.shape[0], *g_siemens.shape[-2:])
    r_row, r_drv = spec.r_wire_row_ohm * params.row_scale, spec.r_driver_ohm * params.row_scale
    r_col, r_sense = spec.r_wire_col_ohm * params.col_scale, spec.r_sense_ohm * params.col_scale
    selected = (v > 0).unsqueeze(-1)
    if spec.cell is CellKind.ONE_T_ONE_R:
        g = g * selected  # access devices off: the row's cells carry nothing
    floating = (~selected) & (spec.unselected is Unselected.FLOATING) & (spec.cell is CellKind.ONE_R)
    sinh = spec.cell_iv is CellIV.SINH
    a = spec.sinh_a_per_volt
    r_acc = spec.r_access_ohm if spec.cell is CellKind.ONE_T_ONE_R else 0.0
    vin = v.unsqueeze(-1)

    def load(current: torch.Tensor) -> torch.Tensor:
        """Voltage across each cell's terminals given the cell currents (drivers, wires, sense)."""
        drop = _row_drop(current, r_row)
        v_col = _col_rise(current, r_col, r_sense)
        v_row = vin - r_drv * current.sum(-1, keepdim=True) - drop
        if bool(floating.any()):
            # A floating row sits where its cells' (chord) currents cancel: Σ_m g_m (v0 − drop_m − v_col_m) = 0.
            weight = g.clamp_min(torch.finfo(g.dtype).tiny)
            v0 = (weight * (drop + v_col)).sum(-1, keepdim=True) / weight.sum(-1, keepdim=True)
            v_row = torch.where(floating, v0 - drop, v_row)
        return v_row - v_col

    def cell(dv: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        dv = dv - r_acc * current
        return g * torch.sinh(a * dv) / a if sinh else g * dv

    current = cell(torch.where(floating, torch.zeros_like(vin), vin).expand_as(g), torch.zeros_like(g))
    # Damping from the largest eigenvalue of the linearised loading operator I ↦ g_eff·(R I).
    with torch.no_grad():
        g_lin = g * (math.cosh(a * spec.v_read_volt) if sinh else 1.0)
        g_lin = g_lin / (1 + g_lin * r_acc)
        x = torch.ones_like(g)
        lam = torch.zeros(g.shape[0], 1, 1, dtype=g.dtype, device=g.device)
        for _ in range(POWER_STEPS):
            y = g_lin * (_row_drop(x, r_row) + r_drv * x.sum(-1, keepdim=True) + _col_rise(x, r_col, r_sense))
            lam = y.flatten(1).norm(dim=1).view(-1, 1, 1) / x.flatten(1).norm(dim=1).view(-1, 1, 1).clamp_min(1e-300)
            x = y / y.flatten(1).abs().amax(dim=1).view(-1, 1, 1).clamp_min(1e-300)
        omega = 2.0 / (2.0 + 1.1 * lam)
    for _ in range(params.iterations):
        current = (1 - omega) * current + omega * cell(load(current), current)
    return current.sum(-2)


def surrogate_effective_conductance(g_siemens: torch.Tensor, spec: ArraySpec,
                                    params: SurrogateParams = SurrogateParams()) -> torch.Tensor:
    """(…, rows, cols) ``G_eff`` of grounded linear 1R tiles from the surrogate: one sweep batch of
    unit inputs per tile, so that ``I = V · G_eff`` (the layer's array-model interface)."""
    rows = g_siemens.shape[-2]
    lead = g_siemens.shape[:-2]
    g = g_siemens.reshape(-1, 1, rows, g_siemens.shape[-1]).expand(-1, rows, -1, -1).reshape(-1, rows, g_siemens.shape[-1])
    unit = torch.eye(rows, dtype=g_siemens.dtype, device=g_siemens.device).repeat(max(1, math.prod(lead)), 1)
    out = surrogate_currents(g, unit * spec.v_read_volt, spec, params) / spec.v_read_volt
    return out.reshape(*lead, rows, g_siemens.shape[-1])
