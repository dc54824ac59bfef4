"""FeatureBackbone: the contract's shared behaviour, on a tiny network that is not MobileNetV1."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import pytest
import torch
from torch import Tensor, nn

from backbone import FeatureBackbone, TapInfo


class ThreeConvs(FeatureBackbone):
    """Taps "a" (stride 2), "b" and "c" (both stride 4, "c" deeper), "d" (stride 8)."""

    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)

    def __init__(self, out_features: Sequence[str] = ("d",)) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.c = nn.Conv2d(6, 6, 3, padding=1)
        self.d = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self._set_taps([TapInfo("a", 4, 2), TapInfo("b", 6, 4), TapInfo("c", 6, 4), TapInfo("d", 10, 8)], out_features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = OrderedDict()
        for name in self.tap_info:
            x = getattr(self, name)(x)
            if name in self.out_features:
                features[name] = x
        return features


def test_out_features_are_kept_in_forward_order() -> None:
    assert ThreeConvs(out_features=("d", "a")).out_features == ("a", "d")


def test_out_channels_and_strides_describe_the_returned_taps_only() -> None:
    backbone = ThreeConvs(out_features=("b", "d"))
    assert backbone.out_channels == {"b": 6, "d": 10}
    assert backbone.strides == {"b": 4, "d": 8}


def test_tap_data_matches_what_forward_returns() -> None:
    backbone = ThreeConvs(out_features=("a", "b", "c", "d"))
    features = backbone(torch.zeros(1, 3, 32, 32))
    assert {name: (f.shape[1], 32 // f.shape[-1]) for name, f in features.items()} == {
        name: (info.channels, info.stride) for name, info in backbone.tap_info.items()
    }


def test_tap_for_stride_picks_the_deepest_tap_of_that_stride() -> None:
    assert ThreeConvs().tap_for_stride(4) == "c"


def test_tap_for_a_missing_stride_lists_the_available_strides() -> None:
    with pytest.raises(ValueError, match=r"16.*\[2, 4, 8\]"):
        ThreeConvs().tap_for_stride(16)


def test_unknown_tap_is_named_with_the_taps_available() -> None:
    with pytest.raises(ValueError, match=r"'e'.*\['a', 'b', 'c', 'd'\]"):
        ThreeConvs(out_features=("a", "e"))


def test_a_tap_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="more than once"):
        ThreeConvs(out_features=("b", "b"))


def test_no_tap_is_refused_also_when_reassigned() -> None:
    backbone = ThreeConvs()
    with pytest.raises(ValueError, match="at least one"):
        backbone.out_features = ()
    assert backbone.out_features == ("d",)


def test_reassigning_out_features_changes_the_output_not_the_state_dict() -> None:
    backbone = ThreeConvs()
    keys = list(backbone.state_dict())
    backbone.out_features = ("b",)
    assert list(backbone(torch.zeros(1, 3, 16, 16))) == ["b"]
    assert list(backbone.state_dict()) == keys


def test_layers_after_is_none_unless_the_backbone_provides_them() -> None:
    assert ThreeConvs().layers_after("b") is None
