"""MobileNetV1 (Howard et al., 2017): the body of Table 1, its width multiplier and the paper's ablation variants.

Stages are named with TF-slim numbering: ``conv0`` is the stem, ``conv1`` ... ``conv13`` the separable layers.
Each stage is a module attribute of that name, so state-dict keys read ``conv5.pw.conv.weight``; each stage's
output is a tap of the backbone contract (``backbone.contract``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from backbone.classifier import FeatureClassifier
from backbone.contract import FeatureBackbone, TapInfo

__all__ = ["MobileNetV1Backbone", "MobileNetV1", "make_divisible", "STAGE_NAMES"]

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


class MobileNetV1Backbone(FeatureBackbone):
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

    Every stage's output is a tap (``tap_info``: conv11 is the deepest at stride 16, conv13 at stride 32), and
    ``layers_after(tap)`` gives the stages that follow it. The input may have any size (the resolution multiplier
    is the input size). ``forward(x)`` with ``x`` of shape (N, in_chans, H, W) returns an ordered
    ``dict[str, Tensor]`` of the ``out_features`` stages, each of shape (N, channels, ceil(H / stride),
    ceil(W / stride)).
    """

    # TF-slim's preprocessing scales RGB to [-1, 1]; timm's mobilenetv1_100 weights were trained the same way.
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)

    def __init__(
        self,
        width_mult: float = 1.0,
        activation: Literal["relu", "relu6"] = "relu",
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

        channels = make_divisible(_STEM_CHANNELS * width_mult)
        self.conv0 = ConvBNAct(in_chans, channels, 3, stride=2, activation=activation)
        stride = 2
        taps = [TapInfo("conv0", channels, stride)]
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
            taps.append(TapInfo(name, channels, stride))
        self._set_taps(taps, out_features)

    def layers_after(self, tap: str) -> nn.Sequential:
        """The stages after ``tap`` (conv12 and conv13 after conv11), as children named like the backbone's."""
        if tap not in self.tap_info:
            raise ValueError(f"unknown tap {tap!r}; this network has {list(self.tap_info)}")
        names = list(self.tap_info)
        return nn.Sequential(OrderedDict((name, getattr(self, name)) for name in names[names.index(tap) + 1 :]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features: dict[str, torch.Tensor] = OrderedDict()
        last = self.out_features[-1]
        for name in self.tap_info:
            x = getattr(self, name)(x)
            if name in self.out_features:
                features[name] = x
            if name == last:
                break
        return features


class MobileNetV1(FeatureClassifier):
    """The paper's ImageNet classifier: the MobileNetV1 body, global average pool, dropout, fully connected layer.

    ``forward(x)`` maps (N, 3, H, W) images, normalised with ``MobileNetV1Backbone.mean`` / ``std``, to
    (N, num_classes) logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        activation: Literal["relu", "relu6"] = "relu",
        separable: bool = True,
        shallow: bool = False,
        dropout: float = 0.001,
        in_chans: int = 3,
    ) -> None:
        backbone = MobileNetV1Backbone(
            width_mult=width_mult,
            activation=activation,
            out_features=("conv13",),
            separable=separable,
            shallow=shallow,
            in_chans=in_chans,
        )
        super().__init__(backbone, num_classes, dropout)
