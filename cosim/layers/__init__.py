"""The fast torch crossbar layer: tiles, bit slices, differential pairs, faults, variation,
DAC/ADC and the array models (DESIGN §4)."""

from cosim.layers.chip import ChipDraw, chips_alike, draw_chips
from cosim.layers.config import ArrayModel, HardwareConfig, Mapping, ReadoutTrim, TrimReference, WeightFormat
from cosim.layers.modules import (
    CrossbarConv2d,
    CrossbarLinear,
    convert,
    crossbar_layers,
    hold_chips,
    quantise_signed,
    repeat_for_chips,
    split_chips,
    unconvert,
)

__all__ = [
    "ArrayModel",
    "ChipDraw",
    "chips_alike",
    "CrossbarConv2d",
    "CrossbarLinear",
    "HardwareConfig",
    "Mapping",
    "convert",
    "crossbar_layers",
    "hold_chips",
    "draw_chips",
    "quantise_signed",
    "ReadoutTrim",
    "TrimReference",
    "repeat_for_chips",
    "split_chips",
    "unconvert",
    "WeightFormat",
]
