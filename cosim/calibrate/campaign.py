"""SPICE campaigns: seeded samples of arrays, solved in parallel, stored as they finish.

A campaign is a :class:`CampaignSpec`. Sample ``i`` is drawn from ``default_rng([seed, i])``
alone (array size, parasitics, on/off ratio, fault rates, cell kind, I–V law, unselected-row
policy, input pattern, conductances, inputs), so any sample can be regenerated anywhere — in a
local worker process or on a Dask worker — and a resumed campaign draws exactly what the
interrupted one would have. Every finished solve is written at once, atomically, to
``<dir>/solves/sample-<i>.npz``; ``<dir>/raw.h5`` gathers them when the campaign completes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from cosim.device import apply_faults, draw_fault_map, random_conductances
from cosim.errors import CosimError, SpecError
from cosim.fileio import load_npz, write_json, write_npz
from cosim.report import NullReporter, Reporter
from cosim.specs import ArraySpec, CellIV, CellKind, DeviceSpec, FaultSpec, Solver, Unselected
from cosim.spice.solve import plan_netlists, validate_inputs
from cosim.spice.nodal import solve_nodal

CAMPAIGN_ENCODING = ("cosim-campaign", "1")


class InputPattern(str, Enum):
    """How a sample's input vectors are drawn."""

    DENSE = "dense"
    """Every row uniform in [0, v_read]."""
    SPARSE = "sparse"
    """About a quarter of the rows uniform in (0, v_read], the rest 0."""
    ONE_HOT = "one_hot"
    """One row at v_read."""
    ALL_ON = "all_on"
    """Every row at v_read."""


@dataclass(frozen=True)
class CampaignSpec:
    """What a calibration campaign samples. Ranges are (low, high), drawn uniformly unless noted."""

    sizes: tuple[int, ...] = (16, 32, 64)
    """Square array sizes (rows = cols), drawn uniformly."""
    r_wire_ohm: tuple[float, float] = (0.0, 5.0)
    """Row and column wire resistance per cell pitch, ohm (one value per sample for both)."""
    r_driver_ohm: tuple[float, float] = (0.0, 5.0)
    """Row-driver resistance, ohm."""
    r_sense_ohm: tuple[float, float] = (0.0, 5.0)
    """Sense resistance, ohm."""
    on_off_ratio: tuple[float, float] = (10.0, 1000.0)
    """r_hrs / r_lrs (r_lrs = 10 kΩ), drawn log-uniformly."""
    fault_scale: tuple[float, float] = (0.0, 1.0)
    """Multiplier on paper 000's fault rates (TF 14.24 %, SA1 9.04 %, SA0 1.75 %)."""
    tf_sigma: tuple[float, float] = (0.1, 0.5)
    """σ of the TF lognormal."""
    cells: tuple[CellKind, ...] = (CellKind.ONE_R,)
    """Cell kinds, drawn uniformly."""
    ivs: tuple[CellIV, ...] = (CellIV.LINEAR,)
    """I–V laws, drawn uniformly."""
    unselected: tuple[Unselected, ...] = (Unselected.GROUNDED,)
    """Unselected-row policies, drawn uniformly."""
    patterns: tuple[InputPattern, ...] = tuple(InputPattern)
    """Input patterns, drawn uniformly per sample."""
    samples: int = 40
    """Arrays in the campaign."""
    vectors: int = 8
    """Input vectors per array."""
    seed: int = 0
    """Seed of every draw."""
    solver: Solver = Solver.NGSPICE
    """Ground truth (DESIGN §2: ngspice)."""
    nodal_above: int = 64
    """Sizes above this are solved by the nodal solver (ngspice takes minutes there)."""
    r_access_ohm: float = 1000.0
    """1T1R access-transistor on-resistance, ohm."""
    sinh_a_per_volt: float = 3.0
    """Nonlinearity of sinh cells, 1/V."""

    def __post_init__(self) -> None:
        conv = {"cells": CellKind, "ivs": CellIV, "unselected": Unselected, "patterns": InputPattern}
        for name, enum in conv.items():
            try:
                object.__setattr__(self, name, tuple(enum(x) for x in getattr(self, name)))
            except ValueError:
                raise SpecError(f"{name} must be drawn from {', '.join(e.value for e in enum)}; "
                                f"got {getattr(self, name)!r}.") from None
            if not getattr(self, name):
                raise SpecError(f"{name} must list at least one choice.")
        object.__setattr__(self, "solver", Solver(self.solver))
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        if not self.sizes or min(self.sizes) < 2:
            raise SpecError("sizes must list array sizes >= 2.")
        for name in ("r_wire_ohm", "r_driver_ohm", "r_sense_ohm", "on_off_ratio", "fault_scale", "tf_sigma"):
            lo, hi = (float(x) for x in getattr(self, name))
            if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
                raise SpecError(f"{name} must be a range (low, high) with 0 <= low <= high; got {getattr(self, name)!r}.")
            object.__setattr__(self, name, (lo, hi))
        if self.on_off_ratio[0] <= 1:
            raise SpecError("on_off_ratio must exceed 1.")
        if self.fault_scale[1] * sum((0.1424, 0.0904, 0.0175)) > 1:
            raise SpecError("fault_scale's high end gives fault rates summing above 1.")
        if self.samples < 1 or self.vectors < 1:
            raise SpecError("samples and vectors must be >= 1.")

    def to_json(self) -> dict:
        """Plain-JSON form (enums as strings, tuples as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = [x.value if isinstance(x, Enum) else x for x in v] if isinstance(v, tuple) else (
                v.value if isinstance(v, Enum) else v)
        return out

    @classmethod
    def from_json(cls, values: dict) -> "CampaignSpec":
        """Inverse of :meth:`to_json`; unknown keys are refused."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"unknown campaign key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @property
    def campaign_id(self) -> str:
        """SHA-256 of the spec: files of one campaign carry it, files of another are refused."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Sample:
    """One drawn array and its inputs."""

    index: int
    spec: ArraySpec
    conductance_siemens: np.ndarray
    voltages_volt: np.ndarray
    pattern: InputPattern
    fault_scale: float
    tf_sigma: float
    solver: Solver
    meta: dict = field(default_factory=dict)


def draw_sample(campaign: CampaignSpec, index: int) -> Sample:
    """Sample ``index`` of ``campaign`` (depends on nothing else)."""
    rng = np.random.default_rng([campaign.seed, index])
    n = int(rng.choice(campaign.sizes))
    pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
    cell, iv, unselected, pattern = (pick(campaign.cells), pick(campaign.ivs), pick(campaign.unselected),
                                     pick(campaign.patterns))
    r_wire = float(rng.uniform(*campaign.r_wire_ohm))
    r_drv, r_sense = float(rng.uniform(*campaign.r_driver_ohm)), float(rng.uniform(*campaign.r_sense_ohm))
    ratio = float(np.exp(rng.uniform(*np.log(campaign.on_off_ratio))))
    scale, sigma = float(rng.uniform(*campaign.fault_scale)), float(rng.uniform(*campaign.tf_sigma))
    spec = ArraySpec(n, n, r_wire_row_ohm=r_wire, r_wire_col_ohm=r_wire, r_driver_ohm=r_drv, r_sense_ohm=r_sense,
                     cell=cell, unselected=unselected, cell_iv=iv, sinh_a_per_volt=campaign.sinh_a_per_volt,
                     r_access_ohm=campaign.r_access_ohm if cell is CellKind.ONE_T_ONE_R else 0.0)
    device = DeviceSpec(r_lrs_ohm=10e3, r_hrs_ohm=10e3 * ratio)
    faults = FaultSpec(p_tf=0.1424 * scale, p_sa1=0.0904 * scale, p_sa0=0.0175 * scale, tf_sigma=sigma)
    g = apply_faults(random_conductances((n, n), device, rng), draw_fault_map((n, n), faults, rng), device)
    v = _inputs(pattern, campaign.vectors, n, spec.v_read_volt, rng)
    solver = Solver.NODAL if n > campaign.nodal_above else campaign.solver
    return Sample(index, spec, g, v, pattern, scale, sigma, solver, {"on_off_ratio": ratio})


def _inputs(pattern: InputPattern, vectors: int, rows: int, v_read: float, rng: np.random.Generator) -> np.ndarray:
    if pattern is InputPattern.DENSE:
        return rng.uniform(0.0, v_read, (vectors, rows))
    if pattern is InputPattern.SPARSE:
        v = rng.uniform(0.0, v_read, (vectors, rows)) * (rng.random((vectors, rows)) < 0.25)
        v[np.arange(vectors), rng.integers(0, rows, vectors)] = v_read  # never an all-zero vector
        return v
    if pattern is InputPattern.ONE_HOT:
        v = np.zeros((vectors, rows))
        v[np.arange(vectors), rng.integers(0, rows, vectors)] = v_read
        return v
    return np.full((vectors, rows), v_read)


def solve_sample(state: Any, job: tuple[dict, int]) -> dict:
    """Worker job: regenerate sample ``job[1]`` of campaign ``job[0]`` and solve it."""
    from cosim.spice.ngspice import run_netlist

    campaign, index = CampaignSpec.from_json(job[0]), job[1]
    s = draw_sample(campaign, index)
    g, v = validate_inputs(s.spec, s.conductance_siemens, s.voltages_volt)
    plan = plan_netlists(s.spec, g, v)
    currents = np.empty((v.shape[0], s.spec.cols))
    version = None
    for idx, netlist, circuit in plan:
        if s.solver is Solver.NODAL:
            currents[idx] = solve_nodal(circuit, v[idx])
        else:
            res = run_netlist(state, netlist)
            currents[idx] = circuit.output_currents(res.values.T)
            version = res.version
    return {"index": index, "currents": currents, "hashes": [n.sha256 for _, n, _ in plan], "version": version}


class CampaignDir:
    """The files of one campaign: ``campaign.json``, ``solves/``, ``raw.h5``."""

    def __init__(self, path: Path, campaign: CampaignSpec) -> None:
        self.path, self.campaign = Path(path), campaign
        meta = self.path / "campaign.json"
        if meta.exists():
            try:
                stored = json.loads(meta.read_text())
            except json.JSONDecodeError:
                raise SpecError(f"{meta} is corrupt; delete the campaign directory to start over.") from None
            if (stored.get("encoding-type"), stored.get("encoding-version")) != CAMPAIGN_ENCODING:
                raise SpecError(f"{meta} is not a cosim campaign of a version this cosim reads "
                                f"({stored.get('encoding-type')!r} {stored.get('encoding-version')!r}).")
            if stored.get("campaign_id") != campaign.campaign_id:
                raise SpecError(f"{self.path} holds another campaign (id {str(stored.get('campaign_id'))[:12]}…); "
                                "use a new directory or the same settings.")
        else:
            write_json(meta, {"encoding-type": CAMPAIGN_ENCODING[0], "encoding-version": CAMPAIGN_ENCODING[1],
                              "campaign_id": campaign.campaign_id, "spec": campaign.to_json()})

    def sample_path(self, index: int) -> Path:
        """Where sample ``index``'s solve lives."""
        return self.path / "solves" / f"sample-{index:06d}.npz"

    def done(self) -> set[int]:
        """Indices whose solve is stored (and readable, from this campaign)."""
        out = set()
        for i in range(self.campaign.samples):
            p = self.sample_path(i)
            if p.exists():
                try:
                    if str(load_npz(p, "solve")["campaign_id"]) == self.campaign.campaign_id:
                        out.add(i)
                except (CosimError, KeyError):  # an unreadable leftover is simply solved again
                    pass
        return out

    def store(self, result: dict) -> None:
        """Write one finished solve atomically."""
        write_npz(self.sample_path(result["index"]), currents=result["currents"],
                  hashes=np.array(result["hashes"]), version=np.array(result["version"] or "nodal"),
                  campaign_id=np.array(self.campaign.campaign_id))


def run_campaign(campaign: CampaignSpec, path: Path, workers: int = 2, timeout_s: float = 1800.0,
                 scheduler: str | None = None, reporter: Reporter | None = None) -> CampaignDir:
    """Solve every sample not yet stored in ``path`` (resuming), then gather ``raw.h5``.

    Args:
        campaign: what to sample.
        path: the campaign directory (created; an existing one must hold the same campaign).
        workers: local worker processes (ngspice in each).
        timeout_s: per-sample time limit.
        scheduler: a Dask distributed scheduler address; None runs locally.
        reporter: one step per finished sample.
    """
    from cosim.calibrate.store import write_raw

    reporter = reporter or NullReporter()
    cdir = CampaignDir(path, campaign)
    todo = sorted(set(range(campaign.samples)) - cdir.done())
    jobs = [(campaign.to_json(), i) for i in todo]
    reporter.start(len(jobs), f"campaign: {len(todo)} of {campaign.samples} samples to solve")
    try:
        if not jobs:
            pass
        elif scheduler:
            _run_dask(jobs, scheduler, cdir, reporter)
        else:
            from cosim.spice.ngspice import init_ngspice
            from cosim.spice.workers import WorkerPool

            with WorkerPool(init_ngspice, solve_sample, workers, timeout_s, "campaign") as pool:
                pool.run(jobs, reporter, on_result=lambda _i, result: cdir.store(result))
    finally:
        reporter.finish()
    write_raw(cdir)
    return cdir


def _dask_solve(job: tuple[dict, int]) -> dict:  # pragma: no cover - runs on Dask workers
    return solve_sample(_dask_ngspice(), job)


def _dask_ngspice() -> Any:  # pragma: no cover - one ngspice per Dask worker process
    if not hasattr(_dask_ngspice, "state"):
        from cosim.spice.ngspice import init_ngspice

        _dask_ngspice.state = init_ngspice()  # type: ignore[attr-defined]
    return _dask_ngspice.state  # type: ignore[attr-defined]


def _run_dask(jobs: list, scheduler: str, cdir: CampaignDir, reporter: Reporter) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SpecError("--scheduler needs Dask: pip install 'dask[distributed]' (or run without it).") from None
    try:
        client = Client(scheduler, timeout=10)
    except OSError as exc:
        raise SpecError(f"cannot reach the Dask scheduler at {scheduler} ({exc}).") from None
    with client:
        futures = [client.submit(_dask_solve, job, pure=False) for job in jobs]
        for fut in as_completed(futures):
            cdir.store(fut.result())
            reporter.advance(1)
