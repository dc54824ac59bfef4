"""The backbone registry: options a config may set, normalisation, and building with taps chosen by name or stride."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Literal

import pytest
import torch

from backbone import (
    BACKBONES,
    MobileNetV1Backbone,
    backbone_normalization,
    backbone_options,
    build_backbone,
)


def test_mobilenet_v1_options_are_its_architecture_arguments() -> None:
    options = backbone_options("mobilenet_v1")
    assert list(options) == ["width_mult", "activation", "separable", "shallow"]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in options.values())


def test_options_carry_resolved_types_and_defaults() -> None:
    options = backbone_options("mobilenet_v1")
    assert options["activation"].annotation == Literal["relu", "relu6"]
    assert (options["width_mult"].annotation, options["width_mult"].default) == (float, 1.0)


def test_unknown_backbone_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"'resnet50'.*mobilenet_v1"):
        backbone_options("resnet50")
    with pytest.raises(ValueError, match=r"'resnet50'.*mobilenet_v1"):
        build_backbone("resnet50")


def test_normalization_is_a_pair_of_rgb_triples() -> None:
    mean, std = backbone_normalization("mobilenet_v1")
    assert len(mean) == len(std) == 3
    # TF-slim's preprocessing: [0, 1] -> [-1, 1].
    assert [(0 - m) / s for m, s in zip(mean, std, strict=True)] == [-1.0] * 3
    assert [(1 - m) / s for m, s in zip(mean, std, strict=True)] == [1.0] * 3


def test_strides_choose_the_deepest_tap_of_each() -> None:
    backbone = build_backbone("mobilenet_v1", strides=(32, 16), width_mult=0.25)
    assert backbone.out_features == ("conv11", "conv13")
    assert backbone.out_channels == {"conv11": 128, "conv13": 256}


def test_strides_follow_the_variant() -> None:
    backbone = build_backbone("mobilenet_v1", strides=(16,), width_mult=0.25, shallow=True)
    assert backbone.out_features == ("conv6",)


def test_taps_by_name() -> None:
    backbone = build_backbone("mobilenet_v1", ("conv5", "conv1"), width_mult=0.25)
    assert list(backbone(torch.zeros(1, 3, 32, 32))) == ["conv1", "conv5"]


def test_default_is_the_final_tap() -> None:
    assert build_backbone("mobilenet_v1", width_mult=0.25).out_features == ("conv13",)


def test_names_and_strides_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        build_backbone("mobilenet_v1", ("conv11",), strides=(16,), width_mult=0.25)


@torch.no_grad()
def test_options_reach_the_network() -> None:
    backbone = build_backbone("mobilenet_v1", width_mult=0.5, activation="relu6", separable=False).eval()
    backbone.conv13.bn.bias.fill_(10.0)
    (feature,) = backbone(torch.zeros(1, 3, 64, 64)).values()

    assert feature.shape == (1, 512, 2, 2)  # width 0.5: conv13's 1024 channels halved
    assert feature.max().item() == 6.0  # ReLU6 clamps conv13's activations, shifted to about 10
    reference = MobileNetV1Backbone(width_mult=0.5, separable=False)  # full 3x3 convolutions, no depthwise ones
    assert {k: v.shape for k, v in backbone.state_dict().items()} == {
        k: v.shape for k, v in reference.state_dict().items()
    }


@pytest.mark.parametrize("option", ["widht_mult", "in_chans"])
def test_an_option_a_config_may_not_set_is_refused_with_the_valid_ones(option: str) -> None:
    with pytest.raises(ValueError, match=rf"{option}.*width_mult, activation, separable, shallow"):
        build_backbone("mobilenet_v1", **{option: 1})


def test_the_network_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = MobileNetV1Backbone.__init__

    @functools.wraps(original)
    def counting_init(self, *args, **kwargs) -> None:
        calls.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(MobileNetV1Backbone, "__init__", counting_init)
    build_backbone("mobilenet_v1", strides=(16, 32), width_mult=0.25)
    assert len(calls) == 1


def test_weights_are_loaded_with_the_backbones_loader(tmp_path: Path) -> None:
    torch.manual_seed(3)
    source = MobileNetV1Backbone(width_mult=0.25)
    torch.save(source.state_dict(), tmp_path / "backbone.pt")

    backbone = build_backbone("mobilenet_v1", strides=(16,), weights=tmp_path / "backbone.pt", width_mult=0.25)

    assert torch.equal(backbone.conv13.pw.conv.weight, source.conv13.pw.conv.weight)
    assert BACKBONES["mobilenet_v1"].cls is MobileNetV1Backbone
