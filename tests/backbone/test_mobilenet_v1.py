"""MobileNetV1Backbone and MobileNetV1: Table 1 of the paper, the width multiplier, the ablation variants, and the
backbone contract (taps, strides, layers after a tap, input normalisation)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from backbone import FeatureClassifier, MobileNetV1, MobileNetV1Backbone
from backbone.mobilenet_v1 import STAGE_NAMES

# Table 1 at width 1: channels and output side of conv0..conv13 for a 224x224 input.
TABLE_1_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
TABLE_1_SIDE = (112, 112, 56, 56, 28, 28, 14, 14, 14, 14, 14, 14, 7, 7)


def _channels(backbone: MobileNetV1Backbone) -> list[int]:
    return [info.channels for info in backbone.tap_info.values()]


@torch.no_grad()
def test_stage_shapes_at_224_follow_table_1() -> None:
    backbone = MobileNetV1Backbone(out_features=STAGE_NAMES).eval()
    features = backbone(torch.zeros(1, 3, 224, 224))
    assert [tuple(f.shape) for f in features.values()] == [
        (1, c, s, s) for c, s in zip(TABLE_1_CHANNELS, TABLE_1_SIDE, strict=True)
    ]
    assert [backbone.tap_info[name].stride for name in ("conv0", "conv11", "conv13")] == [2, 16, 32]


@torch.no_grad()
def test_ssd_feature_maps_at_300() -> None:
    backbone = MobileNetV1Backbone(out_features=("conv11", "conv13")).eval()
    features = backbone(torch.zeros(1, 3, 300, 300))
    assert tuple(features["conv11"].shape) == (1, 512, 19, 19)
    assert tuple(features["conv13"].shape) == (1, 1024, 10, 10)


@pytest.mark.parametrize(
    ("width_mult", "stem", "conv11", "conv13"), [(0.75, 24, 384, 768), (0.5, 16, 256, 512), (0.25, 8, 128, 256)]
)
@torch.no_grad()
def test_width_multiplier_scales_every_layer(width_mult: float, stem: int, conv11: int, conv13: int) -> None:
    backbone = MobileNetV1Backbone(width_mult=width_mult, out_features=STAGE_NAMES).eval()
    features = backbone(torch.zeros(1, 3, 32, 32))  # the maps computed, not the tap metadata
    assert [f.shape[1] for f in features.values()] == [round(c * width_mult) for c in TABLE_1_CHANNELS]
    assert [features[n].shape[1] for n in ("conv0", "conv11", "conv13")] == [stem, conv11, conv13]
    assert _channels(backbone) == [f.shape[1] for f in features.values()]


@pytest.mark.parametrize("width_mult", [0.1, 0.2, 0.35, 0.6, 1.3])
def test_channels_are_multiples_of_8_never_below_8(width_mult: float) -> None:
    channels = _channels(MobileNetV1Backbone(width_mult=width_mult))
    assert all(c >= 8 and c % 8 == 0 for c in channels)
    assert all(c >= 0.9 * paper * width_mult for c, paper in zip(channels, TABLE_1_CHANNELS, strict=True))


@torch.no_grad()
def test_tap_info_matches_the_computed_maps() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, out_features=STAGE_NAMES).eval()
    features = backbone(torch.zeros(1, 3, 64, 64))
    for name, feature in features.items():
        info = backbone.tap_info[name]
        assert tuple(feature.shape[1:]) == (info.channels, 64 // info.stride, 64 // info.stride), name


@torch.no_grad()
@pytest.mark.parametrize("size", [(97, 130), (33, 31), (65, 64)])
def test_non_square_and_odd_inputs_round_up(size: tuple[int, int]) -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, out_features=("conv0", "conv5", "conv13")).eval()
    features = backbone(torch.zeros(1, 3, *size))
    for name, feature in features.items():
        stride = backbone.tap_info[name].stride
        assert tuple(feature.shape[2:]) == tuple(math.ceil(side / stride) for side in size), name


def test_conv_variant_replaces_separable_layers_by_full_3x3() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, separable=False, out_features=STAGE_NAMES)
    assert list(backbone.tap_info) == list(STAGE_NAMES)
    assert _channels(backbone) == _channels(MobileNetV1Backbone(width_mult=0.25))
    conv = backbone.conv1.conv
    assert (conv.kernel_size, conv.groups, conv.in_channels, conv.out_channels) == ((3, 3), 1, 8, 16)
    assert not hasattr(backbone.conv1, "dw")


@torch.no_grad()
def test_conv_variant_keeps_the_output_shapes() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, separable=False, out_features=("conv6", "conv13")).eval()
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features.values()] == [(1, 128, 4, 4), (1, 256, 2, 2)]


def test_shallow_variant_removes_the_five_14x14_layers() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, shallow=True)
    assert list(backbone.tap_info) == [
        "conv0",
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "conv6",
        "conv12",
        "conv13",
    ]
    assert not hasattr(backbone, "conv7")
    assert backbone.conv12.dw.conv.in_channels == 128


@torch.no_grad()
def test_shallow_variant_output_shape() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, shallow=True, out_features=("conv6", "conv13")).eval()
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape) for f in features.values()] == [(1, 128, 4, 4), (1, 256, 2, 2)]


def test_shallow_variant_refuses_a_removed_stage() -> None:
    with pytest.raises(ValueError, match="conv9"):
        MobileNetV1Backbone(width_mult=0.25, shallow=True, out_features=("conv9",))


@torch.no_grad()
def test_out_features_come_back_in_network_order() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, out_features=("conv13", "conv5", "conv11")).eval()
    assert list(backbone(torch.zeros(1, 3, 64, 64))) == ["conv5", "conv11", "conv13"]
    assert backbone.out_features == ("conv5", "conv11", "conv13")
    assert backbone.out_channels == {"conv5": 64, "conv11": 128, "conv13": 256}
    assert backbone.strides == {"conv5": 8, "conv11": 16, "conv13": 32}


def test_unknown_stage_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'conv14'"):
        MobileNetV1Backbone(width_mult=0.25, out_features=("conv5", "conv14"))


def test_empty_out_features_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MobileNetV1Backbone(width_mult=0.25, out_features=())


@torch.no_grad()
def test_forward_stops_after_the_last_requested_stage() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, out_features=("conv5",)).eval()
    ran = []
    for name in backbone.tap_info:
        getattr(backbone, name).register_forward_hook(lambda module, args, out, name=name: ran.append(name))
    backbone(torch.zeros(1, 3, 32, 32))
    assert ran == ["conv0", "conv1", "conv2", "conv3", "conv4", "conv5"]
    assert hasattr(backbone, "conv13")  # later stages still exist, for their weights


@pytest.mark.parametrize(("stride", "stage"), [(16, "conv11"), (32, "conv13"), (2, "conv1"), (8, "conv5")])
def test_tap_for_stride_is_the_deepest_stage_of_that_stride(stride: int, stage: str) -> None:
    assert MobileNetV1Backbone(width_mult=0.25).tap_for_stride(stride) == stage


def test_tap_for_stride_on_the_shallow_net() -> None:
    assert MobileNetV1Backbone(width_mult=0.25, shallow=True).tap_for_stride(16) == "conv6"


def test_missing_stride_is_an_error_listing_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"64.*\[2, 4, 8, 16, 32\]"):
        MobileNetV1Backbone(width_mult=0.25).tap_for_stride(64)


@torch.no_grad()
@pytest.mark.parametrize("shallow", [False, True])
def test_layers_after_the_stride_16_tap_compute_the_last_tap_from_it(shallow: bool) -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, shallow=shallow).eval()
    tap = backbone.tap_for_stride(16)
    backbone.out_features = (tap, "conv13")
    features = backbone(torch.rand(2, 3, 64, 96))

    layers = backbone.layers_after(tap)

    assert [name for name, _ in layers.named_children()] == ["conv12", "conv13"]
    torch.testing.assert_close(layers(features[tap]), features["conv13"], rtol=0, atol=0)


def test_layers_after_are_the_backbones_own_modules() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25)
    layers = backbone.layers_after("conv9")
    assert [name for name, _ in layers.named_children()] == ["conv10", "conv11", "conv12", "conv13"]
    assert layers.conv12 is backbone.conv12
    assert list(backbone.layers_after("conv13").children()) == []


def test_layers_after_an_unknown_tap_names_it() -> None:
    with pytest.raises(ValueError, match="'conv9'"):
        MobileNetV1Backbone(width_mult=0.25, shallow=True).layers_after("conv9")


@torch.no_grad()
def test_out_features_can_be_chosen_after_construction() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25).eval()
    backbone.out_features = ["conv13", "conv3"]
    features = backbone(torch.zeros(1, 3, 64, 64))
    assert list(features) == ["conv3", "conv13"]
    assert backbone.out_channels == {"conv3": 32, "conv13": 256}


def test_normalisation_maps_0_and_1_to_minus_1_and_1_as_tf_slim() -> None:
    mean = torch.tensor(MobileNetV1Backbone.mean)
    std = torch.tensor(MobileNetV1Backbone.std)
    torch.testing.assert_close((torch.zeros(3) - mean) / std, torch.full((3,), -1.0))
    torch.testing.assert_close((torch.ones(3) - mean) / std, torch.full((3,), 1.0))


@pytest.mark.parametrize(("activation", "module"), [("relu", nn.ReLU), ("relu6", nn.ReLU6)])
def test_activation_choice(activation: str, module: type[nn.Module]) -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, activation=activation)
    activations = [m for m in backbone.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert len(activations) == 27 and all(type(m) is module for m in activations)


@torch.no_grad()
@pytest.mark.parametrize(("activation", "clipped"), [("relu", False), ("relu6", True)])
def test_relu6_clips_at_6(activation: str, clipped: bool) -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, activation=activation, out_features=("conv0",)).eval()
    backbone.conv0.bn.bias.fill_(10.0)
    peak = backbone(torch.zeros(1, 3, 16, 16))["conv0"].max().item()
    assert (peak == 6.0) if clipped else (peak == pytest.approx(10.0, abs=1e-3))


def test_unknown_activation_is_refused() -> None:
    with pytest.raises(ValueError, match="'gelu'"):
        MobileNetV1Backbone(width_mult=0.25, activation="gelu")


def test_non_positive_width_is_refused() -> None:
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV1Backbone(width_mult=0.0)


def test_convolutions_have_no_bias_and_depthwise_groups_equal_channels() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25)
    convs = [m for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 27 and all(conv.bias is None for conv in convs)
    depthwise = [getattr(backbone, name).dw.conv for name in STAGE_NAMES[1:]]
    assert all(conv.groups == conv.in_channels for conv in depthwise)


@torch.no_grad()
def test_single_channel_input() -> None:
    backbone = MobileNetV1Backbone(width_mult=0.25, in_chans=1).eval()
    assert tuple(backbone(torch.zeros(1, 1, 32, 32))["conv13"].shape) == (1, 256, 1, 1)


@torch.no_grad()
def test_classifier_gives_logits_per_image() -> None:
    model = MobileNetV1(num_classes=7, width_mult=0.25).eval()
    assert tuple(model(torch.zeros(2, 3, 64, 64)).shape) == (2, 7)
    assert model.num_features == 256


def test_classifier_state_dict_keys_are_backbone_stages_then_fc() -> None:
    keys = list(MobileNetV1(num_classes=7, width_mult=0.25).state_dict())
    assert keys[:6] == [
        "backbone.conv0.conv.weight",
        "backbone.conv0.bn.weight",
        "backbone.conv0.bn.bias",
        "backbone.conv0.bn.running_mean",
        "backbone.conv0.bn.running_var",
        "backbone.conv0.bn.num_batches_tracked",
    ]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    assert len(keys) == 27 * 6 + 2


def test_a_classifier_refuses_a_backbone_that_does_not_return_its_final_tap() -> None:
    with pytest.raises(ValueError, match="'conv13'"):
        FeatureClassifier(MobileNetV1Backbone(width_mult=0.25, out_features=("conv11",)), num_classes=3)
