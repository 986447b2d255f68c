"""Monte Carlo evaluation over chips (DESIGN §5).

A chip is one seeded draw of every crossbar layer's faults and variation. ``evaluate`` converts
a copy of a trained model to crossbar layers, runs the test set through ``n_chips`` chips —
several chips per forward pass, chip-major in the batch — and summarises the per-chip accuracy.
Chips are prefix-stable, so an evaluation keeps a per-chip :class:`ChipTally`: given back to
``evaluate``, it extends the evaluation to more chips, or resumes an interrupted one, without
running the chips it holds again.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from scipy import stats
from torch import nn

from cosim.data import ImageData
from cosim.errors import SpecError
from cosim.layers import HardwareConfig, chips_alike, convert, crossbar_layers, hold_chips, repeat_for_chips, unconvert
from cosim.report import NullReporter, Reporter


@dataclass(frozen=True)
class ChipTally:
    """Per-chip counts of a Monte Carlo evaluation, chips ``0 … n − 1`` in order: all that is
    needed to extend it to more chips, cut it to fewer, or resume it.

    Attributes:
        correct: (n,) test images each chip classified correctly.
        nll: per chip from chip ``n_pooled`` on, the sum of ``−log p_label`` (nats, at the
            evaluation's temperature) over that chip's correct predictions.
        pooled_nll: the same sum over chips ``0 … n_pooled − 1`` together. Records written before
            per-chip sums were kept hold only their EKL, whose total this is (EKL × their correct
            predictions).
        n_pooled: how many chips ``pooled_nll`` covers (0: every chip has its own sum).
    """

    correct: tuple[int, ...] = ()
    nll: tuple[float, ...] = ()
    pooled_nll: float = 0.0
    n_pooled: int = 0

    def __post_init__(self) -> None:
        if len(self.nll) != len(self.correct) - self.n_pooled or self.n_pooled < 0:
            raise SpecError(f"a chip tally needs one NLL sum per chip after the {self.n_pooled} pooled ones, "
                            f"got {len(self.nll)} sums for {len(self.correct)} chips.")

    def __len__(self) -> int:
        return len(self.correct)

    @property
    def ekl(self) -> float:
        """Mean ``−log p_label`` over every correct prediction of every chip (NaN if none)."""
        hits = sum(self.correct)
        return (self.pooled_nll + math.fsum(self.nll)) / hits if hits else math.nan

    def head(self, n: int) -> ChipTally:
        """Chips ``0 … n − 1``; empty when ``n`` splits the pooled chips, whose sums are not apart."""
        if n >= len(self):
            return self
        if n < self.n_pooled:
            return ChipTally()
        return replace(self, correct=self.correct[:n], nll=self.nll[: n - self.n_pooled])

    def plus(self, correct: int, nll: float) -> ChipTally:
        """This tally with the next chip appended."""
        return replace(self, correct=(*self.correct, int(correct)), nll=(*self.nll, float(nll)))

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return {"correct": list(self.correct), "nll": list(self.nll), "pooled_nll": self.pooled_nll,
                "n_pooled": self.n_pooled}

    @classmethod
    def from_dict(cls, d: dict) -> ChipTally:
        """Inverse of :meth:`to_dict`; refuses anything else with a :class:`SpecError`."""
        try:
            return cls(tuple(int(c) for c in d["correct"]), tuple(float(v) for v in d["nll"]),
                       float(d["pooled_nll"]), int(d["n_pooled"]))
        except (KeyError, TypeError, ValueError) as err:
            raise SpecError(f"not a chip tally: {err}") from None


@dataclass(frozen=True)
class MonteCarloStats:
    """Accuracy of a model over chips. Accuracies are fractions in [0, 1].

    Attributes:
        n_chips: chips evaluated.
        n_images: test images per chip.
        ideal_accuracy: the model on exact digital weights (no hardware).
        mean: mean accuracy over chips.
        std: sample standard deviation over chips.
        ci95: half-width of the 95 % confidence interval of the mean (Student t).
        p1: 1st percentile over chips (the worst chips).
        recovery: ``mean / reference`` (paper 000 eq. 12); the reference is ``ideal_accuracy``
            unless :func:`evaluate` is given another (a teacher's).
        ekl: expected KL divergence of correct predictions, nats: mean of ``−log p_label`` over
            every correct prediction of every chip (paper 002, Fig. 4).
        accuracies: per-chip accuracies, in chip order.
        tally: the per-chip counts behind ``accuracies`` and ``ekl`` (empty when the statistics
            were summarised from accuracies alone).
    """

    n_chips: int
    n_images: int
    ideal_accuracy: float
    mean: float
    std: float
    ci95: float
    p1: float
    recovery: float
    ekl: float
    accuracies: tuple[float, ...]
    tally: ChipTally = ChipTally()

    def to_dict(self) -> dict:
        """Plain-JSON form (the tally only where there is one)."""
        d = asdict(self) | {"accuracies": list(self.accuracies)}
        del d["tally"]
        return d | ({"tally": self.tally.to_dict()} if len(self.tally) else {})


def summarise(accuracies: np.ndarray, ideal: float, reference: float, ekl: float, n_images: int,
              tally: ChipTally = ChipTally()) -> MonteCarloStats:
    """Mean, std, 95 % CI, 1st percentile and recovery of per-chip accuracies (``tally``: the
    counts they came from, kept in the result)."""
    acc = np.asarray(accuracies, dtype=np.float64)
    n = acc.size
    std = float(acc.std(ddof=1)) if n > 1 else 0.0
    ci = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n) if n > 1 else math.nan
    return MonteCarloStats(
        n_chips=n, n_images=n_images, ideal_accuracy=ideal, mean=float(acc.mean()), std=std, ci95=float(ci),
        p1=float(np.percentile(acc, 1)), recovery=float(acc.mean() / reference) if reference > 0 else math.nan,
        ekl=ekl, accuracies=tuple(float(a) for a in acc), tally=tally,
    )


@torch.no_grad()
def digital_accuracy(model: nn.Module, data: ImageData, batch_size: int = 1000) -> float:
    """Accuracy of ``model`` as it is (digital weights, or its current chips if converted)."""
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for i in range(0, len(data), batch_size):
        x, y = data.images[i : i + batch_size].to(device), data.labels[i : i + batch_size].to(device)
        correct += int((model(x).argmax(dim=1) == y).sum())
    return correct / len(data)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, hw: HardwareConfig, n_chips: int = 200, seed: int = 0,
             chips_per_pass: int = 8, batch_size: int = 500, reference_accuracy: float | None = None,
             reporter: Reporter | None = None, temperature: float = 1.0, done: ChipTally = ChipTally(),
             on_pass: Callable[[ChipTally], None] | None = None) -> MonteCarloStats:
    """Monte Carlo accuracy of ``model`` over chips ``0 … n_chips − 1`` drawn from ``seed``.

    Args:
        model: a trained model (plain torch layers, or crossbar layers, which are converted back
            first); it is not modified.
        data: the test set.
        hw: the hardware every chip follows.
        n_chips: chips to evaluate. Hardware that draws nothing (no faults, ``prog_sigma`` 0) makes
            every chip alike: one is run, and its counts stand for all ``n_chips`` (the numbers a
            full evaluation gives).
        seed: the chip seed (layer seeds are spawned from it, as in :func:`cosim.layers.convert`).
        chips_per_pass: chips evaluated together in one forward pass (memory vs. speed only: the
            numbers do not depend on it).
        batch_size: test images per forward pass (each replicated ``chips_per_pass`` times).
        reference_accuracy: the accuracy recovery is measured against (default: this model's
            digital accuracy; pass a teacher's to follow paper 000).
        reporter: progress, one step per chip.
        temperature: the logits are divided by it before the softmax of the EKL (accuracy does not
            change). OVF's training combination scales the backbone's logits by ``1/(N+1)``, so an
            OVF model's logits come out about ``N+1`` times larger than a GNI model's; comparing
            EKL at ``temperature = N+1`` removes that scale.
        done: chips already evaluated, from an earlier call on the same model, data, hardware,
            seed and temperature (its ``tally``): they are not run again, only chips
            ``len(done) … n_chips − 1`` are. A longer tally is cut to ``n_chips``. The result
            equals a fresh evaluation's (EKL to float rounding).
        on_pass: called after every pass with the tally so far (to save it, so that an
            interrupted evaluation resumes where it stopped).
    """
    if n_chips < 1 or chips_per_pass < 1 or batch_size < 1:
        raise SpecError("n_chips, chips_per_pass and batch_size must be >= 1.")
    if not (math.isfinite(temperature) and temperature > 0):
        raise SpecError(f"temperature must be a positive number, got {temperature!r}.")
    reporter = reporter or NullReporter()
    digital = unconvert(copy.deepcopy(model)).eval()
    ideal = digital_accuracy(digital, data, batch_size)
    tally = done.head(n_chips)
    identical = chips_alike(hw)  # nothing is drawn: every chip is chip 0's copy
    per_pass = 1 if identical else chips_per_pass
    # held: (first chip, count) the crossbar layers hold. Converting draws a fresh evaluation's
    # first pass, which then runs on that draw; a resumed one converts on chip 0 alone.
    held = (0, 1 if len(tally) else min(per_pass, n_chips))
    hw_model = convert(digital, hw, n_chips=held[1], seed=seed).eval()
    if not crossbar_layers(hw_model):
        raise SpecError("the model has no Linear or Conv2d layer to put on crossbars.")
    reporter.start(n_chips, f"Monte Carlo over {n_chips} chips" + (" (all alike: one is run)" if identical else ""))
    reporter.advance(len(tally))
    try:
        while len(tally) < n_chips:
            first = len(tally)
            if identical and tally.nll:  # the same chip again: the same counts
                counts = [(tally.correct[-1], tally.nll[-1])] * (n_chips - first)
            else:
                k = min(per_pass, n_chips - first)
                if held != (first, k):
                    hold_chips(hw_model, k, first)
                    held = (first, k)
                counts = _chip_counts(hw_model, data, k, batch_size, temperature)
            for c, v in counts:
                tally = tally.plus(c, v)
            if on_pass is not None:
                on_pass(tally)
            reporter.advance(len(counts))
    finally:
        reporter.finish()
    ref = ideal if reference_accuracy is None else reference_accuracy
    return summarise(np.asarray(tally.correct) / len(data), ideal, ref, tally.ekl, len(data), tally)


def _chip_counts(hw_model: nn.Module, data: ImageData, k: int, batch_size: int,
                 temperature: float) -> list[tuple[int, float]]:
    """(correct predictions, their summed ``−log p_label``) of each of the ``k`` chips ``hw_model``
    holds, over all of ``data``."""
    device = next(hw_model.parameters()).device
    correct = torch.zeros(k, dtype=torch.int64, device=device)
    nll = torch.zeros(k, dtype=torch.float64, device=device)
    for i in range(0, len(data), batch_size):
        x = data.images[i : i + batch_size].to(device)
        y = data.labels[i : i + batch_size].to(device)
        logp = torch.log_softmax(hw_model(repeat_for_chips(x, k)).float() / temperature, dim=1).reshape(k, x.shape[0], -1)
        hit = logp.argmax(dim=2) == y.unsqueeze(0)
        correct += hit.sum(dim=1)
        label_logp = logp.gather(2, y.view(1, -1, 1).expand(k, -1, 1)).squeeze(2)
        nll -= torch.where(hit, label_logp, 0.0).double().sum(dim=1)
    return list(zip(correct.tolist(), nll.tolist()))
