"""Frozen specifications and enums that travel between stages (DESIGN §2–3).

Units are part of every name: ``_ohm``, ``_siemens``, ``_volt``, ``_amp``.
All dataclasses validate themselves on construction and raise
:class:`~cosim.errors.SpecError` with one clear sentence.

This module sits at the far left of the one-way flow
``specs → device → spice → calibrate → layers → train → eval → cli``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from cosim.errors import SpecError


class CellKind(str, Enum):
    """What sits at a crosspoint."""

    ONE_R = "1R"
    """Passive resistor: sneak paths through unselected or floating lines are real."""
    ONE_T_ONE_R = "1T1R"
    """Access transistor in series: rows whose input is 0 are switched off (isolated)."""


class Unselected(str, Enum):
    """What happens to a row whose input voltage is exactly 0 during a read."""

    GROUNDED = "grounded"
    """Its driver holds it at 0 V (through ``r_driver_ohm``)."""
    FLOATING = "floating"
    """Its driver is disconnected: the line floats and sneak paths run through it."""


class CellIV(str, Enum):
    """Current–voltage law of one resistive device."""

    LINEAR = "linear"
    """``I = G · V``."""
    SINH = "sinh"
    """``I = G · sinh(a · V) / a`` (``a = sinh_a_per_volt``); equals ``G · V`` for small V."""


class Solver(str, Enum):
    """Which engine solves a crossbar circuit."""

    NGSPICE = "ngspice"
    """Ground truth: ngspice through PySpice's shared-library mode, in worker processes."""
    NODAL = "nodal"
    """Exact sparse nodal analysis with scipy (linear cells only): fast reference."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SpecError(message)


def coerce_enums(obj: object, fields: dict[str, type[Enum]]) -> None:
    """Store each named field of a frozen dataclass as its enum, accepting the enum's string
    values too (from TOML or the CLI); an unknown value is refused naming the choices."""
    for name, enum in fields.items():
        value = getattr(obj, name)
        try:
            object.__setattr__(obj, name, enum(value))
        except ValueError:
            choices = ", ".join(e.value for e in enum)  # type: ignore[attr-defined]
            raise SpecError(f"{name} must be one of {choices}; got {value!r}.") from None


def _finite_nonneg(name: str, value: float) -> None:
    _require(
        isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
        f"{name} must be a finite number >= 0, got {value!r}.",
    )


@dataclass(frozen=True)
class DeviceSpec:
    """The conductance window of one RRAM device (DESIGN §2)."""

    r_lrs_ohm: float = 10e3
    """Low-resistance state (fully SET), ohm. ``g_on = 1 / r_lrs_ohm``."""
    r_hrs_ohm: float = 1e6
    """High-resistance state (fully RESET), ohm. ``g_off = 1 / r_hrs_ohm``."""

    def __post_init__(self) -> None:
        for name in ("r_lrs_ohm", "r_hrs_ohm"):
            value = getattr(self, name)
            _require(
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0,
                f"{name} must be a finite resistance > 0 ohm, got {value!r}.",
            )
        _require(
            self.r_hrs_ohm > self.r_lrs_ohm,
            f"r_hrs_ohm ({self.r_hrs_ohm:g}) must exceed r_lrs_ohm ({self.r_lrs_ohm:g}).",
        )

    @property
    def g_on_siemens(self) -> float:
        """LRS conductance, siemens."""
        return 1.0 / self.r_lrs_ohm

    @property
    def g_off_siemens(self) -> float:
        """HRS conductance, siemens."""
        return 1.0 / self.r_hrs_ohm

    @property
    def on_off_ratio(self) -> float:
        """``r_hrs_ohm / r_lrs_ohm`` (dimensionless)."""
        return self.r_hrs_ohm / self.r_lrs_ohm


@dataclass(frozen=True)
class FaultSpec:
    """Per-device fault probabilities and transition-fault spread (DESIGN §3, paper 000 eq. 3).

    Defaults are paper 000's rates after FAMCroNA (25.03 % faulty in total).
    """

    p_tf: float = 0.1424
    """Probability of a transition fault (F = 1): resistance ``R · e^θ``, ``θ ~ N(0, tf_sigma²)``."""
    p_sa1: float = 0.0904
    """Probability of stuck-at-1 (F = 2): stuck at LRS, ``g_on``."""
    p_sa0: float = 0.0175
    """Probability of stuck-at-0 (F = 3): stuck at HRS, ``g_off``."""
    tf_sigma: float = 0.2
    """Standard deviation σ of the lognormal exponent θ of a transition fault (paper range 0.1–0.5)."""

    def __post_init__(self) -> None:
        for name in ("p_tf", "p_sa1", "p_sa0"):
            value = getattr(self, name)
            _require(
                isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1,
                f"{name} must be a probability in [0, 1], got {value!r}.",
            )
        _require(
            self.total_rate <= 1 + 1e-12,
            f"fault rates sum to {self.total_rate:g} > 1 (p_tf + p_sa1 + p_sa0 must be <= 1).",
        )
        _finite_nonneg("tf_sigma", self.tf_sigma)

    @property
    def total_rate(self) -> float:
        """Probability that a device is faulty in any way."""
        return self.p_tf + self.p_sa1 + self.p_sa0

    @classmethod
    def none(cls) -> "FaultSpec":
        """A fault-free chip."""
        return cls(p_tf=0.0, p_sa1=0.0, p_sa0=0.0)


@dataclass(frozen=True)
class ArraySpec:
    """One crossbar array and its periphery, as solved at the circuit level (DESIGN §2).

    Row ``i`` is driven at its column-0 end by ``V_i`` through ``r_driver_ohm``; column ``j``
    is sensed at its row-``rows-1`` end. Adjacent row nodes are joined by ``r_wire_row_ohm``,
    adjacent column nodes by ``r_wire_col_ohm``. With ``r_driver_ohm == r_wire_row_ohm`` and
    ``r_sense_ohm == r_wire_col_ohm`` (the defaults) the topology is badcrossbar's.
    """

    rows: int
    """Number of word lines (inputs)."""
    cols: int
    """Number of bit lines (outputs)."""
    r_wire_row_ohm: float = 2.5
    """Word-line resistance per cell pitch, ohm (0 = ideal wire)."""
    r_wire_col_ohm: float = 2.5
    """Bit-line resistance per cell pitch, ohm (0 = ideal wire)."""
    r_driver_ohm: float = 2.5
    """Output resistance of each row driver, ohm (0 = ideal voltage source)."""
    r_sense_ohm: float = 2.5
    """Resistance from each column's end to the sense ground, ohm (0 = ideal virtual ground)."""
    cell: CellKind = CellKind.ONE_R
    """Crosspoint kind: passive ``1R`` or transistor-gated ``1T1R``."""
    unselected: Unselected = Unselected.GROUNDED
    """Whether rows with input 0 are driven to 0 V or left floating."""
    cell_iv: CellIV = CellIV.LINEAR
    """Device I–V law: linear, or ``G · sinh(aV)/a``."""
    sinh_a_per_volt: float = 3.0
    """Nonlinearity ``a`` of the sinh cell, 1/V (ignored for linear cells)."""
    r_access_ohm: float = 0.0
    """On-resistance of the 1T1R access transistor in series with the device, ohm (ignored for 1R)."""
    v_read_volt: float = 0.2
    """Largest input voltage a driver applies, volt; inputs must lie in ``[0, v_read_volt]``."""

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                f"{name} must be a whole number >= 1, got {value!r}.",
            )
        for name in ("r_wire_row_ohm", "r_wire_col_ohm", "r_driver_ohm", "r_sense_ohm", "r_access_ohm"):
            _finite_nonneg(name, getattr(self, name))
        coerce_enums(self, {"cell": CellKind, "unselected": Unselected, "cell_iv": CellIV})
        _require(
            math.isfinite(self.sinh_a_per_volt) and self.sinh_a_per_volt > 0,
            f"sinh_a_per_volt must be a finite number > 0, got {self.sinh_a_per_volt!r}.",
        )
        _require(
            math.isfinite(self.v_read_volt) and self.v_read_volt > 0,
            f"v_read_volt must be a finite voltage > 0, got {self.v_read_volt!r}.",
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return (self.rows, self.cols)

    @property
    def isolates_unselected(self) -> bool:
        """True if rows with zero input take no part in the circuit (1T1R access devices off)."""
        return self.cell is CellKind.ONE_T_ONE_R

    @property
    def topology_depends_on_input(self) -> bool:
        """True if which rows are selected changes the circuit (floating rows or 1T1R)."""
        return self.isolates_unselected or self.unselected is Unselected.FLOATING


@dataclass(frozen=True)
class SolveOptions:
    """How to run a batch of circuit solves."""

    solver: Solver = Solver.NGSPICE
    """Which engine to use."""
    workers: int = 2
    """ngspice worker processes (each holds one shared-library instance)."""
    timeout_s: float = 600.0
    """Wall-clock limit for one worker's job, seconds; a worker past it is killed."""

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "solver", Solver(self.solver))
        except ValueError:
            raise SpecError(f"solver must be one of ngspice, nodal; got {self.solver!r}.") from None
        _require(
            isinstance(self.workers, int) and self.workers >= 1,
            f"workers must be a whole number >= 1, got {self.workers!r}.",
        )
        _require(
            math.isfinite(self.timeout_s) and self.timeout_s > 0,
            f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}.",
        )
