"""Hardware configuration of the torch crossbar layer (DESIGN §3–4)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any

from cosim.errors import SpecError
from cosim.specs import DeviceSpec, FaultSpec, coerce_enums


class ArrayModel(str, Enum):
    """How one array turns input voltages into column currents."""

    IDEAL = "ideal"
    """``I = V · G`` per tile."""
    SURROGATE = "surrogate"
    """The calibrated surrogate (``surrogate_model``, an HDF5 file from ``cosim calibrate``) gives
    each tile's effective conductance matrix, once per chip draw and weight state; differentiable."""
    EXACT = "exact"
    """The linear circuit with wires, driver and sense resistance solved exactly (nodal analysis),
    as an effective conductance matrix per tile, computed once per chip draw and weight state."""


class WeightFormat(str, Enum):
    """How a layer's weight range maps onto the M-bit magnitude (physical preset)."""

    MAX_SCALED = "max_scaled"
    """Full scale = the layer's max|W| exactly (no unused MSB; the default)."""
    DYNAMIC_FIXED_POINT = "dynamic_fixed_point"
    """Paper 001's DFP: per layer, the fraction length that fits max|W|, i.e. full scale =
    ``2^ceil(log2 max|W|)``; at most one MSB's worth of range goes unused."""
    STATIC_FIXED_POINT = "static_fixed_point"
    """One fixed-point format for every layer, full scale ``fixed_point_range`` (weights beyond it
    clip): small-range layers leave their MSB devices idle, which low on/off ratios punish."""


class Mapping(str, Enum):
    """How a weight becomes devices."""

    ONE_CELL = "one_cell"
    """Paper 000's preset: one device per weight holding ``|w|/max|W|`` (continuous), sign kept in
    the periphery; SA1 → ``±max|W|`` with the weight's sign, SA0 → 0, TF → ``w·e^{−θ}``."""
    DIFFERENTIAL_SLICES = "differential_slices"
    """The physical preset: ``M``-bit magnitude on ``M/K`` devices of ``K`` bits, in a differential
    pair of arrays (positive and negative parts); faults hit every device, idle ones included."""


class ReadoutTrim(str, Enum):
    """How the periphery calibrates its gain against the circuit's attenuation (array models
    ``surrogate`` and ``exact``), once per chip after programming. On the ideal array (a
    control) the same fit sees only what the devices realise: variation and faults.

    Calibration reads each tile's effective matrix (one row at a time) and fits, by least squares,
    a digital gain that maps the weights read back onto the programmed ones, which are all the
    controller knows without a fault map: the fit sees IR drop, variation and faults together
    (``trim_reference = "known_faults"`` fits to the programmed levels with the stuck devices at
    their stuck levels instead). A gain per column cannot undo how the attenuation varies along a
    column (far cells lose more), nor faults (:func:`cosim.layers.chip.trim_readout`;
    docs/decisions.md).
    """

    COLUMN = "column"
    """One gain per row tile and output: each tile's digital partial sum is scaled before the
    tiles are added."""
    LAYER = "layer"
    """One gain per layer."""


class TrimReference(str, Enum):
    """What a readout trim fits the weights read back to (``readout_trim`` set)."""

    PROGRAMMED = "programmed"
    """The programmed levels, all the controller knows without a fault map (the default, also
    when unset): stuck devices pull the fitted gain."""
    KNOWN_FAULTS = "known_faults"
    """The programmed levels with the chip's stuck devices at their stuck levels (SA1 at the top
    level, SA0 at 0), as a test pass that finds the fault map reports them (paper 000 assumes that
    map known). TF devices and programming variation stay unknown. The gain then answers for the
    circuit's attenuation, not for the faults."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise SpecError(message)


@dataclass(frozen=True)
class HardwareConfig:
    """Everything the crossbar layer needs to know about the chip.

    The defaults are DESIGN's: 64×64 tiles, 8-bit weights on 2-bit devices, a differential pair,
    on/off ratio 100, no DAC/ADC quantisation (None), paper 000's fault rates, no programming variation,
    the ideal array model.
    """

    tile_rows: int = 64
    """Array rows (inputs) per tile."""
    tile_cols: int = 64
    """Array columns (outputs) per tile."""
    weight_bits: int = 8
    """M: bits of weight magnitude (physical preset)."""
    bits_per_device: int = 2
    """K: bits one device stores; must divide ``weight_bits``."""
    mapping: Mapping = Mapping.DIFFERENTIAL_SLICES
    """Weight-to-device mapping preset."""
    weight_format: WeightFormat = WeightFormat.MAX_SCALED
    """Weight range → M-bit magnitude (DFP of paper 001 is ``dynamic_fixed_point``)."""
    fixed_point_range: float = 1.0
    """Full scale of ``static_fixed_point`` (same for every layer)."""
    device: DeviceSpec = field(default_factory=DeviceSpec)
    """Conductance window (its on/off ratio sets how much idle-device faults leak)."""
    faults: FaultSpec = field(default_factory=FaultSpec.none)
    """Per-device fault rates and TF σ (default: none; ``FaultSpec()`` gives paper 000's)."""
    prog_sigma: float = 0.0
    """σ_d: programming variation per device, relative to one device's full range (paper 002)."""
    dac_bits: int | None = None
    """Input DAC resolution in bits, >= 2 (None = no quantisation). Signed, symmetric, per-vector range."""
    adc_bits: int | None = None
    """ADC resolution in bits per tile, slice and column, >= 2 (None = no quantisation)."""
    adc_range: float = 1.0
    """ADC full scale as a fraction of the largest possible slice output of a tile."""
    array_model: ArrayModel = ArrayModel.IDEAL
    """Which array model turns conductances into currents."""
    surrogate_model: str = ""
    """Path of the calibrated surrogate (array model ``surrogate``), e.g. ``device_models/default.h5``."""
    strict_range: bool = False
    """Refuse (instead of warning about) a tile outside the surrogate's calibrated range."""
    r_wire_row_ohm: float = 2.5
    """Word-line resistance per cell pitch (exact model), ohm."""
    r_wire_col_ohm: float = 2.5
    """Bit-line resistance per cell pitch (exact model), ohm."""
    r_driver_ohm: float = 2.5
    """Row-driver resistance (exact model), ohm."""
    r_sense_ohm: float = 2.5
    """Column sense resistance (exact model), ohm."""
    readout_trim: ReadoutTrim | None = None
    """Gain calibration of the readout, once per chip (None = uncalibrated readout, the default).
    Made for the circuit's attenuation (array models ``surrogate`` and ``exact``); on the ideal
    array it sees only the variation and faults (mapping ``differential_slices``)."""
    trim_reference: TrimReference | None = None
    """What the readout trim fits to (``readout_trim`` set; None = ``programmed``, the default)."""

    surrogate: Any = field(default=None, init=False, repr=False, compare=False)
    """The loaded surrogate model (set from ``surrogate_model``; not a constructor argument)."""

    def __post_init__(self) -> None:
        for name in ("tile_rows", "tile_cols", "weight_bits", "bits_per_device"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f"{name} must be a whole number >= 1, got {value!r}.")
        _check(
            self.weight_bits % self.bits_per_device == 0,
            f"bits_per_device K={self.bits_per_device} must divide weight_bits M={self.weight_bits}.",
        )
        _check(self.weight_bits <= 24, f"weight_bits must be <= 24, got {self.weight_bits}.")
        for name in ("dac_bits", "adc_bits"):
            value = getattr(self, name)
            _check(
                value is None or (isinstance(value, int) and 2 <= value <= 24),
                f"{name} must be a whole number in 2..24 (a signed converter needs at least 2 bits), or None "
                f"to switch it off; got {value!r}.",
            )
        _check(math.isfinite(self.prog_sigma) and self.prog_sigma >= 0, f"prog_sigma must be >= 0, got {self.prog_sigma!r}.")
        _check(math.isfinite(self.adc_range) and self.adc_range > 0, f"adc_range must be > 0, got {self.adc_range!r}.")
        _check(math.isfinite(self.fixed_point_range) and self.fixed_point_range > 0,
               f"fixed_point_range must be > 0, got {self.fixed_point_range!r}.")
        coerce_enums(self, {"mapping": Mapping, "array_model": ArrayModel, "weight_format": WeightFormat})
        if self.readout_trim is not None:
            coerce_enums(self, {"readout_trim": ReadoutTrim})
            _check(self.mapping is not Mapping.ONE_CELL,
                   "readout_trim fits the levels the devices read back: the one_cell preset holds abstract "
                   "weights, not device levels; it needs mapping differential_slices.")
        if self.trim_reference is not None:
            coerce_enums(self, {"trim_reference": TrimReference})
            _check(self.readout_trim is not None, "trim_reference says what the readout trim fits to: it needs "
                   "readout_trim (column or layer).")
        for name in ("r_wire_row_ohm", "r_wire_col_ohm", "r_driver_ohm", "r_sense_ohm"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number >= 0, got {value!r}.")
        _check(self.mapping is not Mapping.ONE_CELL or self.array_model is ArrayModel.IDEAL,
               "the one_cell preset holds abstract weights, not conductances: array models other than ideal "
               "need mapping differential_slices.")
        if self.array_model is ArrayModel.SURROGATE:
            _check(bool(self.surrogate_model), "array_model surrogate needs surrogate_model, the path of a "
                   "calibrated model (device_models/default.h5).")
            from cosim.calibrate.store import read_model

            model = read_model(Path(self.surrogate_model))
            check_calibrated_range(model.campaign, self)
            object.__setattr__(self, "surrogate", model)

    def on_ideal_array(self) -> "HardwareConfig":
        """This chip on the plain ideal array: the circuit's own parameters (surrogate file, wire,
        driver and sense resistances) and the readout trim with its reference reset to their
        defaults, so two configurations that differ only in their circuit or trim compare equal.
        (The ideal array can be trimmed, as a control; this is the untrimmed baseline that
        on-chip retraining goes through and every paired Δ is taken against.)"""
        circuit = ("surrogate_model", "strict_range", "r_wire_row_ohm", "r_wire_col_ohm", "r_driver_ohm", "r_sense_ohm",
                   "readout_trim", "trim_reference")
        defaults = {f.name: f.default for f in fields(self) if f.name in circuit}
        return replace(self, array_model=ArrayModel.IDEAL, **defaults)

    @property
    def slices(self) -> int:
        """Devices per weight magnitude (M/K; 1 for the one-cell preset)."""
        return 1 if self.mapping is Mapping.ONE_CELL else self.weight_bits // self.bits_per_device

    @property
    def polarities(self) -> int:
        """Arrays per weight sign: 2 (differential pair) or 1 (one cell, sign in the periphery)."""
        return 1 if self.mapping is Mapping.ONE_CELL else 2

    @property
    def device_levels(self) -> int:
        """Highest level of one device, ``2^K − 1`` (1 for the continuous one-cell preset)."""
        return 1 if self.mapping is Mapping.ONE_CELL else 2**self.bits_per_device - 1


class OutOfRangeWarning(UserWarning):
    """A tile lies outside the calibrated range of its surrogate."""


def check_calibrated_range(campaign: Any, hw: HardwareConfig) -> None:
    """Warn (or, with ``hw.strict_range``, refuse) when the layer's tiles leave the campaign's ranges.

    The layer's tiles are grounded 1R arrays with linear cells, ``tile_rows × tile_cols``.
    """
    problems = []
    if max(hw.tile_rows, hw.tile_cols) > max(campaign.sizes) or min(hw.tile_rows, hw.tile_cols) < min(campaign.sizes):
        problems.append(f"tile {hw.tile_rows}x{hw.tile_cols} outside sizes {min(campaign.sizes)}..{max(campaign.sizes)}")
    for name, value, (lo, hi) in (("r_wire_row_ohm", hw.r_wire_row_ohm, campaign.r_wire_ohm),
                                  ("r_wire_col_ohm", hw.r_wire_col_ohm, campaign.r_wire_ohm),
                                  ("r_driver_ohm", hw.r_driver_ohm, campaign.r_driver_ohm),
                                  ("r_sense_ohm", hw.r_sense_ohm, campaign.r_sense_ohm)):
        if not lo <= value <= hi:
            problems.append(f"{name} {value:g} outside {lo:g}..{hi:g}")
    ratio = hw.device.r_hrs_ohm / hw.device.r_lrs_ohm
    if not campaign.on_off_ratio[0] <= ratio <= campaign.on_off_ratio[1]:
        problems.append(f"on/off ratio {ratio:g} outside {campaign.on_off_ratio[0]:g}..{campaign.on_off_ratio[1]:g}")
    kinds = {getattr(c, "value", c) for c in campaign.cells}, {getattr(c, "value", c) for c in campaign.ivs}, {
        getattr(c, "value", c) for c in campaign.unselected}
    if "1R" not in kinds[0] or "linear" not in kinds[1] or "grounded" not in kinds[2]:
        problems.append("the campaign has no grounded 1R linear arrays (the layer's tiles)")
    if not problems:
        return
    message = f"{hw.surrogate_model}: used outside its calibrated range: " + "; ".join(problems) + "."
    if hw.strict_range:
        raise SpecError(message)
    warnings.warn(message, OutOfRangeWarning, stacklevel=3)
