"""The backbone contract: what every task reads from a feature extractor, whatever the network.

A backbone is an ``nn.Module`` returning named feature maps ("taps") and describing them as data, so that heads
read channels and strides instead of hard-coding them, and pick their inputs by output stride instead of by a
network's layer names. A second network family is one subclass of ``FeatureBackbone`` plus one entry in
``backbone.registry.BACKBONES``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

__all__ = ["TapInfo", "FeatureBackbone"]


@dataclass(frozen=True)
class TapInfo:
    """One feature map a backbone can return: its name, its depth, and its output stride relative to the input."""

    name: str
    channels: int
    stride: int


class FeatureBackbone(nn.Module):
    """Base class of the feature extractors that tasks build on.

    A *tap* is a named feature map of the network: the output of a stage, or a map inside a block (MobileNetV2's
    stride-16 expansion layer, which SSDLite reads). A subclass

    - sets the class attributes ``mean`` and ``std``: the RGB normalisation, for images in [0, 1], that the network
      was trained with (the tasks apply it, so pretrained weights see what they expect);
    - takes ``out_features`` (with a default) in ``__init__`` and calls ``self._set_taps(infos, out_features)``
      with every tap it offers, in forward order, the last one being the network's final feature map;
    - implements ``forward(x)``: (N, C, H, W) images -> an ordered ``dict[str, Tensor]`` holding exactly the
      ``out_features`` taps, in ``tap_info`` order, each (N, channels, ~H / stride, ~W / stride); it may stop
      computing after the last tap asked for;
    - may implement ``layers_after``.

    ``out_features`` may be reassigned after construction (``backbone.registry.build_backbone`` builds once, then
    selects the taps by name or stride); the modules and the state dict do not depend on it.
    """

    mean: ClassVar[tuple[float, float, float]]
    std: ClassVar[tuple[float, float, float]]

    tap_info: dict[str, TapInfo]
    _out_features: tuple[str, ...]

    def _set_taps(self, infos: Sequence[TapInfo], out_features: Sequence[str]) -> None:
        self.tap_info = OrderedDict((info.name, info) for info in infos)
        self.out_features = out_features

    @property
    def out_features(self) -> tuple[str, ...]:
        """The taps ``forward`` returns, in forward order."""
        return self._out_features

    @out_features.setter
    def out_features(self, names: Sequence[str]) -> None:
        names = tuple(names)
        if not names:
            raise ValueError("out_features must name at least one tap")
        unknown = [name for name in names if name not in self.tap_info]
        if unknown:
            raise ValueError(f"out_features: unknown tap {unknown[0]!r}; this network has {list(self.tap_info)}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"out_features names {repeated} more than once: {list(names)}")
        order = list(self.tap_info)
        self._out_features = tuple(sorted(names, key=order.index))

    @property
    def out_channels(self) -> dict[str, int]:
        """Depth of each returned tap, in ``out_features`` order."""
        return {name: self.tap_info[name].channels for name in self.out_features}

    @property
    def strides(self) -> dict[str, int]:
        """Output stride of each returned tap, in ``out_features`` order."""
        return {name: self.tap_info[name].stride for name in self.out_features}

    def tap_for_stride(self, stride: int) -> str:
        """The deepest tap whose output stride is ``stride``: the most computed map of that resolution."""
        names = [info.name for info in self.tap_info.values() if info.stride == stride]
        if not names:
            strides = sorted({info.stride for info in self.tap_info.values()})
            raise ValueError(
                f"{type(self).__name__} has no tap of output stride {stride}; available strides: {strides}"
            )
        return names[-1]

    def layers_after(self, tap: str) -> nn.Module | None:
        """The network's own modules that map the ``tap`` feature map to its final one (the last of ``tap_info``).

        They are the backbone's modules, not copies: Faster-RCNN runs them on each RoI crop, so backbone weights
        cover its box classifier. An ``nn.Sequential`` whose children keep the backbone's attribute names; None
        where the network cannot be cut after ``tap`` (the default).
        """
        return None

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} must implement forward")
