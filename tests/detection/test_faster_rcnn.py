"""Faster-RCNN-MobileNetV1: the stride-16 RPN and crops, the shared box classifier, losses, predictions, configs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torchvision.models.detection.faster_rcnn import TwoMLPHead

from backbone import MobileNetV1Backbone
from tasks.detection.faster_rcnn import PROFILE_IMAGE_SIZE, default_anchor_sizes, fasterrcnn_mobilenet_v1

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}conv.weight", *(f"{prefix}bn.{key}" for key in _BN)]


def _mobilenet_v1_keys(prefix: str, stages: Sequence[int] = range(14)) -> list[str]:
    keys = []
    for index in stages:
        if index == 0:
            keys += _conv_bn_keys(f"{prefix}conv0.")
        else:
            keys += _conv_bn_keys(f"{prefix}conv{index}.dw.") + _conv_bn_keys(f"{prefix}conv{index}.pw.")
    return keys


# The state-dict keys of Faster-RCNN-MobileNetV1 that checkpoints written so far hold (under Lightning's "model.").
FASTER_RCNN_KEYS = [
    *_mobilenet_v1_keys("backbone."),
    *(f"rpn.head.{layer}.{param}" for layer in ("conv.0.0", "cls_logits", "bbox_pred") for param in ("weight", "bias")),
    *_mobilenet_v1_keys("roi_heads.box_head.", (12, 13)),
    *(
        f"roi_heads.box_predictor.{layer}.{param}"
        for layer in ("cls_score", "bbox_pred")
        for param in ("weight", "bias")
    ),
]


def _empty_target() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.fixture(scope="module")
def tiny_frcnn():
    torch.manual_seed(0)
    return fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, min_size=160, max_size=256)


def test_rpn_and_crops_read_the_stride_16_stage(tiny_frcnn) -> None:
    assert tiny_frcnn.backbone.out_features == ("conv11",)
    assert tiny_frcnn.roi_heads.box_roi_pool.featmap_names == ["conv11"]
    features = tiny_frcnn.backbone(torch.zeros(1, 3, 160, 224))
    assert list(features) == ["conv11"] and features["conv11"].shape[-2:] == (10, 14)


def test_anchors_are_tf_scales_relative_to_min_size_with_three_ratios(tiny_frcnn) -> None:
    assert default_anchor_sizes(600) == (64, 128, 256, 512)
    assert default_anchor_sizes(300) == (32, 64, 128, 256)
    generator = tiny_frcnn.rpn.anchor_generator
    assert generator.sizes == (default_anchor_sizes(160),)
    assert generator.aspect_ratios == ((0.5, 1.0, 2.0),)
    assert generator.num_anchors_per_location() == [12]


def test_box_head_reuses_backbone_conv12_and_conv13(tiny_frcnn) -> None:
    head = tiny_frcnn.roi_heads.box_head
    assert [name for name, _ in head.named_children()] == ["conv12", "conv13", "pool", "flatten"]
    assert head.conv12 is tiny_frcnn.backbone.conv12 and head.conv13 is tiny_frcnn.backbone.conv13
    backbone_params = {id(p) for p in tiny_frcnn.backbone.parameters()}
    assert {id(p) for p in head.parameters()} <= backbone_params
    assert tiny_frcnn.roi_heads.box_predictor.cls_score.in_features == tiny_frcnn.backbone.tap_info["conv13"].channels


def test_state_dict_keys_are_those_of_existing_checkpoints(tiny_frcnn) -> None:
    assert list(tiny_frcnn.state_dict()) == FASTER_RCNN_KEYS


def test_detector_defaults_the_backbone_to_relu6_as_tf_slim(peak_activation) -> None:
    assert peak_activation(fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25).backbone) == 6.0
    assert peak_activation(fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, activation="relu").backbone) > 6


def test_images_are_normalised_as_the_backbone_was_trained_unless_set(tiny_frcnn) -> None:
    # MobileNetV1: TF-slim's [-1, 1].
    assert (tiny_frcnn.transform.image_mean, tiny_frcnn.transform.image_std) == ([0.5] * 3, [0.5] * 3)
    model = fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, image_mean=(0.4, 0.4, 0.4), image_std=(1, 1, 1))
    assert (model.transform.image_mean, model.transform.image_std) == ([0.4] * 3, [1, 1, 1])


def test_the_shallow_variant_reads_its_own_stride_16_tap() -> None:
    model = fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, shallow=True)
    assert model.backbone.out_features == ("conv6",)
    assert model.roi_heads.box_roi_pool.featmap_names == ["conv6"]
    assert model.rpn.head.conv[0][0].in_channels == 128


def test_a_backbone_without_layers_after_gets_the_mlp_box_head(two_convs: str) -> None:
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v1(num_classes=3, backbone=two_convs, min_size=160, max_size=256, crop_size=7)

    assert model.backbone.out_features == ("s16",)
    assert isinstance(model.roi_heads.box_head, TwoMLPHead)
    assert model.roi_heads.box_head.fc6.in_features == 12 * 7 * 7
    assert model.roi_heads.box_predictor.cls_score.in_features == model.roi_heads.box_head.fc7.out_features
    assert model.rpn.head.conv[0][0].in_channels == 12
    assert (model.transform.image_mean, model.transform.image_std) == ([0.25, 0.5, 0.75], [0.1, 0.2, 0.3])
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])}]
    losses = model.train()([torch.rand(3, 96, 128)], targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_box_classifier_width_follows_width_mult() -> None:
    model = fasterrcnn_mobilenet_v1(num_classes=5, width_mult=0.75)
    predictor = model.roi_heads.box_predictor
    assert predictor.cls_score.in_features == 768
    assert predictor.cls_score.out_features == 6 and predictor.bbox_pred.out_features == 24
    assert model.rpn.head.conv[0][0].in_channels == model.backbone.tap_info["conv11"].channels == 384


def test_backbone_weights_load_before_the_head_takes_its_stages(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = MobileNetV1Backbone(width_mult=0.25, activation="relu6")
    path = tmp_path / "backbone.pt"
    torch.save(source.state_dict(), path)
    model = fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, backbone_weights=str(path))
    assert torch.equal(model.backbone.conv0.conv.weight, source.conv0.conv.weight)
    assert torch.equal(model.roi_heads.box_head.conv13.pw.conv.weight, source.conv13.pw.conv.weight)


def test_training_step_gives_finite_losses(tiny_frcnn) -> None:
    tiny_frcnn.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 128, 128)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 70.0], [30.0, 30.0, 90.0, 90.0]]), "labels": torch.tensor([1, 3])},
    ]
    losses = tiny_frcnn(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert tiny_frcnn.backbone.conv13.pw.conv.weight.grad is not None  # the box classifier trains the backbone's stages


def test_images_without_boxes_give_finite_losses(tiny_frcnn) -> None:
    tiny_frcnn.train()
    losses = tiny_frcnn([torch.rand(3, 96, 96), torch.rand(3, 112, 128)], [_empty_target(), _empty_target()])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_classifier"] > 0 and losses["loss_objectness"] > 0
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0


def test_test_time_proposals_and_crop_size(tiny_frcnn) -> None:
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        tiny_frcnn.roi_heads.box_roi_pool.register_forward_hook(lambda m, i, o: shapes.update(crops=tuple(o.shape))),
        tiny_frcnn.backbone.conv12.register_forward_hook(lambda m, i, o: shapes.update(conv12=tuple(o.shape))),
    ]
    tiny_frcnn.eval()
    try:
        with torch.no_grad():
            tiny_frcnn([torch.rand(3, 160, 200), torch.rand(3, 128, 160)])
    finally:
        for hook in hooks:
            hook.remove()
    assert tiny_frcnn.rpn.post_nms_top_n() == 300
    channels = tiny_frcnn.backbone.tap_info["conv11"].channels
    # At 160 px the stride-16 map has over a thousand anchors: NMS leaves more than 300 to keep.
    assert shapes["crops"] == (2 * 300, channels, 14, 14)
    assert shapes["conv12"][0] == 2 * 300 and shapes["conv12"][-2:] == (7, 7)


def test_default_settings_keep_300_proposals_on_a_coco_sized_image() -> None:
    """At 600 px an untrained RPN's best anchors crowd together: the pre-NMS pool must be large enough."""
    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25).eval()
    counts: list[int] = []
    hook = model.roi_heads.box_roi_pool.register_forward_hook(lambda m, i, o: counts.append(o.shape[0]))
    with torch.no_grad():
        model([torch.rand(3, *PROFILE_IMAGE_SIZE)])
    hook.remove()
    assert counts == [300]


def test_training_keeps_proposals_train() -> None:
    model = fasterrcnn_mobilenet_v1(num_classes=3, width_mult=0.25, proposals_train=256, rpn_pre_nms_top_n_train=512)
    model.train()
    assert model.rpn.post_nms_top_n() == 256 and model.rpn.pre_nms_top_n() == 512


def test_eval_returns_boxes_in_original_image_pixels(tiny_frcnn) -> None:
    tiny_frcnn.eval()
    with torch.no_grad():
        (detections,) = tiny_frcnn([torch.rand(3, 120, 200)])
    boxes, labels, scores = detections["boxes"], detections["labels"], detections["scores"]
    assert 0 < len(boxes) <= 100  # the score threshold is 0.01: an untrained model still detects something
    assert boxes.min() >= 0 and boxes[:, 2].max() <= 200 and boxes[:, 3].max() <= 120
    assert labels.min() >= 1 and labels.max() <= 3
    assert scores.shape == labels.shape == (len(boxes),)


def test_profile_image_size_is_coco_640x480() -> None:
    assert PROFILE_IMAGE_SIZE == (480, 640)  # (height, width)


def test_the_builder_patches_nothing_onto_torchvisions_model(tiny_frcnn) -> None:
    assert not hasattr(tiny_frcnn, "profile_image_size")


@pytest.mark.parametrize(
    ("name", "min_size"),
    [("fasterrcnn300_mnv1.yaml", 300), ("fasterrcnn600_mnv1.yaml", 600), ("demo_shapes_frcnn.yaml", None)],
)
def test_configs_map_onto_the_builder(name: str, min_size: int | None) -> None:
    from tasks.registry import load_task_config

    config, _ = load_task_config(CONFIGS / name)
    assert config["model"]["name"] == "fasterrcnn_mobilenet_v1"
    if min_size is not None:
        assert config["model"]["min_size"] == min_size
        assert config["model"].get("proposals_test", 300) == 300
