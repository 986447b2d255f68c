"""The model zoo, sized for 1×28×28 and 3×32×32 inputs (DESIGN §5, issue 5).

Every model is a flat ``nn.Sequential`` (ResNet-18's residual blocks are single modules in it)
so that partition retraining can cut it into blocks; every convolution is followed by BatchNorm
(paper 000, §2.3.1), which runs in the digital periphery. Layer sizes of the small models follow common practice where paper 000
gives only layer counts (MLP: 3 FC; LeNet: 2 conv + 2 FC; ConvNet: 3 conv + 2 FC); LeNet-5 is
the classic 6-16-120-84; VGG-8 is paper 002's (6 conv with BN, then FC 8192→1024→classes).
"""

from __future__ import annotations

from enum import Enum

from torch import nn

from cosim.errors import SpecError


class ModelName(str, Enum):
    """Models of the zoo."""

    MLP = "mlp"
    LENET = "lenet"
    CONVNET = "convnet"
    LENET5 = "lenet5"
    VGG8 = "vgg8"
    VGG16 = "vgg16"
    RESNET18 = "resnet18"


def _conv(c_in: int, c_out: int, k: int = 3, pad: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=pad, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def _vgg(cfg: list[int | str], shape: tuple[int, int, int], head: list[int], classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c, h = shape[0], shape[1]
    for item in cfg:
        if item == "M":
            if h >= 2:  # 28×28 inputs run out of resolution before 32×32 ones do
                layers.append(nn.MaxPool2d(2))
                h //= 2
        else:
            layers += _conv(c, int(item))
            c = int(item)
    layers.append(nn.Flatten())
    width = c * h * h
    for hidden in head:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.skip = (nn.Sequential() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))
        self.relu = nn.ReLU()

    def forward(self, x):  # noqa: D102
        return self.relu(self.body(x) + self.skip(x))


def _resnet18(shape: tuple[int, int, int], classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [*_conv(shape[0], 64)]
    c = 64
    for i, width in enumerate((64, 128, 256, 512)):
        for j in range(2):
            layers.append(_BasicBlock(c, width, 2 if (i > 0 and j == 0) else 1))
            c = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, classes)]
    return nn.Sequential(*layers)


def build_model(name: ModelName | str, shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10) -> nn.Module:
    """A fresh model (torch's default initialisation; seed torch first for a reproducible one).

    Args:
        name: a :class:`ModelName`.
        shape: input (channels, height, width): (1, 28, 28) or (3, 32, 32).
        classes: output classes.
    """
    try:
        name = ModelName(name)
    except ValueError:
        raise SpecError(f"unknown model {name!r}; choose one of {', '.join(m.value for m in ModelName)}.") from None
    if tuple(shape) not in ((1, 28, 28), (3, 32, 32)):
        raise SpecError(f"models are sized for 1×28×28 or 3×32×32 inputs, got {tuple(shape)}.")
    c, side = shape[0], shape[1]
    if name is ModelName.MLP:
        return nn.Sequential(nn.Flatten(), nn.Linear(c * side * side, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                             nn.Linear(256, classes))
    if name is ModelName.LENET:
        s = ((side - 4) // 2 - 4) // 2
        return nn.Sequential(*_conv(c, 20, 5, 0), nn.MaxPool2d(2), *_conv(20, 50, 5, 0), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(50 * s * s, 500), nn.ReLU(), nn.Linear(500, classes))
    if name is ModelName.CONVNET:
        return _vgg([32, "M", 64, "M", 128, "M"], shape, [256], classes)
    if name is ModelName.LENET5:
        s = (side // 2 - 4) // 2
        return nn.Sequential(*_conv(c, 6, 5, 2), nn.MaxPool2d(2), *_conv(6, 16, 5, 0), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, classes))
    if name is ModelName.VGG8:
        # Paper 002: 6 conv (128-128-256-256-512-512) with BN; its FC input is 8192 = 512·4·4 on 32×32,
        # and 512·3·3 = 4608 on 28×28 (three 2× pools: 28 → 14 → 7 → 3).
        return _vgg([128, 128, "M", 256, 256, "M", 512, 512, "M"], shape, [1024], classes)
    if name is ModelName.VGG16:
        cfg: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        return _vgg(cfg, shape, [512], classes)
    return _resnet18(shape, classes)
