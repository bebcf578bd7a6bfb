"""Models of trial and final trainings: our own proxies and timm ResNets.

The proxies (CIFAR ResNets, wide ResNets, an airbench-style net) expose their final linear
layer as ``classifier`` (adaptive gradient clipping leaves that layer alone, as in NFNets).
The ``timm:`` architectures are timm's own ResNets, built with ``timm.create_model`` from a name
and keyword arguments that the model card records, so a checkpoint of one loads with timm alone.
Every model takes any channel count and any input side >= 8 (global pooling before the head).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

MIN_IMAGE_SIZE = 8


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample while training.

    Kept branches are scaled by ``1 / (1 - rate)`` so evaluation needs no rescaling.
    """

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype)
        return x * mask.bernoulli_(keep) / keep


class BasicBlock(nn.Module):
    """Post-activation residual block of the CIFAR ResNets (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.drop_path(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: three stages of widths 16, 32, 64."""

    def __init__(self, n: int, num_classes: int, in_channels: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()
        )
        layers: list[nn.Module] = []
        c_in = 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(n):
                layers.append(BasicBlock(c_in, width, 2 if stage > 0 and i == 0 else 1))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layers(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x))


class WideBlock(nn.Module):
    """Pre-activation wide residual block with dropout between the convolutions."""

    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)
        self.drop_path = DropPath()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.drop_path(self.conv2(self.dropout(torch.relu(self.bn2(out)))))
        # The projection reads the activated input, as in the reference implementation.
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko and Komodakis 2016): widths 16, 16k, 32k, 64k."""

    def __init__(
        self, depth: int, k: int, num_classes: int, in_channels: int, dropout: float
    ) -> None:
        super().__init__()
        n = (depth - 4) // 6
        widths = (16 * k, 32 * k, 64 * k)
        self.stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        layers: list[nn.Module] = []
        c_in = 16
        for stage, width in enumerate(widths):
            for i in range(n):
                layers.append(WideBlock(c_in, width, 2 if stage > 0 and i == 0 else 1, dropout))
                c_in = width
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c_in), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.layers(self.stem(x))).flatten(1))


def _airbench_bn(channels: int) -> nn.BatchNorm2d:
    # airbench's "momentum 0.6" is the weight of the old running statistics; PyTorch's
    # momentum is the weight of the new batch, hence 1 - 0.6.
    return nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12)


class ConvGroup(nn.Module):
    """airbench block: conv, max-pool, BN, GELU, conv, BN, GELU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.bn1 = _airbench_bn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _airbench_bn(c_out)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.pool(self.conv1(x))))
        return self.act(self.bn2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """airbench94-style net: 2x2 conv stem, three conv groups, global max-pool, scaled logits.

    ``width`` scales the reference widths (64, 256, 256); 0.25 makes a fast CPU proxy.
    """

    def __init__(self, num_classes: int, in_channels: int, width: float, dropout: float) -> None:
        super().__init__()
        w1, w2, w3 = (max(8, round(c * width)) for c in (64, 256, 256))
        stem_width = max(8, round(24 * width))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 2, padding=0, bias=True), nn.GELU()
        )
        self.groups = nn.Sequential(ConvGroup(stem_width, w1), ConvGroup(w1, w2), ConvGroup(w2, w3))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(w3, num_classes, bias=False)
        self.scale = 1 / 9  # airbench divides the logits to temper the early softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.groups(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x)) * self.scale


ModelFactory = Callable[[int, int, float, float], nn.Module]


@dataclass(frozen=True)
class TimmArch:
    """A timm ResNet offered as an architecture.

    Attributes:
        name: timm's model name.
        channels: its stage widths at width 1.
        stem_width: width of its deep stem at width 1; None for the single 7x7 conv stem,
            whose width timm fixes at 64.
    """

    name: str
    channels: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int | None = None


#: timm architectures by the name a recipe gives them (``timm:<timm name>``).
TIMM_ARCHS: dict[str, TimmArch] = {
    f"timm:{arch.name}": arch
    for arch in (
        TimmArch("resnet10t", stem_width=32),
        TimmArch("resnet18"),
        TimmArch("resnet18d", stem_width=32),
        TimmArch("resnet34"),
        TimmArch("resnet50"),
        TimmArch("resnet50d", stem_width=32),
    )
}
#: A timm ResNet's stem divides the input side by 4 and its stages by up to 8 more; on small
#: images the last stages are dilated instead of strided (timm's ``output_stride``) so that the
#: last feature map keeps at least this side and the head still sees where a feature is.
MIN_FEATURE_SIDE = 4


@dataclass(frozen=True)
class TimmConfig:
    """What ``timm.create_model`` needs to rebuild a model: ``create_model(name, **kwargs)``."""

    name: str
    kwargs: dict[str, Any]


def output_stride_for(side: int) -> int:
    """The largest of timm's output strides (32, 16, 8) leaving ``MIN_FEATURE_SIDE`` pixels."""
    for stride in (32, 16):
        if side // stride >= MIN_FEATURE_SIDE:
            return stride
    return 8


def timm_config(
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int | tuple[int, int],
    *,
    width: float = 1.0,
    dropout: float = 0.0,
    drop_path: float = 0.0,
) -> TimmConfig:
    """The timm model name and ``create_model`` arguments of a ``timm:`` architecture.

    The small-image variant is chosen by the shorter input side (`output_stride_for`); the
    width multiplier scales the stage widths (and a deep stem), at least 8 channels each;
    ``dropout`` is timm's ``drop_rate`` (before the classifier) and ``drop_path`` its
    ``drop_path_rate`` (stochastic depth rising linearly to that rate in the last block).

    Raises:
        ValueError: ``arch`` is not one of :data:`TIMM_ARCHS`.
    """
    if arch not in TIMM_ARCHS:
        raise ValueError(f"unknown timm architecture {arch!r}; choose one of {sorted(TIMM_ARCHS)}")
    spec = TIMM_ARCHS[arch]
    side = min((image_size, image_size) if isinstance(image_size, int) else image_size)
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "in_chans": in_channels,
        "output_stride": output_stride_for(side),
        "channels": [max(8, round(c * width)) for c in spec.channels],
        "drop_rate": dropout,
        "drop_path_rate": drop_path,
    }
    if spec.stem_width is not None:
        kwargs["stem_width"] = max(8, round(spec.stem_width * width))
    return TimmConfig(spec.name, kwargs)


def create_timm_model(config: TimmConfig) -> nn.Module:
    """``timm.create_model(config.name, **config.kwargs)``, never with pretrained weights."""
    import timm  # lazily: it takes seconds to import and only timm architectures need it

    model: nn.Module = timm.create_model(config.name, pretrained=False, **config.kwargs)
    return model


ARCHS: dict[str, ModelFactory] = {
    "resnet8": lambda nc, ch, width, drop: CifarResNet(1, nc, ch, drop),
    "resnet20": lambda nc, ch, width, drop: CifarResNet(3, nc, ch, drop),
    "wrn-16-2": lambda nc, ch, width, drop: WideResNet(16, 2, nc, ch, drop),
    "wrn-28-2": lambda nc, ch, width, drop: WideResNet(28, 2, nc, ch, drop),
    "airbench": lambda nc, ch, width, drop: AirbenchNet(nc, ch, width, drop),
}


def set_stochastic_depth(model: nn.Module, rate: float) -> None:
    """Give the model's residual blocks drop-path rates rising linearly to ``rate``.

    The last block drops its branch with probability ``rate``, earlier blocks less (the
    linear decay rule of Huang et al. 2016).

    Raises:
        ValueError: a rate outside [0, 1), or a positive rate for a model without residual
            blocks.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"stochastic depth rate must lie in [0, 1), got {rate}")
    paths = [m for m in model.modules() if isinstance(m, DropPath)]
    if rate > 0 and not paths:
        raise ValueError(
            f"{type(model).__name__} has no residual blocks: stochastic depth needs one of "
            "the ResNets or wide ResNets"
        )
    for i, path in enumerate(paths, start=1):
        path.rate = rate * i / len(paths)


def build_model(
    arch: str,
    num_classes: int,
    in_channels: int,
    image_size: int | tuple[int, int],
    *,
    width: float = 1.0,
    dropout: float = 0.0,
    drop_path: float = 0.0,
) -> nn.Module:
    """Build a model of a trial or final training.

    Args:
        arch: one of :data:`ARCHS` or :data:`TIMM_ARCHS`.
        num_classes: number of outputs.
        in_channels: image channels (1 or 3, any positive count works).
        image_size: input side (or (height, width)); at least 8.
        width: width multiplier (airbench and timm ResNets; our ResNets have fixed widths).
        dropout: dropout rate (before the classifier; inside the blocks for WRNs).
        drop_path: stochastic depth rate of the last residual block (see
            `set_stochastic_depth`); models without residual blocks accept only 0.

    Raises:
        ValueError: an unknown architecture or an impossible size.
    """
    if arch not in ARCHS and arch not in TIMM_ARCHS:
        known = sorted(ARCHS) + sorted(TIMM_ARCHS)
        raise ValueError(f"unknown architecture {arch!r}; choose one of {known}")
    sides = (image_size, image_size) if isinstance(image_size, int) else image_size
    if min(sides) < MIN_IMAGE_SIZE:
        raise ValueError(f"image size {sides} is below the minimum of {MIN_IMAGE_SIZE}")
    if num_classes < 2 or in_channels < 1:
        raise ValueError(f"need >= 2 classes and >= 1 channel, got {num_classes}, {in_channels}")
    if not 0.0 <= dropout < 1.0 or width <= 0:
        raise ValueError(f"dropout must lie in [0, 1) and width be positive: {dropout}, {width}")
    if arch in TIMM_ARCHS:
        if not 0.0 <= drop_path < 1.0:
            raise ValueError(f"stochastic depth rate must lie in [0, 1), got {drop_path}")
        config = timm_config(
            arch, num_classes, in_channels, sides, width=width, dropout=dropout, drop_path=drop_path
        )
        return create_timm_model(config)
    model = ARCHS[arch](num_classes, in_channels, width, dropout)
    set_stochastic_depth(model, drop_path)
    return model
