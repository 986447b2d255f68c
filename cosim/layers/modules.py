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
from cosim.layers.chip import (
    ChipDraw,
    ChipResponse,
    chip_response,
    draw_chips,
    one_cell_weights,
    slice_levels,
    slice_significance,
)
from cosim.layers.config import ArrayModel, HardwareConfig, Mapping


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
        self._chip_cache: tuple[Any, ...] | None = None
        self.weight.register_hook(self._mask_gradient)
        self.redraw(n_chips, seed)

    def redraw(self, n_chips: int, seed: int, first_chip: int = 0) -> None:
        """Hold chips ``first_chip … first_chip + n_chips − 1`` of ``seed`` (drops the cached weights)."""
        if not isinstance(n_chips, int) or n_chips < 1:
            raise SpecError(f"n_chips must be a whole number >= 1, got {n_chips!r}.")
        chips = draw_chips(self._matrix_shape(), self.hw, n_chips, seed, first_chip)
        device = self.weight.device
        self.seed = seed
        for name, t in (("chip_codes", chips.codes), ("chip_theta", chips.theta), ("chip_noise", chips.prog_noise)):
            self.register_buffer(name, t.to(device), persistent=True)  # type: ignore[attr-defined]
        self.redraw_mask()

    def redraw_mask(self) -> None:
        """Recompute which weights may train from the chips held (after editing them by hand)."""
        healthy = self.chips.trainable_weights().all(dim=0).T.to(self.weight.dtype)  # (in, out) → (out, in)
        self.register_buffer("healthy", healthy.reshape(self.weight.shape).to(self.weight.device))  # type: ignore[attr-defined]
        self._cache = self._chip_cache = None

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

    def _cached(self, what: str, build: Any) -> Any:
        """Memoise ``build()`` under ``what`` until the weights or the chips change.

        Only the layer's own parameter is cached: a stand-in weight (``functional_call`` with noisy
        weights) is a temporary whose memory, and so whose key, a later temporary may reuse.
        """
        if not isinstance(self.weight, nn.Parameter):
            return build()
        key = (self.weight._version, self.weight.data_ptr(), self._chip_key())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, {})
        store = self._cache[1]
        if what not in store:
            store[what] = build()
        return store[what]

    def _chip_key(self) -> tuple[int, ...]:
        """Changes whenever a chip buffer is replaced or edited in place."""
        bufs = (self.chip_codes, self.chip_theta, self.chip_noise)  # type: ignore[attr-defined]
        return tuple(v for t in bufs for v in (t.data_ptr(), t._version))

    def _response(self, dtype: torch.dtype) -> ChipResponse | None:
        """The chips' cached :class:`ChipResponse` (ideal array; None for the exact model)."""
        if self.hw.array_model is not ArrayModel.IDEAL:
            return None
        key = (self._chip_key(), dtype)
        if self._chip_cache is None or self._chip_cache[0] != key:
            self._chip_cache = (key, chip_response(self.hw, self.chips, dtype))
        return self._chip_cache[1]

    def _slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached (parts (n, S, in, out), coefficients (S,)): realised weight = Σ_s coef_s parts_s."""
        return self._cached("slices", self._build_slices)

    def _build_slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        w = self._w_in_out().detach()
        if self.hw.mapping is Mapping.ONE_CELL:
            wmax = w.abs().max().clamp_min(torch.finfo(w.dtype).tiny)
            return (one_cell_weights(w, self.hw, self.chips) / wmax).unsqueeze(1), wmax.reshape(1)
        delta, scale = slice_levels(w, self.hw, self.chips, self._response(w.dtype))
        return delta.to(w.dtype), (scale * slice_significance(self.hw, torch.float64, w.device)).to(w.dtype)

    def realised_weights(self) -> torch.Tensor:
        """(n, in, out) weights each chip realises, differentiable w.r.t. ``weight`` (see module doc).

        Without autograd (inference) the result is cached with the chip's tiles.
        """
        if not (torch.is_grad_enabled() and self.weight.requires_grad):
            return self._cached("weights", lambda: self._build_weights().detach())
        return self._build_weights()

    def _build_weights(self) -> torch.Tensor:
        w = self._w_in_out()
        if self.hw.mapping is Mapping.ONE_CELL:
            return one_cell_weights(w, self.hw, self.chips)
        # Straight-through: the value is the hardware's, the gradient flows to w unchanged. The
        # offset (hardware − w) is cached with the chip's tiles until the weights change.
        def offset() -> torch.Tensor:
            parts, coef = self._slices()
            return torch.einsum("nsio,s->nio", parts, coef) - w.detach().unsqueeze(0)
        return w.unsqueeze(0) + self._cached("offset", offset)

    def _tile_parts(self) -> list[torch.Tensor]:
        """Cached per row tile: (n, rows_t, S·out), the tile's slice parts side by side."""
        def build() -> list[torch.Tensor]:
            parts, _ = self._slices()
            n, s, n_in, n_out = parts.shape
            return [parts[:, :, r0 : r0 + self.hw.tile_rows].permute(0, 2, 1, 3).reshape(n, -1, s * n_out).contiguous()
                    for r0 in range(0, n_in, self.hw.tile_rows)]
        return self._cached("tiles", build)

    def _adc_outputs(self, x: torch.Tensor, xmax: torch.Tensor) -> torch.Tensor:
        """(n, M, out): the MVM digitised per tile, slice and column (no gradient).

        Each tile-slice-column current is quantised by a signed ``adc_bits`` converter whose full
        scale is ``adc_range · rows · (2^K − 1) · xmax`` (the largest output that tile's slice can
        give for this input's range; a partial tile's unused rows sit at 0 V); the digital sums
        then shift and add. ``x``: (n, M, in), ``xmax``: (n, M, 1), the input range of every vector.
        """
        with torch.no_grad():
            _, coef = self._slices()
            rows, (n, m, _) = self.hw.tile_rows, x.shape
            top = 2 ** (self.hw.adc_bits - 1) - 1  # type: ignore[operator]
            step = (self.hw.adc_range * rows * self.hw.device_levels / top) * xmax
            xs = x / step.clamp_min(torch.finfo(x.dtype).tiny)  # outputs come in ADC steps
            total = None
            for t, part in enumerate(self._tile_parts()):
                y = torch.bmm(xs[:, :, t * rows : t * rows + part.shape[1]], part).round_().clamp_(-top, top)
                total = y if total is None else total.add_(y)
            return torch.einsum("nmso,s->nmo", total.reshape(n, m, coef.numel(), -1), coef) * step

    def _mvm(self, x: torch.Tensor, xmax: torch.Tensor) -> torch.Tensor:
        """(n, M, in) → (n, M, out), without bias; ``xmax`` (n, M, 1) is each vector's input range.

        With an ADC the value is the digitised one and the gradient that of the unquantised MVM
        (straight-through); without autograd only the digitised MVM is computed.
        """
        if self.hw.adc_bits is None:
            return torch.bmm(x, self.realised_weights())
        digital = self._adc_outputs(x.detach(), xmax)
        if not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad)):
            return digital
        y = torch.bmm(x, self.realised_weights())
        return y + (digital - y).detach()

    def _dac(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input DAC with one full scale per sample (max |x| over the sample's whole input).

        Returns the (optionally quantised) input and its range, shaped (batch, 1, …).
        """
        xmax = x.detach().abs().amax(dim=tuple(range(1, x.dim())), keepdim=True)
        if self.hw.dac_bits is not None:
            x = quantise_signed(x, xmax, self.hw.dac_bits)
        return x, xmax

    def _check_batch(self, batch: int) -> None:
        n = self.n_chips
        if batch % n:
            raise SpecError(
                f"a layer holding {n} chips needs a batch that is a multiple of {n} (chip-major, see "
                f"repeat_for_chips); got batch {batch}."
            )

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        self._check_batch(x.shape[0])
        return x.reshape(self.n_chips, x.shape[0] // self.n_chips, *x.shape[1:])


class CrossbarLinear(_CrossbarCore, nn.Linear):
    """``nn.Linear`` computed on crossbar chips. Weight (out, in) maps to arrays as W^T (in rows)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, hw: HardwareConfig,
                 n_chips: int = 1, seed: int = 0, device: Any = None, dtype: Any = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._setup(hw, n_chips, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        lead = x.shape[:-1]
        x, xmax = self._dac(x.reshape(-1, x.shape[-1]))
        y = self._mvm(self._split(x), self._split(xmax)).reshape(*lead, self.out_features)
        return y + self.bias if self.bias is not None else y


class CrossbarConv2d(_CrossbarCore, nn.Conv2d):
    """``nn.Conv2d`` (groups = 1, zero padding) on crossbar chips.

    Without an ADC the chips' realised kernels run as one grouped convolution (chips as groups);
    with an ADC the input is unfolded into patches so that every tile's partial sums are
    digitised before they are added.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1, padding: Any = 0,
                 dilation: Any = 1, bias: bool = True, *, hw: HardwareConfig, n_chips: int = 1, seed: int = 0,
                 device: Any = None, dtype: Any = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, bias=bias, device=device, dtype=dtype)
        self._setup(hw, n_chips, seed)

    def _kernels(self) -> torch.Tensor:
        """(n·out, C, kh, kw) realised kernels of all chips (cached in inference)."""
        w = self.realised_weights()  # (n, in, out)
        return w.transpose(1, 2).reshape(-1, *self.weight.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x, xmax = self._dac(x)
        n, (nb, c, h, w) = self.n_chips, x.shape
        self._check_batch(nb)
        if self.hw.adc_bits is None:
            kernels = self._kernels()
            if n > 1:  # (n·B, C, H, W) → (B, n·C, H, W): chip k's channels meet chip k's kernels
                x = x.reshape(n, nb // n, c, h, w).transpose(0, 1).reshape(nb // n, n * c, h, w)
            y = F.conv2d(x, kernels, self.bias.repeat(n) if self.bias is not None else None,
                         self.stride, self.padding, self.dilation, groups=n)
            if n > 1:
                y = y.reshape(nb // n, n, self.out_channels, *y.shape[2:]).transpose(0, 1).reshape(nb, -1, *y.shape[2:])
            return y
        kh, kw = self.kernel_size
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        wo = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(x, self.kernel_size, dilation=self.dilation, padding=self.padding, stride=self.stride)
        patches = self._split(cols.transpose(1, 2))  # (n, B, L, in)
        _, b, length, n_in = patches.shape
        pmax = self._split(xmax).reshape(n, b, 1, 1).expand(n, b, length, 1).reshape(n, b * length, 1)
        y = self._mvm(patches.reshape(n, b * length, n_in), pmax).reshape(nb, length, self.out_channels)
        y = y.transpose(1, 2).reshape(nb, self.out_channels, ho, wo)
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y


def crossbar_layers(model: nn.Module) -> list[CrossbarLinear | CrossbarConv2d]:
    """The crossbar layers of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, (CrossbarLinear, CrossbarConv2d))]


def hold_chips(model: nn.Module, n_chips: int, first_chip: int = 0) -> None:
    """Make every crossbar layer hold chips ``first_chip … first_chip + n_chips − 1`` of its own seed.

    Chips are prefix-stable (see :func:`cosim.layers.chip.draw_chips`), so evaluating chips
    0–199 in chunks of any size gives the same chips as one pass over all 200.
    """
    for layer in crossbar_layers(model):
        layer.redraw(n_chips, layer.seed, first_chip)


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
