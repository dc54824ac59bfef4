"""SSD300-MobileNetV1: anchor layout, losses, predictions."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.detection.ssd import ssd300_mobilenet_v1, ssd_box_specs


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
