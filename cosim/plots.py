"""PNG plots of run results (matplotlib, headless). Every function writes one file atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cosim.fileio import atomic_path  # noqa: E402


def _save(fig: "plt.Figure", path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_loss(history: Sequence[dict], path: Path, title: str) -> None:
    """Mean training loss per epoch, one line per phase (partition blocks get one each)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    phases: dict[str, list[tuple[int, float]]] = {}
    for h in history:
        phases.setdefault(h["phase"], []).append((h["epoch"], h["loss"]))
    for name, points in phases.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_accuracy_histogram(series: dict[str, Sequence[float]], reference: float | None, path: Path, title: str) -> None:
    """Per-chip accuracy histograms (in %), with the digital reference as a line."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, values in series.items():
        ax.hist([100 * v for v in values], bins=30, alpha=0.6, label=f"{label} (n={len(values)})")
    if reference is not None:
        ax.axvline(100 * reference, color="k", linestyle="--", label=f"digital {100 * reference:.2f} %")
    ax.set_xlabel("test accuracy per chip (%)")
    ax.set_ylabel("chips")
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_sweep(x: Sequence[float], series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
               xlabel: str, ylabel: str, title: str) -> None:
    """Lines with 95 % CI error bars: ``series[label] = (means, ci95 half-widths)``."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, (mean, ci) in series.items():
        ax.errorbar(list(x), list(mean), yerr=list(ci), marker="o", capsize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def bar_range(series: dict[str, tuple[Sequence[float], Sequence[float]]], target: float | None = None,
              ) -> tuple[float, float] | None:
    """The value axis of :func:`plot_bars`: every bar's ``value ± ci`` and ``target``, padded by
    10 % of their span (at least 0.1); NaN bars are skipped; None when nothing is finite."""
    ends = [] if target is None else [target]
    for values, ci in series.values():
        v, c = np.asarray(values, dtype=float), np.nan_to_num(np.asarray(ci, dtype=float))
        ends += [float(e) for e in np.concatenate([v - c, v + c]) if np.isfinite(e)]
    if not ends:
        return None
    pad = max(0.1 * (max(ends) - min(ends)), 0.1)
    return min(ends) - pad, max(ends) + pad


def plot_bars(groups: Sequence[str], series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path,
              ylabel: str, title: str, target: float | None = None) -> None:
    """Grouped bars with 95 % CI error bars: one group per ``groups`` entry, one bar per series,
    ``series[label] = (values, ci95 half-widths)`` in group order (NaN: no bar); ``target``, when
    given, is drawn as a dashed line. The value axis is zoomed to :func:`bar_range`."""
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(groups), 3.2))
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    for i, (label, (values, ci)) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, np.asarray(values, dtype=float), width,
               yerr=np.nan_to_num(np.asarray(ci, dtype=float)), capsize=2, label=label)
    if target is not None:
        ax.axhline(target, color="k", linestyle="--", linewidth=0.8, label=f"target {target:g}")
    if (span := bar_range(series, target)) is not None:
        ax.set_ylim(*span)
    ax.set_xticks(x, list(groups))
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_validation(errors_by_model: dict, points: Sequence[tuple[int, float, str, float]], scatter, out_dir: Path) -> list[Path]:
    """Error histograms, error against size and wire resistance, and surrogate-vs-SPICE scatter."""
    paths = []
    fig, ax = plt.subplots(figsize=(5, 3.2))
    floor = 1e-12
    bins = np.logspace(-12, 0, 49)
    for name, e in errors_by_model.items():
        ax.hist(np.clip(np.asarray(e), floor, None), bins=bins, alpha=0.55, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("|I − I_SPICE| / column full scale")
    ax.set_ylabel("(vector, column) pairs")
    ax.set_title("error against SPICE")
    ax.legend(fontsize=7)
    paths.append(out_dir / "error_histogram.png")
    _save(fig, paths[-1])
    for xi, label, fname in ((0, "array size (rows = cols)", "error_vs_size.png"),
                             (1, "wire resistance per cell (Ω)", "error_vs_wire.png")):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for name in errors_by_model:
            pts = [(p[xi], max(p[3], floor)) for p in points if p[2] == name]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, alpha=0.7, label=name)
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("median error per array")
        ax.legend(fontsize=7)
        paths.append(out_dir / fname)
        _save(fig, paths[-1])
    fig, ax = plt.subplots(figsize=(4, 4))
    s = np.asarray(scatter) * 1e6
    ax.scatter(s[:, 0], s[:, 1], s=4, alpha=0.5)
    lim = [float(s.min()), float(s.max())] if s.size else [0, 1]
    ax.plot(lim, lim, "k--", linewidth=0.8)
    ax.set_xlabel("SPICE column current (µA)")
    ax.set_ylabel("surrogate (µA)")
    paths.append(out_dir / "surrogate_vs_spice.png")
    _save(fig, paths[-1])
    return paths
