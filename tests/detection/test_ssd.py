"""SSD300-MobileNetV1: anchor layout, losses, predictions, and the backbone read through the contract."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from backbone import MobileNetV1Backbone
from tasks.detection.ssd import ssd300_mobilenet_v1, ssd_box_specs

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_keys(prefix: str) -> list[str]:
    return [f"{prefix}conv.weight", *(f"{prefix}bn.{key}" for key in _BN)]


def _mobilenet_v1_keys(prefix: str) -> list[str]:
    keys = _conv_bn_keys(f"{prefix}conv0.")
    for index in range(1, 14):
        keys += _conv_bn_keys(f"{prefix}conv{index}.dw.") + _conv_bn_keys(f"{prefix}conv{index}.pw.")
    return keys


# The state-dict keys of SSD300-MobileNetV1 that checkpoints written so far hold (under Lightning's "model.").
SSD_KEYS = [
    *_mobilenet_v1_keys("backbone.body."),
    *(
        key
        for index in range(4)
        for key in (
            f"backbone.extras.{index}.0.weight",
            *(f"backbone.extras.{index}.1.{key}" for key in _BN),
            f"backbone.extras.{index}.3.weight",
            *(f"backbone.extras.{index}.4.{key}" for key in _BN),
        )
    ),
    *(
        f"head.{head}.module_list.{index}.{param}"
        for head in ("classification_head", "regression_head")
        for index in range(6)
        for param in ("weight", "bias")
    ),
]


def _empty_target() -> dict[str, torch.Tensor]:
    return {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.fixture(scope="module")
def tiny_ssd():
    torch.manual_seed(0)
    return ssd300_mobilenet_v1(num_classes=3, width_mult=0.25)


def test_anchor_count_is_1917_at_300_and_alpha_1() -> None:
    model = ssd300_mobilenet_v1(num_classes=90, width_mult=1.0).eval()
    images = torch.zeros(1, 3, 300, 300)
    features = list(model.backbone(images).values())
    assert [f.shape[-1] for f in features] == [19, 10, 5, 3, 2, 1]
    from torchvision.models.detection.image_list import ImageList

    anchors = model.anchor_generator(ImageList(images, [(300, 300)]), features)
    assert anchors[0].shape == (1917, 4)
    head = model.head(features)
    assert head["cls_logits"].shape == (1, 1917, 91)
    assert head["bbox_regression"].shape == (1, 1917, 4)


def test_lowest_map_has_three_anchors_the_others_six() -> None:
    assert [len(s) for s in ssd_box_specs()] == [3, 6, 6, 6, 6, 6]
    assert ssd_box_specs()[0][0] == (0.1, 1.0)


def test_backbone_taps_stride_16_and_32_stages(tiny_ssd) -> None:
    assert tiny_ssd.backbone.body.out_features == ("conv11", "conv13")


def test_state_dict_keys_are_those_of_existing_checkpoints(tiny_ssd) -> None:
    assert list(tiny_ssd.state_dict()) == SSD_KEYS


def test_training_step_gives_finite_losses(tiny_ssd) -> None:
    tiny_ssd.train()
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 80)]
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
        {"boxes": torch.tensor([[5.0, 5.0, 40.0, 70.0], [30.0, 30.0, 70.0, 70.0]]), "labels": torch.tensor([1, 3])},
    ]
    losses = tiny_ssd(images, targets)
    assert set(losses) == {"bbox_regression", "classification"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_batch_without_boxes_still_teaches_background(tiny_ssd) -> None:
    tiny_ssd.train()
    losses = tiny_ssd([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [_empty_target(), _empty_target()])
    assert torch.isfinite(losses["classification"]) and losses["classification"] > 0
    assert losses["bbox_regression"] == 0


def test_eval_returns_boxes_in_original_image_pixels(tiny_ssd) -> None:
    tiny_ssd.eval()
    tiny_ssd.score_thresh = 0.001  # untrained scores sit at the background prior's 0.0033 per class
    with torch.no_grad():
        (detections,) = tiny_ssd([torch.rand(3, 120, 200)])
    boxes, labels = detections["boxes"], detections["labels"]
    assert 0 < len(boxes) <= 100
    assert boxes[:, 2].max() <= 200 and boxes[:, 3].max() <= 120
    assert labels.min() >= 1 and labels.max() <= 3


def test_untrained_predictor_scores_background_at_the_prior() -> None:
    from tasks.detection.ssd import SSDPredictor

    head = SSDPredictor([8, 8], [3, 6], num_classes_with_bg=5, background_prior=0.99)
    logits = head([torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)])["cls_logits"]
    assert logits.shape == (2, 4 * 4 * 3 + 2 * 2 * 6, 5)
    torch.testing.assert_close(logits.softmax(-1)[..., 0], torch.full((2, 72), 0.99), atol=0.02, rtol=0)


def test_positive_anchors_weigh_alike_without_object_balance(tiny_ssd) -> None:
    matched_gt = torch.tensor([0, 0, 0, 1])
    torch.testing.assert_close(tiny_ssd.positive_weights(matched_gt, 2), torch.ones(4))


def test_full_object_balance_gives_every_box_the_same_share() -> None:
    model = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, object_balance=1.0)
    matched_gt = torch.tensor([0, 0, 0, 0, 0, 0, 2, 1, 1])  # box 0 matched six anchors, box 2 one, box 1 two
    weights = model.positive_weights(matched_gt, 3)
    per_box = torch.zeros(3).index_add_(0, matched_gt, weights)
    torch.testing.assert_close(per_box, torch.full((3,), 3.0))
    assert weights.sum().item() == pytest.approx(len(matched_gt))


def test_partial_object_balance_weighs_anchors_by_a_power_of_their_box_count() -> None:
    model = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, object_balance=0.5)
    weights = model.positive_weights(torch.tensor([0, 0, 0, 0, 1]), 2)
    assert weights[4] / weights[0] == pytest.approx(2.0)  # (1 / 1) ** 0.5 against (1 / 4) ** 0.5
    assert weights.sum().item() == pytest.approx(5.0)


def test_object_balance_raises_the_loss_share_of_a_small_box() -> None:
    images = [torch.rand(3, 300, 300), torch.rand(3, 300, 300)]
    big_and_small = {"boxes": torch.tensor([[20.0, 20.0, 260.0, 260.0], [270.0, 10.0, 294.0, 34.0]])}
    targets = [dict(big_and_small, labels=torch.tensor([1, 2])), _empty_target()]
    losses = {}
    for balance in (0.0, 1.0):
        torch.manual_seed(0)
        model = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, object_balance=balance).train()
        with torch.no_grad():  # the small box's class logit, as a probe of its weight in the loss
            model.head.classification_head.module_list[0].bias.view(-1, 4)[:, 2] = -5.0
        losses[balance] = model(images, targets)["classification"].item()
    assert all(math.isfinite(v) for v in losses.values())
    assert losses[1.0] > losses[0.0]


def test_negative_object_balance_is_refused() -> None:
    with pytest.raises(ValueError, match="object_balance"):
        ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, object_balance=-1.0)


def test_detector_defaults_the_backbone_to_relu6_as_tf_slim(peak_activation) -> None:
    assert peak_activation(ssd300_mobilenet_v1(num_classes=3, width_mult=0.25).backbone.body) == 6.0
    assert peak_activation(ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, activation="relu").backbone.body) > 6


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def test_backbone_options_reach_the_backbone() -> None:
    body = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, separable=False, shallow=True).backbone.body
    assert _shapes(body) == _shapes(MobileNetV1Backbone(width_mult=0.25, separable=False, shallow=True))
    assert _shapes(body) != _shapes(MobileNetV1Backbone(width_mult=0.25))


def test_maps_and_head_read_the_channels_of_the_chosen_taps() -> None:
    model = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, shallow=True)  # stride 16 is conv6 here
    assert model.backbone.body.out_features == ("conv6", "conv13")
    first, second = model.head.classification_head.module_list[:2]
    assert (first.in_channels, second.in_channels) == (128, 256)
    assert model.backbone.out_channels[:2] == [128, 256]


def test_extra_layers_follow_the_width_multiplier_unless_set() -> None:
    def extra_depths(model) -> list[int]:
        return [extra[3].out_channels for extra in model.backbone.extras]

    assert extra_depths(ssd300_mobilenet_v1(num_classes=3, width_mult=0.5)) == [256, 128, 128, 64]
    assert extra_depths(ssd300_mobilenet_v1(num_classes=3, width_mult=0.5, extra_depth_mult=1.0)) == [
        512,
        256,
        256,
        128,
    ]
    assert extra_depths(ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, extra_depth_mult=0.1)) == [51, 25, 25, 16]


def test_images_are_normalised_as_the_backbone_was_trained_unless_set(tiny_ssd) -> None:
    # MobileNetV1: TF-slim's [-1, 1].
    assert (tiny_ssd.transform.image_mean, tiny_ssd.transform.image_std) == ([0.5] * 3, [0.5] * 3)
    model = ssd300_mobilenet_v1(num_classes=3, width_mult=0.25, image_mean=(0.4, 0.4, 0.4), image_std=(0.2, 0.3, 0.4))
    assert (model.transform.image_mean, model.transform.image_std) == ([0.4] * 3, [0.2, 0.3, 0.4])


def test_an_unknown_backbone_option_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="widht_mult.*width_mult"):
        ssd300_mobilenet_v1(num_classes=3, widht_mult=0.25)


def test_the_backbone_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = MobileNetV1Backbone.__init__

    @functools.wraps(original)
    def counting_init(self, *args, **kwargs) -> None:
        calls.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(MobileNetV1Backbone, "__init__", counting_init)
    ssd300_mobilenet_v1(num_classes=3, width_mult=0.25)
    assert len(calls) == 1


def test_another_registered_backbone_needs_no_change_here(two_convs: str) -> None:
    torch.manual_seed(0)
    model = ssd300_mobilenet_v1(num_classes=3, backbone=two_convs).train()

    assert model.backbone.body.out_features == ("s16", "s32")
    assert model.backbone.out_channels == [12, 20, 512, 256, 256, 128]  # no width_mult: extras at depth 1
    assert (model.transform.image_mean, model.transform.image_std) == ([0.25, 0.5, 0.75], [0.1, 0.2, 0.3])
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])}, _empty_target()]
    losses = model([torch.rand(3, 96, 128), torch.rand(3, 64, 64)], targets)
    assert all(torch.isfinite(v) for v in losses.values())


def test_options_of_another_backbone_are_not_mobilenets(two_convs: str) -> None:
    with pytest.raises(ValueError, match="width_mult"):
        ssd300_mobilenet_v1(num_classes=3, backbone=two_convs, width_mult=0.5)
