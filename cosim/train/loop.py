"""The one training loop: phases × epochs × batches, Adam, checkpoints, exact resume.

Determinism: epoch ``e`` of phase ``p`` visits the data in the order of a generator seeded from
``(seed, p, e)``, and batch ``i``'s noise comes from a generator seeded from ``(seed, p, e, i)``,
so a run resumed from a checkpoint (taken every ``checkpoint_every`` steps, at the end of every
epoch, and on Ctrl-C) continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cosim.data import ImageData
from cosim.errors import CosimError
from cosim.fileio import atomic_path
from cosim.layers import HardwareConfig
from cosim.report import NullReporter, Reporter
from cosim.train.config import TrainConfig
from cosim.train.methods import build_phases

CHECKPOINT_FORMAT = "cosim-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(CosimError):
    """A checkpoint is unreadable, of an unknown version, or from another model or run."""


@dataclass
class TrainResult:
    """What :func:`fit` returns.

    Attributes:
        model: the trained model (the faulty student for on-chip methods).
        history: per finished epoch, ``{"phase", "epoch", "loss"}`` (mean training loss).
        resumed_from: ``(phase, epoch, step)`` the run resumed at, or None.
    """

    model: nn.Module
    history: list[dict] = field(default_factory=list)
    resumed_from: tuple[int, int, int] | None = None


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def model_signature(model: nn.Module) -> list[str]:
    """``name:shape`` of every parameter and buffer: two models match iff these do."""
    return [f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()]


def _save(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint without executing code (``weights_only=True``); check format and version."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist.") from None
    except Exception as exc:  # noqa: BLE001 - any load failure means a bad file
        raise CheckpointError(f"{path} is not a readable cosim checkpoint ({type(exc).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a cosim checkpoint.")
    if state.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this cosim reads "
                              f"version {CHECKPOINT_VERSION}.")
    return state


def load_weights(model: nn.Module, state: dict, path: Path) -> None:
    """Load a checkpoint's weights into ``model``, refusing one from another architecture."""
    if state["signature"] != model_signature(model):
        raise CheckpointError(f"{path} holds a different model ({len(state['signature'])} tensors, e.g. "
                              f"{state['signature'][0]}) than the one configured ({model_signature(model)[0]} …).")
    model.load_state_dict(state["model"])


@contextmanager
def _deferred_interrupts() -> Iterator[list[int]]:
    """Turn SIGINT/SIGTERM into a flag checked between batches (main thread only), so a stop
    never lands in the middle of an optimiser step."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in old:
        signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def fit(model: nn.Module, data: ImageData, cfg: TrainConfig, hw: HardwareConfig, teacher: nn.Module | None = None,
        checkpoint: Path | None = None, reporter: Reporter | None = None) -> TrainResult:
    """Train ``model`` with ``cfg.method`` (DESIGN §5's ``fit``), resuming from ``checkpoint`` if it exists.

    Args:
        model: the model to train (vanilla/GNI/DVA/OVF train it in place; on-chip methods leave
            it alone and train a faulty copy of ``teacher``).
        data: the training set.
        cfg: method and hyper-parameters.
        hw: the hardware (on-chip methods' chip; the bit-slice noise factor of GNI/OVF).
        teacher: the trained model on-chip methods start from.
        checkpoint: where to keep the run's state; an existing file from the same run resumes it.
        reporter: progress, one step per batch; its ``note`` shows the running loss.

    Raises:
        KeyboardInterrupt: after Ctrl-C or SIGTERM, once the state is checkpointed.
    """
    reporter = reporter or NullReporter()
    trained, phases = build_phases(cfg.method, model, cfg, hw, teacher)
    device = next(trained.parameters()).device
    result = TrainResult(trained)
    start, resume_opt, resume_sums = (0, 0, 0), None, None
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(Path(checkpoint))
        if state["config"] != cfg.to_dict():
            raise CheckpointError(f"{checkpoint} is from a run with another configuration; use a new run "
                                  "directory or the same settings.")
        load_weights(trained, state, Path(checkpoint))
        start, resume_opt, resume_sums = tuple(state["position"]), state["optimizer"], state["sums"]
        result.history = list(state["history"])
        result.resumed_from = start  # type: ignore[assignment]
    n = len(data)
    steps = math.ceil(n / cfg.batch_size)
    with _deferred_interrupts() as stop:
        for p, phase in enumerate(phases):
            if p < start[0]:
                continue
            opt = torch.optim.Adam(phase.params, lr=cfg.lr)
            if resume_opt is not None and p == start[0]:
                opt.load_state_dict(resume_opt)
            for epoch in range(start[1] if p == start[0] else 0, cfg.epochs):
                first = start[2] if (p, epoch) == start[:2] else 0
                sums = list(resume_sums) if first and resume_sums else [0.0, 0]  # loss·count, count
                order = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(cfg.seed, p, epoch)))
                trained.eval()
                for m in phase.train_modules:
                    m.train()
                reporter.start(steps - first, f"{phase.name} · epoch {epoch + 1}/{cfg.epochs}")
                try:
                    for i in range(first, steps):
                        idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                        x, y = data.images[idx].to(device), data.labels[idx].to(device)
                        g = torch.Generator(device=device).manual_seed(_seed(cfg.seed, p, epoch, i))
                        opt.zero_grad(set_to_none=True)
                        loss = phase.loss(x, y, g)
                        loss.backward()
                        opt.step()
                        sums = [sums[0] + float(loss.detach()) * len(idx), sums[1] + len(idx)]
                        reporter.advance(1)
                        reporter.note(f"loss {sums[0] / sums[1]:.4f}")
                        due = (i + 1) % cfg.checkpoint_every == 0 or stop
                        if due and i + 1 < steps and checkpoint is not None:
                            _checkpoint(checkpoint, trained, opt, cfg, (p, epoch, i + 1), result.history, sums)
                        if stop:
                            raise KeyboardInterrupt
                finally:
                    reporter.finish()
                result.history.append({"phase": phase.name, "epoch": epoch + 1, "loss": sums[0] / max(sums[1], 1)})
                if checkpoint is not None:
                    position = (p + 1, 0, 0) if epoch + 1 == cfg.epochs else (p, epoch + 1, 0)
                    _checkpoint(checkpoint, trained, opt, cfg, position, result.history, None)
                if stop:
                    raise KeyboardInterrupt
            start, resume_opt = (p + 1, 0, 0), None
    return result


def _checkpoint(path: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig,
                position: tuple[int, int, int], history: list[dict], sums: list | None) -> None:
    _save(Path(path), {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg.to_dict(),
        "signature": model_signature(model), "model": model.state_dict(), "optimizer": opt.state_dict(),
        "position": list(position), "history": list(history), "sums": sums,
    })
