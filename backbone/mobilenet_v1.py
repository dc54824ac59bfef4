"""MobileNetV1 (Howard et al., 2017): the body of Table 1, its width multiplier and the paper's ablation variants.

Stages are named with TF-slim numbering: ``conv0`` is the stem, ``conv1`` ... ``conv13`` the separable layers.
Each stage is a module attribute of that name, so state-dict keys read ``conv5.pw.conv.weight``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["MobileNetV1Backbone", "MobileNetV1", "StageInfo", "make_divisible", "STAGE_NAMES"]

# (output channels, stride) of conv1..conv13 at width 1. Table 1 prints "s2" for conv13's depthwise
# layer: a known typo, the output stays 7x7, so its stride is 1 here.
_SEPARABLE_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
_STEM_CHANNELS = 32
# The five 14x14x512 separable layers that "Shallow MobileNet" removes.
_SHALLOW_REMOVED = ("conv7", "conv8", "conv9", "conv10", "conv11")
STAGE_NAMES: tuple[str, ...] = tuple(f"conv{i}" for i in range(14))


def make_divisible(channels: float, divisor: int = 8, min_value: int | None = None) -> int:
    """timm's channel rounding: nearest multiple of ``divisor``, never below it, never 10% below ``channels``."""
    min_value = min_value or divisor
    rounded = max(min_value, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return rounded


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    raise ValueError(f"activation must be 'relu' or 'relu6', got {name!r}")


class ConvBNAct(nn.Sequential):
    """Convolution without bias, BatchNorm, activation."""

    def __init__(
        self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, groups: int = 1, activation: str = "relu"
    ) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
                bn=nn.BatchNorm2d(out_chs),
                act=_activation(activation),
            )
        )


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise (stride s) then 1x1 pointwise, each with BatchNorm and activation."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, activation: str = "relu") -> None:
        super().__init__(
            OrderedDict(
                dw=ConvBNAct(in_chs, in_chs, 3, stride, groups=in_chs, activation=activation),
                pw=ConvBNAct(in_chs, out_chs, 1, activation=activation),
            )
        )


@dataclass(frozen=True)
class StageInfo:
    """Metadata of one stage's output: heads read channels and strides from here, never hard-code them."""

    name: str
    channels: int
    stride: int


class MobileNetV1Backbone(nn.Module):
    """The MobileNetV1 body, returning the feature maps of the stages named in ``out_features``.

    Args:
        width_mult: the paper's alpha; every layer's channels become alpha times the paper's, rounded to a
            multiple of 8 and never below 8 (timm's rounding; TF-slim truncates, both agree at 1, .75, .5, .25).
        activation: "relu" (the paper) or "relu6" (TF-slim, timm).
        out_features: stages to return, "conv0" (stem) to "conv13". Stages after the last one named still exist
            (their weights load and other modules may run them) but ``forward`` does not compute them.
        separable: False builds "Conv MobileNet": every separable layer becomes one full 3x3 convolution.
        shallow: True builds "Shallow MobileNet": conv7 to conv11 (the five 14x14x512 layers) are removed.
        in_chans: input channels.

    The input may have any size (the resolution multiplier is the input size).
    ``forward(x)`` with ``x`` of shape (N, in_chans, H, W) returns an ordered ``dict[str, Tensor]`` of the
    ``out_features`` stages, each of shape (N, channels, ceil(H / stride), ceil(W / stride)).
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        activation: str = "relu",
        out_features: Sequence[str] = ("conv13",),
        separable: bool = True,
        shallow: bool = False,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        _activation(activation)  # validates the name
        self.width_mult = width_mult
        self.activation = activation
        self.separable = separable
        self.shallow = shallow

        infos: list[StageInfo] = []
        channels = make_divisible(_STEM_CHANNELS * width_mult)
        self.conv0 = ConvBNAct(in_chans, channels, 3, stride=2, activation=activation)
        stride = 2
        infos.append(StageInfo("conv0", channels, stride))
        for index, (paper_channels, layer_stride) in enumerate(_SEPARABLE_LAYERS, start=1):
            name = f"conv{index}"
            if shallow and name in _SHALLOW_REMOVED:
                continue
            out_chs = make_divisible(paper_channels * width_mult)
            if separable:
                stage: nn.Module = DepthwiseSeparable(channels, out_chs, layer_stride, activation)
            else:
                stage = ConvBNAct(channels, out_chs, 3, layer_stride, activation=activation)
            self.add_module(name, stage)
            channels, stride = out_chs, stride * layer_stride
            infos.append(StageInfo(name, channels, stride))
        self.stage_info: dict[str, StageInfo] = {info.name: info for info in infos}

        out_features = tuple(out_features)
        if not out_features:
            raise ValueError("out_features must name at least one stage")
        for name in out_features:
            if name not in self.stage_info:
                raise ValueError(f"out_features: unknown stage {name!r}; this network has {list(self.stage_info)}")
        order = list(self.stage_info)
        self.out_features = tuple(sorted(out_features, key=order.index))
        self._last_stage = self.out_features[-1]

    @property
    def stage_names(self) -> list[str]:
        """Names of the stages this network has, in order (shallow networks skip conv7 to conv11)."""
        return list(self.stage_info)

    @property
    def feature_info(self) -> list[StageInfo]:
        """Channels and stride of each returned feature map, in ``out_features`` order."""
        return [self.stage_info[name] for name in self.out_features]

    @property
    def out_channels(self) -> dict[str, int]:
        return {name: self.stage_info[name].channels for name in self.out_features}

    @property
    def strides(self) -> dict[str, int]:
        return {name: self.stage_info[name].stride for name in self.out_features}

    def last_stage_with_stride(self, stride: int) -> str:
        """The deepest stage whose output stride is ``stride`` (conv11 for 16 and conv13 for 32 on the full net)."""
        names = [info.name for info in self.stage_info.values() if info.stride == stride]
        if not names:
            strides = sorted({info.stride for info in self.stage_info.values()})
            raise ValueError(f"no stage has output stride {stride}; strides available: {strides}")
        return names[-1]

    def stage(self, name: str) -> nn.Module:
        if name not in self.stage_info:
            raise KeyError(f"unknown stage {name!r}; this network has {self.stage_names}")
        return getattr(self, name)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = OrderedDict()
        for name in self.stage_info:
            x = getattr(self, name)(x)
            if name in self.out_features:
                features[name] = x
            if name == self._last_stage:
                break
        return features


class MobileNetV1(nn.Module):
    """The ImageNet-style classifier: backbone, global average pool, dropout, fully connected layer.

    ``forward(x)`` maps (N, 3, H, W) images to (N, num_classes) logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        activation: str = "relu",
        separable: bool = True,
        shallow: bool = False,
        dropout: float = 0.001,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.backbone = MobileNetV1Backbone(
            width_mult=width_mult,
            activation=activation,
            out_features=("conv13",),
            separable=separable,
            shallow=shallow,
            in_chans=in_chans,
        )
        self.num_features = self.backbone.stage_info["conv13"].channels
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> pooled features (N, num_features)."""
        return self.pool(self.backbone(x)["conv13"]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.forward_features(x)))
