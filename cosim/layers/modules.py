"""``CrossbarLinear``, ``CrossbarConv2d`` and ``convert`` / ``unconvert`` (DESIGN §4).

Chips travel in the batch dimension, chip-major: a layer holding ``n`` chips takes inputs of
batch ``n·B`` (use :func:`repeat_for_chips`) and applies chip ``k``'s weights to rows
``k·B … (k+1)·B − 1``; element-wise layers between crossbars need no change. With ``n = 1``
the layers are drop-in replacements for their torch parents.

Forward: input DAC (optional) → realised weights of each chip (cached; rebuilt only when the
weights or the chips change) → MVM → per-tile, per-slice ADC (optional) → bias. Gradients:
exact where the hardware map is differentiable (one-cell preset), a straight-through estimator
through quantisers otherwise; weights on faulty devices receive no update (paper 000, eq. 7).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cosim.errors import SpecError
from cosim.layers.chip import ChipDraw, draw_chips, one_cell_weights, slice_levels
from cosim.layers.config import HardwareConfig, Mapping


def repeat_for_chips(x: torch.Tensor, n_chips: int) -> torch.Tensor:
    """(B, …) → (n_chips·B, …), chip-major, for a model holding ``n_chips`` chips."""
    return x.repeat(n_chips, *([1] * (x.dim() - 1)))


def split_chips(y: torch.Tensor, n_chips: int) -> torch.Tensor:
    """(n_chips·B, …) → (n_chips, B, …)."""
    return y.reshape(n_chips, -1, *y.shape[1:])


def quantise_signed(x: torch.Tensor, full_scale: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric uniform quantiser with ``2^{bits−1} − 1`` levels per sign, clipping at ±full_scale.

    Returns the quantised value with a straight-through gradient (identity inside the range).
    """
    top = 2 ** (bits - 1) - 1
    step = (full_scale / top).clamp_min(torch.finfo(x.dtype).tiny)
    q = torch.clamp(torch.round(x / step), -top, top) * step
    return x + (q - x).detach()


class _CrossbarCore:
    """Shared machinery of both layers: chips, cache, gradient mask, the MVM."""

    hw: HardwareConfig
    weight: nn.Parameter

    def _setup(self, hw: HardwareConfig, n_chips: int, seed: int) -> None:
        if not isinstance(hw, HardwareConfig):
            raise SpecError("hw must be a HardwareConfig.")
        self.hw = hw
        self._cache: tuple[Any, ...] | None = None
        self.weight.register_hook(self._mask_gradient)
        self.redraw(n_chips, seed)

    def redraw(self, n_chips: int, seed: int) -> None:
        """Draw ``n_chips`` new chips from ``seed`` (drops the cached weights)."""
        if not isinstance(n_chips, int) or n_chips < 1:
            raise SpecError(f"n_chips must be a whole number >= 1, got {n_chips!r}.")
        chips = draw_chips(self._matrix_shape(), self.hw, n_chips, seed)
        device = self.weight.device
        self.seed = seed
        for name, t in (("chip_codes", chips.codes), ("chip_theta", chips.theta), ("chip_noise", chips.prog_noise)):
            self.register_buffer(name, t.to(device), persistent=True)  # type: ignore[attr-defined]
        healthy = chips.healthy_weights().all(dim=0).T.to(self.weight.dtype)  # (in, out) → (out, in)
        self.register_buffer("healthy", healthy.reshape(self.weight.shape).to(device))  # type: ignore[attr-defined]
        self._cache = None

    @property
    def chips(self) -> ChipDraw:
        """The chip draw this layer holds."""
        return ChipDraw(self.chip_codes, self.chip_theta, self.chip_noise)  # type: ignore[attr-defined]

    @property
    def n_chips(self) -> int:
        """Number of chips evaluated together."""
        return int(self.chip_codes.shape[0])  # type: ignore[attr-defined]

    def _mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.healthy  # type: ignore[attr-defined]

    def _matrix_shape(self) -> tuple[int, int]:
        out_features = self.weight.shape[0]
        return (int(self.weight[0].numel()), int(out_features))

    def _w_in_out(self) -> torch.Tensor:
        return self.weight.reshape(self.weight.shape[0], -1).T

    def _slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached (parts (n, S, in, out), coefficients (S,)): realised weight = Σ_s coef_s parts_s."""
        key = (self.weight._version, self.weight.data_ptr(), self.chip_codes.data_ptr())  # type: ignore[attr-defined]
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        w = self._w_in_out()
        if self.hw.mapping is Mapping.ONE_CELL:
            wmax = w.detach().abs().max().clamp_min(torch.finfo(w.dtype).tiny)
            parts = (one_cell_weights(w.detach(), self.hw, self.chips) / wmax).unsqueeze(1)
            coef = wmax.reshape(1).to(w.dtype)
        else:
            delta, scale = slice_levels(w, self.hw, self.chips)
            parts = delta.to(w.dtype)
            shifts = torch.arange(self.hw.slices, dtype=torch.float64, device=w.device) * self.hw.bits_per_device
            coef = (scale * 2.0**shifts).to(w.dtype)
        self._cache = (key, parts, coef)
        return parts, coef

    def realised_weights(self) -> torch.Tensor:
        """(n, in, out) weights each chip realises, differentiable w.r.t. ``weight`` (see module doc)."""
        w = self._w_in_out()
        if self.hw.mapping is Mapping.ONE_CELL:
            return one_cell_weights(w, self.hw, self.chips)
        parts, coef = self._slices()
        hw_w = torch.einsum("nsio,s->nio", parts, coef)
        return w.unsqueeze(0) + (hw_w - w.detach().unsqueeze(0))

    def _adc_outputs(self, x: torch.Tensor, xmax: torch.Tensor) -> torch.Tensor:
        """(n, M, out): MVM digitised per tile, slice and column."""
        parts, coef = self._slices()
        n, s, n_in, n_out = parts.shape
        rows = self.hw.tile_rows
        tiles = -(-n_in // rows)
        pad = tiles * rows - n_in
        xt = F.pad(x, (0, pad)).reshape(n, x.shape[1], tiles, rows)
        pt = F.pad(parts, (0, 0, 0, pad)).reshape(n, s, tiles, rows, n_out)
        y = torch.einsum("nmtr,nstro->nmsto", xt, pt)
        full = self.hw.adc_range * rows * self.hw.device_levels * xmax.unsqueeze(-1).unsqueeze(-1)
        yq = quantise_signed(y, full, self.hw.adc_bits)
        return torch.einsum("nmsto,s->nmo", yq, coef)

    def _mvm(self, x: torch.Tensor) -> torch.Tensor:
        """(n, M, in) → (n, M, out), without bias."""
        xmax = x.detach().abs().amax(dim=-1, keepdim=True)
        if self.hw.dac_bits is not None:
            x = quantise_signed(x, xmax, self.hw.dac_bits)
        y = torch.bmm(x, self.realised_weights())
        if self.hw.adc_bits is not None:
            y = y + (self._adc_outputs(x.detach(), xmax) - y).detach()
        return y

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_chips
        if x.shape[0] % n:
            raise SpecError(
                f"a layer holding {n} chips needs a batch that is a multiple of {n} (chip-major, see "
                f"repeat_for_chips); got batch {x.shape[0]}."
            )
        return x.reshape(n, x.shape[0] // n, *x.shape[1:])


class CrossbarLinear(_CrossbarCore, nn.Linear):
    """``nn.Linear`` computed on crossbar chips. Weight (out, in) maps to arrays as W^T (in rows)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, hw: HardwareConfig,
                 n_chips: int = 1, seed: int = 0, device: Any = None, dtype: Any = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(hw, n_chips, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        lead = x.shape[:-1]
        xs = self._split(x.reshape(-1, x.shape[-1]))
        y = self._mvm(xs).reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y


class CrossbarConv2d(_CrossbarCore, nn.Conv2d):
    """``nn.Conv2d`` (groups = 1, zero padding) as an unfolded MVM on crossbar chips."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, bias: bool = True, *, hw: HardwareConfig, n_chips: int = 1, seed: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, bias=bias, device=device, dtype=dtype)
        self._setup(hw, n_chips, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        nb, _, h, w = x.shape
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        patches = self._split(cols.transpose(1, 2))  # (n, B, L, in)
        n, b, length, n_in = patches.shape
        y = self._mvm(patches.reshape(n, b * length, n_in)).reshape(nb, length, self.out_channels)
        y = y.transpose(1, 2).reshape(nb, self.out_channels, ho, wo)
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y


def _layer_seeds(seed: int, count: int) -> list[int]:
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(count)]


def convert(model: nn.Module, hw: HardwareConfig, n_chips: int = 1, seed: int = 0) -> nn.Module:
    """Swap every ``nn.Linear`` / ``nn.Conv2d`` for its crossbar version, in place, keeping weights.

    Each layer gets its own seed spawned from ``seed`` (in module order), so one seed fixes the
    whole chip. Returns ``model``.
    """
    targets = [(name, m) for name, m in model.named_modules()
               if type(m) in (nn.Linear, nn.Conv2d)]
    for (name, old), layer_seed in zip(targets, _layer_seeds(seed, len(targets))):
        kw = dict(hw=hw, n_chips=n_chips, seed=layer_seed, device=old.weight.device, dtype=old.weight.dtype)
        if isinstance(old, nn.Linear):
            new: nn.Module = CrossbarLinear(old.in_features, old.out_features, old.bias is not None, **kw)
        else:
            if old.groups != 1 or old.padding_mode != "zeros" or isinstance(old.padding, str):
                raise SpecError(f"layer {name!r}: only groups=1, numeric zero padding convolutions map to crossbars.")
            new = CrossbarConv2d(old.in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                                 old.dilation, old.bias is not None, **kw)
        _replace(model, name, _with_params_of(new, old))
    return model


def unconvert(model: nn.Module) -> nn.Module:
    """Swap crossbar layers back to plain ``nn.Linear`` / ``nn.Conv2d``, in place, keeping weights."""
    for name, m in list(model.named_modules()):
        if isinstance(m, CrossbarLinear):
            new: nn.Module = nn.Linear(m.in_features, m.out_features, m.bias is not None,
                                       device=m.weight.device, dtype=m.weight.dtype)
        elif isinstance(m, CrossbarConv2d):
            new = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                            bias=m.bias is not None, device=m.weight.device, dtype=m.weight.dtype)
        else:
            continue
        _replace(model, name, _with_params_of(new, m))
    return model


def _with_params_of(new: nn.Module, old: nn.Module) -> nn.Module:
    """Copy weight (and bias) from ``old`` into ``new``; returns ``new``."""
    with torch.no_grad():
        new.weight.copy_(old.weight)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    return new


def _replace(model: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
