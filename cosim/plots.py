"""PNG plots of run results (matplotlib, headless). Every function writes one file atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

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
