"""Chips: one seeded draw of everything random on the hardware, and the weights it realises.

A chip draw for a weight matrix of ``in × out`` (inputs on array rows, outputs on columns) holds,
for ``n`` chips at once, per physical device: the fault code and TF exponent θ (drawn with
:func:`cosim.device.draw_fault_map`, the one fault model of DESIGN §3) and the programming
deviation Δg in device levels (paper 002, eqs. 2–3). Device tensors have shape
``(n, polarities, slices, in, out)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from cosim.device import FaultCode, draw_fault_map
from cosim.layers.arrays import exact_effective_conductance, tile_spec
from cosim.layers.config import ArrayModel, HardwareConfig, ReadoutTrim, TrimReference, WeightFormat


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

    def trainable_weights(self) -> torch.Tensor:
        """bool (n, in, out): True where at least one of a weight's devices is healthy.

        Paper 000 eq. 7 freezes faulty cells and updates healthy ones. With one device per weight
        (one-cell preset) that is :meth:`healthy_weights`. With bit slices in a differential pair
        a weight spans ``2·M/K`` devices; the chip model already holds every faulty device at its
        fault value whatever the weight asks, so a weight stays trainable while any of its
        devices can still be programmed, and is frozen only when all of them are faulty.
        """
        if self.codes.shape[1] * self.codes.shape[2] == 1:
            return self.healthy_weights()
        return (self.codes == FaultCode.NONE).any(dim=2).any(dim=1)

    def to(self, device: torch.device) -> "ChipDraw":
        """The same draw on another torch device."""
        return ChipDraw(self.codes.to(device), self.theta.to(device), self.prog_noise.to(device))


def chips_alike(hw: HardwareConfig) -> bool:
    """Whether every chip of ``hw`` is the same: no fault can occur and there is no programming
    variation, the only two things :func:`draw_chips` draws."""
    return hw.faults.total_rate == 0 and hw.prog_sigma == 0


def draw_chips(shape_in_out: tuple[int, int], hw: HardwareConfig, n_chips: int, seed: int,
               first_chip: int = 0, workers: int | None = None) -> ChipDraw:
    """Draw chips ``first_chip … first_chip + n_chips − 1`` for an ``in × out`` weight matrix.

    Chip ``k`` is drawn from its own stream ``numpy.random.default_rng([seed, k])``, so it is the
    same whether it is drawn alone, among 3 or among 200 chips: Monte Carlo can run in chunks of
    any size and give the same numbers. The stream gives, in this order, the fault map of the
    ``(P, S, in, out)`` devices (:func:`cosim.device.draw_fault_map`) and the programming
    deviations ``N(0, 1) · prog_sigma · (2^K − 1)`` of the ``(S, in, out)`` active devices.

    The arrays are filled in place: without faults (or without variation) the untouched parts
    stay lazily allocated zeros, which is what lets a large network's chips be drawn quickly.
    ``workers`` threads draw chips side by side (default: torch's thread count; numpy releases
    the interpreter lock while it draws); each chip has its own stream, so the numbers do not
    depend on how many.
    """
    full = (hw.polarities, hw.slices, *shape_in_out)
    codes = np.zeros((n_chips, *full), dtype=np.int8)
    theta = np.zeros((n_chips, *full))
    noise = np.zeros((n_chips, hw.slices, *shape_in_out))

    def draw(i: int) -> None:
        rng = np.random.default_rng([seed, first_chip + i])
        fault_map = draw_fault_map(full, hw.faults, rng)
        if hw.faults.total_rate > 0:  # else the map is all zeros already
            codes[i], theta[i] = fault_map.codes, fault_map.theta
        if hw.prog_sigma > 0:  # the chip's last draw: skipping it changes no other draw
            rng.standard_normal(out=noise[i])  # the values of rng.normal(0, 1, shape)
            noise[i] *= hw.prog_sigma * hw.device_levels

    workers = min(n_chips, workers or torch.get_num_threads())
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, range(n_chips)))
    else:
        for i in range(n_chips):
            draw(i)
    return ChipDraw(codes=torch.from_numpy(codes), theta=torch.from_numpy(theta), prog_noise=torch.from_numpy(noise))


@dataclass(frozen=True)
class ChipResponse:
    """How each chip turns programmed levels into realised differential levels (ideal array).

    Per slice device pair, ``delta = (digit + noise) · gain + offset`` where ``gain`` is the
    positive device's gain ``g⁺`` for a positive weight (its level sits on the positive device)
    and ``−g⁻`` for a negative one; gains are 1 (healthy), ``e^{−θ}`` (TF) or 0 (stuck). Stored
    as ``gain = neg_gain + [w ≥ 0] · gain_sum`` with ``neg_gain = −g⁻``, ``gain_sum = g⁺ + g⁻``.
    The offset is what the faulty devices leak, ``(G⁺ − G⁻)`` at level 0, in level units.
    All (n, S, in, out), except that for a chip draw without faults the first three are
    (1, 1, 1, 1), which broadcasts (and saves two full-size passes).
    """

    neg_gain: torch.Tensor
    gain_sum: torch.Tensor
    offset: torch.Tensor
    noise: torch.Tensor


def chip_response(hw: HardwareConfig, chips: ChipDraw, dtype: torch.dtype) -> ChipResponse:
    """Precompute a chip's :class:`ChipResponse` once, so each weight update costs a few passes."""
    noise = chips.prog_noise.to(dtype)
    if not bool(chips.codes.any()):  # no faulty device: every gain 1, nothing leaks
        one = torch.ones((1, 1, 1, 1), dtype=dtype, device=noise.device)
        return ChipResponse(-one, 2 * one, 0 * one, noise)
    dev = hw.device
    per_level = (dev.g_on_siemens - dev.g_off_siemens) / hw.device_levels  # siemens per level
    decay = torch.where(chips.codes == FaultCode.TF, torch.exp(-chips.theta), torch.ones_like(chips.theta))
    stuck = (chips.codes == FaultCode.SA1) | (chips.codes == FaultCode.SA0)
    gain = torch.where(stuck, torch.zeros_like(decay), decay)
    level0 = torch.where(chips.codes == FaultCode.SA1, dev.g_on_siemens, dev.g_off_siemens * decay)  # G at level 0
    offset = (level0[:, 0] - level0[:, 1]) / per_level
    return ChipResponse((-gain[:, 1]).to(dtype), (gain[:, 0] + gain[:, 1]).to(dtype), offset.to(dtype), noise)


def _digits(w: torch.Tensor, hw: HardwareConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(S, in, out) programmed level of every slice (w's magnitude on M bits) and the full scale."""
    wmax = w.abs().max().clamp_min(torch.finfo(w.dtype).tiny)
    if hw.weight_format is WeightFormat.DYNAMIC_FIXED_POINT:
        wmax = torch.exp2(torch.ceil(torch.log2(wmax)))
    elif hw.weight_format is WeightFormat.STATIC_FIXED_POINT:
        wmax = torch.full_like(wmax, hw.fixed_point_range)
    full = 2**hw.weight_bits - 1
    q = torch.round(w.abs().to(torch.float64) / wmax * full).clamp(0, full).to(torch.int32)
    shifts = torch.arange(hw.slices, dtype=torch.int32, device=w.device).reshape(-1, 1, 1) * hw.bits_per_device
    return (q.unsqueeze(0) >> shifts) & hw.device_levels, wmax


def slice_significance(hw: HardwareConfig, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(S,) what one level of each slice is worth in the magnitude's least significant bits, ``2^{sK}``."""
    return 2.0 ** (torch.arange(hw.slices, dtype=dtype, device=device) * hw.bits_per_device)


def slice_levels(w_in_out: torch.Tensor, hw: HardwareConfig, chips: ChipDraw,
                 response: ChipResponse | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Differential level of every slice as the hardware realises it (no gradient).

    Args:
        w_in_out: (in, out) weights (transposed ``nn.Linear`` weight).
        hw: the configuration (physical preset).
        chips: the draw.
        response: the chips' precomputed :func:`chip_response` (ideal array only; computed
            here when not given).

    Returns:
        ``(delta, scale)``: ``delta`` (n, S, in, out) is ``(G⁺ − G⁻)/(g_on − g_off)·(2^K−1)`` per
        slice after variation, faults, the array model and the readout trim (float64 for the exact model, the
        weight's dtype otherwise); the realised weight is ``scale · Σ_s 2^{sK} delta_s`` with
        ``scale = R / (2^M − 1)``, R the full scale of ``hw.weight_format`` (max|W| by default).
    """
    w = w_in_out.detach()
    digits, wmax = _digits(w, hw)
    scale = wmax / (2**hw.weight_bits - 1)
    if hw.array_model is not ArrayModel.IDEAL:
        delta = _circuit_levels(w, digits.to(torch.float64), hw, chips)
    else:
        r = response if response is not None else chip_response(hw, chips, w.dtype)
        gain = torch.addcmul(r.neg_gain, (w >= 0).to(w.dtype), r.gain_sum)
        delta = torch.addcmul(r.offset, r.noise + digits, gain)
    if hw.readout_trim is not None:  # on the ideal array a control that sees only variation and faults
        delta = trim_readout(delta, _trim_target(digits.to(delta.dtype), w >= 0, chips, hw), hw)
    return delta, scale


def _circuit_levels(w: torch.Tensor, digits: torch.Tensor, hw: HardwareConfig, chips: ChipDraw) -> torch.Tensor:
    """Conductances of both arrays per slice → faults → circuit → differential levels, float64."""
    dev = hw.device
    levels = hw.device_levels
    active = digits.unsqueeze(0) + chips.prog_noise  # (n, S, in, out)
    positive = (w >= 0).unsqueeze(0).unsqueeze(0)
    zero = torch.zeros_like(active)
    lv = torch.stack([torch.where(positive, active, zero), torch.where(positive, zero, active)], dim=1)
    g = dev.g_off_siemens + lv / levels * (dev.g_on_siemens - dev.g_off_siemens)  # (n, P, S, in, out)
    g = torch.where(chips.codes == FaultCode.TF, g * torch.exp(-chips.theta), g)
    g = torch.where(chips.codes == FaultCode.SA1, torch.full_like(g, dev.g_on_siemens), g)
    g = torch.where(chips.codes == FaultCode.SA0, torch.full_like(g, dev.g_off_siemens), g)
    g = _surrogate(g, hw) if hw.array_model is ArrayModel.SURROGATE else _exact(g, hw)
    return (g[:, 0] - g[:, 1]) / (dev.g_on_siemens - dev.g_off_siemens) * levels


def _trim_target(digits: torch.Tensor, positive: torch.Tensor, chips: ChipDraw, hw: HardwareConfig) -> torch.Tensor:
    """The signed levels the readout trim fits to (``hw.trim_reference``): (S, in, out) the programmed
    ones, or (n, S, in, out) with each chip's stuck devices at their stuck levels (``known_faults``)."""
    if hw.trim_reference is not TrimReference.KNOWN_FAULTS:
        return torch.where(positive, digits, -digits)
    zero = torch.zeros_like(digits)
    lv = torch.stack([torch.where(positive, digits, zero), torch.where(positive, zero, digits)])  # (P, S, in, out)
    lv = torch.where(chips.codes == FaultCode.SA1, float(hw.device_levels), lv.expand_as(chips.codes))
    lv = torch.where(chips.codes == FaultCode.SA0, 0.0, lv)
    return lv[:, 0] - lv[:, 1]


TRIM_RANGE = (0.5, 2.0)
"""The gains a readout trim can apply (a trim circuit's range): a column that faults left reading
nearly nothing is not amplified without bound."""


def trim_readout(delta: torch.Tensor, programmed: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """Apply ``hw.readout_trim``: a digital gain that maps the weights read back onto the programmed ones
    (or, with ``trim_reference = "known_faults"``, onto the levels the chip's fault map implies).

    Calibration reads each tile's effective matrix, one row at a time (unit inputs, as a
    programmer's read-verify pass does), so it sees the circuit's attenuation as the weights
    realise it: ``w = Σ_s 2^{sK} delta_s`` per weight. The gain is the least-squares fit
    ``⟨w, w_prog⟩ / ⟨w_prog, w_prog⟩`` over one tile's column (``column``: the partial sum of each
    row tile and output is scaled digitally before the tiles are added) or over the whole layer
    (``layer``), per chip, clipped to :data:`TRIM_RANGE`; a column whose programmed weights are
    all zero keeps gain 1.

    Args:
        delta: (n, S, in, out) realised differential levels of ``n`` chips; divided in place.
        programmed: (S, in, out) the signed levels the controller programmed (the weight's digits,
            negative for a negative weight), or (n, S, in, out) per chip (with a known fault map).
        hw: the configuration (``readout_trim``, ``tile_rows``, ``bits_per_device``).

    Returns:
        ``delta``, trimmed.
    """
    coef = slice_significance(hw, delta.dtype, delta.device)
    w = torch.einsum("nsio,s->nio", delta, coef)
    target = torch.einsum("...sio,s->...io", programmed.to(delta.dtype), coef)
    if hw.readout_trim is ReadoutTrim.LAYER:
        blocks, dims = [slice(None)], (-2, -1)
    else:
        blocks, dims = [slice(r0, r0 + hw.tile_rows) for r0 in range(0, delta.shape[-2], hw.tile_rows)], (-2,)
    for rows in blocks:
        num = (w[:, rows] * target[..., rows, :]).sum(dim=dims, keepdim=True)
        den = (target[..., rows, :] ** 2).sum(dim=dims, keepdim=True)
        gain = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), 1.0).clamp_(*TRIM_RANGE)
        delta[..., rows, :].div_(gain.unsqueeze(1))
    return delta


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


def _tiles(g: torch.Tensor, hw: HardwareConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """(…, in, out) → (…, T_in, T_out, rows, cols) tiles, unused cells at HRS; and the tile counts."""
    *lead, n_in, n_out = g.shape
    ti, to = -(-n_in // hw.tile_rows), -(-n_out // hw.tile_cols)
    padded = torch.nn.functional.pad(g, (0, to * hw.tile_cols - n_out, 0, ti * hw.tile_rows - n_in),
                                     value=hw.device.g_off_siemens)
    tiles = padded.reshape(*lead, ti, hw.tile_rows, to, hw.tile_cols).movedim(-3, -2)
    return tiles, (n_in, n_out)


def _untile(tiles: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    *lead, ti, to, rows, cols = tiles.shape
    return tiles.movedim(-2, -3).reshape(*lead, ti * rows, to * cols)[..., : shape[0], : shape[1]]


SURROGATE_TILES_PER_CALL = 1
"""Tiles whose G_eff the surrogate computes together. Each needs rows × rows × cols of sweep
state (1 MB for a 64×64 tile in float32); one tile per call keeps it in cache, and measured 4×
faster per tile than 16 per call (which also bounds memory)."""


SURROGATE_DTYPE = torch.float32
"""Precision of the surrogate's sweeps in the layer: float32 is about 5x faster than float64 (the
sweeps are memory-bound) and its round-off, ~4e-7 of full scale, is 300x below the surrogate's
calibrated error (1.2e-4 of full scale, ``device_models/default.h5``)."""


def _surrogate(g: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """Every tile's effective conductance from the calibrated surrogate, a few tiles per call."""
    from cosim.calibrate.surrogate import surrogate_effective_conductance

    tiles, shape = _tiles(g, hw)
    flat = tiles.reshape(-1, hw.tile_rows, hw.tile_cols).to(SURROGATE_DTYPE)
    spec, params = tile_spec(hw), hw.surrogate.params
    geff = torch.cat([surrogate_effective_conductance(flat[i : i + SURROGATE_TILES_PER_CALL], spec, params)
                      for i in range(0, flat.shape[0], SURROGATE_TILES_PER_CALL)])
    return _untile(geff.to(g.dtype).reshape(tiles.shape), shape)


def _exact(g: torch.Tensor, hw: HardwareConfig) -> torch.Tensor:
    """Replace every tile's conductances by its effective conductance matrix (circuit solved).

    Unused cells of a partial tile are real devices left at HRS, on rows driven at 0 V.
    """
    tiles, shape = _tiles(g, hw)
    spec = tile_spec(hw)
    flat = tiles.reshape(-1, hw.tile_rows, hw.tile_cols).cpu().numpy()
    geff = np.stack([exact_effective_conductance(tile, spec) for tile in flat])
    return _untile(torch.from_numpy(geff).reshape(tiles.shape), shape).to(g.device)
