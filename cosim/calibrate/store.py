"""HDF5 files of the calibration stage — the only module that imports h5py (DESIGN §1, §4).

Every group carries ``encoding-type`` and ``encoding-version`` attributes; readers refuse a type
or version they do not know, a truncated or corrupt file, and a file of another campaign, each
with one sentence. Files are written under a temporary name and renamed (a killed run never
leaves a half-written file). Nothing here unpickles: metadata is JSON text in attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import cosim
from cosim.calibrate.campaign import CampaignDir, CampaignSpec, draw_sample
from cosim.calibrate.surrogate import SurrogateParams
from cosim.errors import CosimError
from cosim.fileio import atomic_path, load_npz
from cosim.specs import ArraySpec

RAW_ENCODING = ("cosim-campaign-raw", "1")
SAMPLE_ENCODING = ("cosim-sample", "1")
MODEL_ENCODING = ("cosim-surrogate", "1")


class StoreError(CosimError):
    """An HDF5 file is missing, corrupt, of an unknown encoding, or from another campaign."""


def _tag(obj: Any, encoding: tuple[str, str]) -> None:
    obj.attrs["encoding-type"], obj.attrs["encoding-version"] = encoding


def _check(obj: Any, encoding: tuple[str, str], where: str) -> None:
    kind, version = obj.attrs.get("encoding-type"), obj.attrs.get("encoding-version")
    if kind != encoding[0]:
        raise StoreError(f"{where} is a {kind!r} group, expected {encoding[0]!r}.")
    if version != encoding[1]:
        raise StoreError(f"{where} has {encoding[0]} encoding version {version!r}; this cosim reads version "
                         f"{encoding[1]}.")


def _open(path: Path) -> h5py.File:
    if not Path(path).is_file():
        raise StoreError(f"{path} does not exist.")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path} is not a readable HDF5 file (truncated or corrupt: {exc}).") from None


@dataclass(frozen=True)
class RawSample:
    """One solved array of a campaign.

    Attributes:
        index: sample index in the campaign.
        spec: the array.
        conductance_siemens: (rows, cols).
        voltages_volt: (vectors, rows).
        currents_amp: (vectors, cols), the ground truth.
        solver: "ngspice" or "nodal".
        attrs: pattern, fault_scale, tf_sigma, on_off_ratio.
    """

    index: int
    spec: ArraySpec
    conductance_siemens: np.ndarray
    voltages_volt: np.ndarray
    currents_amp: np.ndarray
    solver: str
    attrs: dict


def _spec_json(spec: ArraySpec) -> str:
    return json.dumps({k: (v.value if hasattr(v, "value") else v) for k, v in spec.__dict__.items()})


def write_raw(cdir: CampaignDir) -> Path:
    """Gather every stored solve of a complete campaign into ``raw.h5`` (atomically)."""
    campaign = cdir.campaign
    path = cdir.path / "raw.h5"
    versions = set()
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        _tag(f, RAW_ENCODING)
        f.attrs["campaign_id"] = campaign.campaign_id
        f.attrs["campaign"] = json.dumps(campaign.to_json())
        f.attrs["cosim_version"] = cosim.__version__
        group = f.create_group("samples")
        _tag(group, SAMPLE_ENCODING)
        for i in range(campaign.samples):
            solved = load_npz(cdir.sample_path(i), "campaign solve")
            s = draw_sample(campaign, i)
            g = group.create_group(f"{i:06d}")
            _tag(g, SAMPLE_ENCODING)
            g.create_dataset("conductance_siemens", data=s.conductance_siemens)
            g.create_dataset("voltages_volt", data=s.voltages_volt)
            g.create_dataset("currents_amp", data=solved["currents"])
            g.create_dataset("netlist_sha256", data=np.array([h.encode() for h in solved["hashes"]]))
            g.attrs["spec"] = _spec_json(s.spec)
            g.attrs["solver"] = s.solver.value
            g.attrs["meta"] = json.dumps({"pattern": s.pattern.value, "fault_scale": s.fault_scale,
                                          "tf_sigma": s.tf_sigma, **s.meta})
            versions.add(str(solved["version"]))
        f.attrs["ngspice_versions"] = json.dumps(sorted(versions))
    return path


def read_raw(path: Path, campaign_id: str | None = None) -> tuple[CampaignSpec, list[RawSample]]:
    """Read a campaign's ``raw.h5``; with ``campaign_id``, refuse a file of another campaign."""
    with _open(path) as f:
        try:
            _check(f, RAW_ENCODING, str(path))
            if campaign_id is not None and f.attrs["campaign_id"] != campaign_id:
                raise StoreError(f"{path} is from another campaign (id {str(f.attrs['campaign_id'])[:12]}…).")
            campaign = CampaignSpec.from_json(json.loads(f.attrs["campaign"]))
            group = f["samples"]
            _check(group, SAMPLE_ENCODING, f"{path}:/samples")
            out = []
            for name in sorted(group):
                g = group[name]
                _check(g, SAMPLE_ENCODING, f"{path}:/samples/{name}")
                out.append(RawSample(int(name), ArraySpec(**json.loads(g.attrs["spec"])), g["conductance_siemens"][()],
                                     g["voltages_volt"][()], g["currents_amp"][()], str(g.attrs["solver"]),
                                     json.loads(g.attrs["meta"])))
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise StoreError(f"{path} is truncated or malformed ({type(exc).__name__}: {exc}).") from None
    return campaign, out


@dataclass(frozen=True)
class SurrogateModel:
    """A fitted surrogate and its provenance.

    Attributes:
        params: the calibrated coefficients.
        campaign: the campaign it was fitted to (its ranges are the calibrated range).
        fit_error: held-out error statistics (fractions of column full scale).
        meta: versions, netlist hashes count, seed, train/held-out split.
    """

    params: SurrogateParams
    campaign: CampaignSpec
    fit_error: dict
    meta: dict


def write_model(path: Path, model: SurrogateModel, netlist_hashes: list[str]) -> None:
    """Write ``device_models/<name>.h5`` (atomically) with DESIGN §4's schema."""
    with atomic_path(path, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        _tag(f, MODEL_ENCODING)
        f.attrs["cosim_version"] = cosim.__version__
        f.attrs["h5py_version"] = h5py.__version__
        p = f.create_group("params")
        _tag(p, ("cosim-surrogate-params", "1"))
        p.attrs["iterations"] = model.params.iterations
        p.attrs["row_scale"] = model.params.row_scale
        p.attrs["col_scale"] = model.params.col_scale
        c = f.create_group("campaign")
        _tag(c, ("cosim-campaign-spec", "1"))
        c.attrs["spec"] = json.dumps(model.campaign.to_json())
        c.attrs["campaign_id"] = model.campaign.campaign_id
        c.attrs["seed"] = model.campaign.seed
        c.create_dataset("netlist_sha256", data=np.array([h.encode() for h in netlist_hashes]))
        e = f.create_group("fit")
        _tag(e, ("cosim-fit-error", "1"))
        e.attrs["held_out"] = json.dumps(model.fit_error)
        e.attrs["meta"] = json.dumps(model.meta)


def read_model(path: Path) -> SurrogateModel:
    """Read a surrogate model file, refusing unknown encodings and malformed files."""
    with _open(path) as f:
        try:
            _check(f, MODEL_ENCODING, str(path))
            p, c, e = f["params"], f["campaign"], f["fit"]
            _check(p, ("cosim-surrogate-params", "1"), f"{path}:/params")
            _check(c, ("cosim-campaign-spec", "1"), f"{path}:/campaign")
            _check(e, ("cosim-fit-error", "1"), f"{path}:/fit")
            params = SurrogateParams(int(p.attrs["iterations"]), float(p.attrs["row_scale"]), float(p.attrs["col_scale"]))
            campaign = CampaignSpec.from_json(json.loads(c.attrs["spec"]))
            return SurrogateModel(params, campaign, json.loads(e.attrs["held_out"]), json.loads(e.attrs["meta"]))
        except (KeyError, OSError, ValueError, TypeError) as exc:
            raise StoreError(f"{path} is truncated or malformed ({type(exc).__name__}: {exc}).") from None


def netlist_hashes(path: Path) -> list[str]:
    """Every netlist SHA-256 of a campaign's ``raw.h5``, in sample order."""
    with _open(path) as f:
        _check(f, RAW_ENCODING, str(path))
        return [h.decode() for name in sorted(f["samples"]) for h in f["samples"][name]["netlist_sha256"][()]]
