"""Training configuration: one dataclass for every method, with the TOML/flag keys it accepts."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from enum import Enum

from cosim.errors import SpecError
from cosim.specs import coerce_enums


class Method(str, Enum):
    """Retraining methods (DESIGN §5)."""

    VANILLA = "vanilla"
    """Digital training, no hardware in the loop."""
    GNI = "gni"
    """Gaussian noise injection of the bit-sliced programming variation σ_d (paper 002's baseline)."""
    DVA = "dva"
    """Device-variation-aware training (paper 001): multiplicative lognormal weight noise ``e^θ``."""
    OVF = "ovf"
    """Oriented variational forward (paper 002): backbone + N noisier forwards, combined logits."""
    MASKED = "masked"
    """Masked fine-tuning on the faulty chip: cross-entropy, faulty weights frozen."""
    KD = "kd"
    """Knowledge distillation: the faulty chip learns the teacher's softened outputs."""
    PARTITION = "partition"
    """Paper 000: blockwise Huber distillation, blocks by output-channel count."""
    PARTITION_OVF = "partition_ovf"
    """Partition retraining whose blocks train on OVF's combined noisy outputs (beyond the papers)."""

    @property
    def on_chip(self) -> bool:
        """Whether the method trains one chip's faulty student (so its result is per chip)."""
        return self in (Method.MASKED, Method.KD, Method.PARTITION, Method.PARTITION_OVF)

    @property
    def needs_teacher(self) -> bool:
        """Whether the method starts from a trained model."""
        return self.on_chip


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Every field is a TOML key and a ``cosim train`` flag."""

    method: Method = Method.VANILLA
    """Which method (see :class:`Method`)."""
    epochs: int = 1
    """Passes over the training set (partition retraining: per block)."""
    lr: float = 1e-3
    """Adam learning rate (paper 000: 1e-3)."""
    batch_size: int = 128
    """Training batch size."""
    seed: int = 0
    """Seed of the data order and of every injected noise draw."""
    chip_seed: int = 0
    """On-chip methods: the seed of the chip whose faulty student is retrained."""
    sigma_d: float = 0.0
    """GNI/OVF/partition_ovf: programming variation σ_d injected while training (relative to one device's range)."""
    dva_sigma: float = 0.0
    """DVA: σ of the lognormal weight factor ``e^θ``, θ ~ N(0, σ²)."""
    ovf_branches: int = 3
    """OVF: N extra forwards."""
    ovf_step: float = 0.05
    """OVF: extra forward n uses σ_d + n·ovf_step."""
    beta: float = 1e-2
    """OVF: β, the weight of the extra forwards (paper 002 searches 1e-1 … 1e-4)."""
    kd_temperature: float = 4.0
    """KD: softmax temperature of the soft targets."""
    kd_alpha: float = 0.9
    """KD: weight of the soft-target loss (the rest is cross-entropy on the labels)."""
    huber_delta: float = 1.0
    """Partition retraining: Huber loss δ (paper 000: 1)."""
    checkpoint_every: int = 50
    """Steps between checkpoints (each epoch's end is always one)."""

    def __post_init__(self) -> None:
        coerce_enums(self, {"method": Method})
        for name in ("epochs", "batch_size", "ovf_branches", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{name} must be a whole number >= 1, got {v!r}.")
        for name in ("lr", "kd_temperature", "huber_delta", "beta"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SpecError(f"{name} must be a number > 0, got {v!r}.")
        for name in ("sigma_d", "dva_sigma", "ovf_step"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise SpecError(f"{name} must be a number >= 0, got {v!r}.")
        if not 0 <= self.kd_alpha <= 1:
            raise SpecError(f"kd_alpha must be in [0, 1], got {self.kd_alpha!r}.")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a TOML table; an unknown key is refused by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"unknown training key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain values (enums as strings), for TOML/JSON and checkpoints."""
        return {f.name: (v.value if isinstance(v := getattr(self, f.name), Enum) else v) for f in fields(self)}
