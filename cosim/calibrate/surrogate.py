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


def _reverse_cumsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``Σ_{m≥k} x_m`` along ``dim`` (total minus the exclusive prefix sum; no flips, no copies)."""
    return x.sum(dim, keepdim=True) - torch.cumsum(x, dim) + x


def _row_drop(current: torch.Tensor, r_row: float) -> torch.Tensor:
    """(…, rows, cols): ``r_row · Σ_{k=1..j} Σ_{m≥k} I[…, m]`` along each row (0 at column 0)."""
    tail = _reverse_cumsum(current, -1)  # Σ_{m≥k}
    return (torch.cumsum(tail, -1) - tail[..., :1]) * r_row


def _col_rise(current: torch.Tensor, r_col: float, r_sense: float) -> torch.Tensor:
    """(…, rows, cols): column node voltages for cell currents ``current``."""
    head = torch.cumsum(current, -2)  # Σ_{m≤k}; the last row's is the column total
    total = head[..., -1:, :]
    # Σ_{k=i..rows−2} head_k = (Σ_{k≥i} head_k) − head_last
    return (_reverse_cumsum(head, -2) - total) * r_col + r_sense * total


def surrogate_currents(g_siemens: torch.Tensor, v_volt: torch.Tensor, spec: ArraySpec,
                       params: SurrogateParams = SurrogateParams()) -> torch.Tensor:
    """Column currents the array returns for each input vector.

    Args:
        g_siemens: (…, rows, cols) device conductances, siemens; the leading dimensions
            broadcast against those of ``v_volt`` (one matrix for a whole batch, or one per vector).
        v_volt: (…, rows) input voltages, volts (0 = unselected row).
        spec: the array's parasitics, cell kind, unselected-row policy and I–V law.
        params: calibrated coefficients.

    Returns:
        (…, cols) currents into the sense nodes, amperes (same dtype as ``v_volt``).
    """
    v = v_volt
    g = g_siemens.to(v.dtype)
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

    # Node voltages of a passive network driven by sources in [0, v_max] stay in [0, v_max], so no
    # device ever sees more than ±v_max: clamping there leaves the solution alone and keeps an
    # overshooting sinh sweep from running away.
    v_max = v.amax(-1)[..., None, None]

    def cell(dv: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        dv = torch.clamp(dv - r_acc * current, -v_max, v_max)
        return g * torch.sinh(a * dv) / a if sinh else g * dv

    shape = torch.broadcast_shapes(g.shape, vin.shape)
    current = cell(torch.where(floating, torch.zeros_like(vin), vin).expand(shape), torch.zeros(shape, dtype=v.dtype,
                                                                                                  device=v.device))
    # Damping from the largest eigenvalue of the linearised loading operator I ↦ g_eff·(R I).
    with torch.no_grad():
        # Largest small-signal slope of a cell (sinh: at v_read across it); the access resistance
        # enters the sweep explicitly, so it loads the operator like a line resistance does.
        # Estimated on the conductances before 1T1R row selection (an upper bound for every
        # vector), once per distinct conductance matrix rather than once per input vector.
        g_lin = g_siemens.to(v.dtype) * (math.cosh(a * spec.v_read_volt) if sinh else 1.0)
        x = torch.ones_like(g_lin)
        lam = torch.zeros(*g_lin.shape[:-2], 1, 1, dtype=g.dtype, device=g.device)
        for _ in range(POWER_STEPS):
            y = g_lin * (_row_drop(x, r_row) + r_drv * x.sum(-1, keepdim=True) + _col_rise(x, r_col, r_sense)
                         + r_acc * x)
            lam = torch.linalg.vector_norm(y, dim=(-2, -1), keepdim=True) / torch.linalg.vector_norm(
                x, dim=(-2, -1), keepdim=True).clamp_min(1e-300)
            x = y / y.abs().amax(dim=(-2, -1), keepdim=True).clamp_min(1e-300)
        omega = 2.0 / (2.0 + 1.1 * lam)
    for _ in range(params.iterations):
        current = torch.lerp(current, cell(load(current), current), omega)
    return current.sum(-2)


def surrogate_effective_conductance(g_siemens: torch.Tensor, spec: ArraySpec,
                                    params: SurrogateParams = SurrogateParams()) -> torch.Tensor:
    """(…, rows, cols) ``G_eff`` of grounded linear 1R tiles from the surrogate: every tile driven
    by each unit input in turn, so that ``I = V · G_eff`` (the layer's array-model interface)."""
    rows = g_siemens.shape[-2]
    unit = torch.eye(rows, dtype=g_siemens.dtype, device=g_siemens.device) * spec.v_read_volt
    return surrogate_currents(g_siemens.unsqueeze(-3), unit, spec, params) / spec.v_read_volt
