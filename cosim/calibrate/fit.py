"""Fit the surrogate's coefficients to a campaign and measure its error on held-out solves.

Errors are relative to each column's full-scale current, ``v_read · Σ_i G_ij`` (the ideal current
of that column with every row at ``v_read``), one value per (vector, column).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import least_squares

from cosim.calibrate.store import RawSample, SurrogateModel
from cosim.calibrate.surrogate import SurrogateParams, surrogate_currents
from cosim.calibrate.campaign import CampaignSpec
from cosim.errors import SpecError

ITERATION_CHOICES = (4, 6, 8, 12, 16, 24, 32)
"""Sweep counts the fit considers, cheapest first."""


def full_scale_amp(g_siemens: np.ndarray, v_read_volt: float) -> np.ndarray:
    """(cols,) full-scale current of each column: ``v_read · Σ_i G_ij``."""
    return v_read_volt * np.asarray(g_siemens).sum(axis=0)


def relative_errors(pred_amp: np.ndarray, truth_amp: np.ndarray, g_siemens: np.ndarray, v_read_volt: float) -> np.ndarray:
    """Flat |pred − truth| / full scale over every (vector, column)."""
    return (np.abs(pred_amp - truth_amp) / full_scale_amp(g_siemens, v_read_volt)).ravel()


def error_stats(errors: np.ndarray) -> dict:
    """Median, p95, p99, max and count of relative errors."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {"n": 0, "median": math.nan, "p95": math.nan, "p99": math.nan, "max": math.nan}
    return {"n": int(e.size), "median": float(np.median(e)), "p95": float(np.percentile(e, 95)),
            "p99": float(np.percentile(e, 99)), "max": float(e.max())}


def surrogate_on(sample: RawSample, params: SurrogateParams) -> np.ndarray:
    """(vectors, cols) surrogate currents of one stored sample, amperes."""
    with torch.no_grad():
        out = surrogate_currents(torch.from_numpy(sample.conductance_siemens), torch.from_numpy(sample.voltages_volt),
                                 sample.spec, params)
    return out.numpy()


def _errors(samples: Sequence[RawSample], params: SurrogateParams) -> np.ndarray:
    if not samples:
        return np.zeros(0)
    return np.concatenate([relative_errors(surrogate_on(s, params), s.currents_amp, s.conductance_siemens,
                                           s.spec.v_read_volt) for s in samples])


def is_held_out(index: int) -> bool:
    """The split: every fourth sample (index ≡ 3 mod 4) is held out of the fit."""
    return index % 4 == 3


def fit_surrogate(campaign: CampaignSpec, samples: Sequence[RawSample], target_p99: float = 0.005,
                  choices: Sequence[int] = ITERATION_CHOICES) -> SurrogateModel:
    """The cheapest sweep count whose fitted scales reach ``target_p99`` on the training solves.

    For each sweep count the two resistance scales are fitted by least squares (bounded to
    [0.5, 2]) on the training solves; the first count whose training p99 meets the target wins
    (the last one otherwise). Its error on the held-out solves is measured once, at the end.
    """
    train = [s for s in samples if not is_held_out(s.index)]
    held = [s for s in samples if is_held_out(s.index)]
    if not train:
        raise SpecError("the campaign has no training solves (it needs at least one sample with index % 4 != 3).")
    chosen, tried = None, []
    for k in choices:
        def residual(x: np.ndarray, k: int = k) -> np.ndarray:
            return _errors(train, SurrogateParams(k, float(x[0]), float(x[1])))
        fit = least_squares(residual, x0=np.ones(2), bounds=([0.5, 0.5], [2.0, 2.0]), diff_step=1e-4, max_nfev=40)
        params = SurrogateParams(k, float(fit.x[0]), float(fit.x[1]))
        stats = error_stats(_errors(train, params))
        tried.append({"iterations": k, "row_scale": params.row_scale, "col_scale": params.col_scale, **stats})
        chosen = params
        if stats["p99"] <= target_p99:
            break
    assert chosen is not None
    held_stats = error_stats(_errors(held, chosen))
    meta = {"train_samples": len(train), "held_out_samples": len(held), "target_p99": target_p99, "tried": tried,
            "split": "held out: sample index % 4 == 3"}
    return SurrogateModel(chosen, campaign, held_stats, meta)
