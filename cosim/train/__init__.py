"""Retraining methods on the chip model (DESIGN §5): one ``fit`` for every method."""

from cosim.train.config import Method, TrainConfig
from cosim.train.loop import CheckpointError, TrainResult, fit, load_checkpoint, load_weights, model_signature
from cosim.train.methods import faulty_student, partition_blocks

__all__ = [
    "CheckpointError",
    "Method",
    "TrainConfig",
    "TrainResult",
    "faulty_student",
    "fit",
    "load_checkpoint",
    "load_weights",
    "model_signature",
    "partition_blocks",
]
