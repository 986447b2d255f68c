"""Device level: conductance window, fault maps and their effect (DESIGN §3).

One fault model is used at every level (SPICE, calibration, torch layer): per physical device a
fault code ``F`` (paper 000, eq. 3) and, for transition faults, a lognormal exponent ``θ``.
Functions here are pure and take an explicit :class:`numpy.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from cosim.errors import SpecError
from cosim.specs import DeviceSpec, FaultSpec


class FaultCode(IntEnum):
    """Per-device fault code F (paper 000, eq. 3)."""

    NONE = 0
    """As programmed."""
    TF = 1
    """Transition fault: resistance ``R · e^θ``, ``θ ~ N(0, σ²)``."""
    SA1 = 2
    """Stuck at 1: stuck at LRS (``g_on``)."""
    SA0 = 3
    """Stuck at 0: stuck at HRS (``g_off``)."""


@dataclass(frozen=True)
class FaultMap:
    """One chip's fault draw for an array of devices.

    Attributes:
        codes: int8 array, any shape ``S``: the :class:`FaultCode` of every device.
        theta: float64 array of shape ``S``: the lognormal exponent θ (0 where ``codes != TF``).
    """

    codes: np.ndarray
    theta: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the device array."""
        return tuple(self.codes.shape)

    @property
    def faulty(self) -> np.ndarray:
        """Boolean array: True where a device has any fault (the paper's defect map)."""
        return self.codes != FaultCode.NONE


def draw_fault_map(shape: tuple[int, ...], faults: FaultSpec, rng: np.random.Generator) -> FaultMap:
    """Draw independent per-device fault codes and TF exponents.

    Args:
        shape: shape of the device array, e.g. ``(rows, cols)``.
        faults: rates and TF σ.
        rng: the seeded generator every draw comes from.

    Returns:
        A :class:`FaultMap`; ``P(code = TF) = p_tf``, ``P(SA1) = p_sa1``, ``P(SA0) = p_sa0``.

    The generator always advances by the same draws, ``rng.random(shape)`` then
    ``rng.normal(0, 1, shape)``, so what it draws next does not depend on the rates. With no fault
    possible those draws are made in small chunks and discarded (the map is all zeros whatever
    they are), which keeps a large fault-free array from costing two full-size temporaries.
    """
    if faults.total_rate == 0:
        _advance(rng, int(np.prod(shape, dtype=np.int64)))
        return FaultMap(codes=np.zeros(shape, dtype=np.int8), theta=np.zeros(shape))
    u = rng.random(shape)
    codes = np.zeros(shape, dtype=np.int8)
    edges = np.cumsum([faults.p_tf, faults.p_sa1, faults.p_sa0])
    codes[u < edges[2]] = FaultCode.SA0
    codes[u < edges[1]] = FaultCode.SA1
    codes[u < edges[0]] = FaultCode.TF
    theta = rng.normal(0.0, 1.0, shape) * faults.tf_sigma
    theta = np.where(codes == FaultCode.TF, theta, 0.0)
    return FaultMap(codes=codes, theta=theta)


_ADVANCE_CHUNK = 1 << 20
"""Draws per chunk when :func:`draw_fault_map` only advances its generator (8 MB of scratch)."""


def _advance(rng: np.random.Generator, count: int) -> None:
    """Advance ``rng`` exactly as ``rng.random(count)`` then ``rng.normal(0, 1, count)`` would.

    Both are sequential per value (one 64-bit word per uniform, ziggurat normals), so chunks
    consume the stream as one call does.
    """
    scratch = np.empty(max(1, min(count, _ADVANCE_CHUNK)))
    for draw in (rng.random, rng.standard_normal):
        for start in range(0, count, scratch.size):
            draw(out=scratch[: min(scratch.size, count - start)])


def apply_faults(conductance_siemens: np.ndarray, fault_map: FaultMap, device: DeviceSpec) -> np.ndarray:
    """Return the conductances a faulty chip actually holds.

    Args:
        conductance_siemens: programmed conductances, shape ``S``, siemens.
        fault_map: fault draw of the same shape ``S``.
        device: conductance window (SA1 → ``g_on``, SA0 → ``g_off``).

    Returns:
        float64 array of shape ``S``, siemens. TF devices get ``G · e^{-θ}`` (their resistance is
        ``R · e^θ``; the result is not clipped to the window, as a real drifted device is not).
    """
    g = np.asarray(conductance_siemens, dtype=np.float64)
    if g.shape != fault_map.shape:
        raise SpecError(f"fault map shape {fault_map.shape} does not match conductances {g.shape}.")
    out = g * np.exp(-fault_map.theta)
    out = np.where(fault_map.codes == FaultCode.SA1, device.g_on_siemens, out)
    out = np.where(fault_map.codes == FaultCode.SA0, device.g_off_siemens, out)
    return out


def normalise(conductance_siemens: np.ndarray, device: DeviceSpec) -> np.ndarray:
    """``g = (G − g_off) / (g_on − g_off)``: 0 at HRS, 1 at LRS (dimensionless)."""
    g = np.asarray(conductance_siemens, dtype=np.float64)
    return (g - device.g_off_siemens) / (device.g_on_siemens - device.g_off_siemens)


def denormalise(g_normalised: np.ndarray, device: DeviceSpec) -> np.ndarray:
    """Inverse of :func:`normalise`: siemens from normalised conductance in [0, 1]."""
    g = np.asarray(g_normalised, dtype=np.float64)
    return device.g_off_siemens + g * (device.g_on_siemens - device.g_off_siemens)


def random_conductances(shape: tuple[int, ...], device: DeviceSpec, rng: np.random.Generator) -> np.ndarray:
    """Programmed conductances drawn uniformly in normalised units over the window, siemens."""
    return denormalise(rng.random(shape), device)
