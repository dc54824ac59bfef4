"""SSD300 on MobileNetV1, after the TF Object Detection API's ssd_mobilenet_v1, on torchvision's SSD.

torchvision supplies the meta-architecture (resizing, box coder, matcher, hard negative mining, NMS); this file
supplies what it lacks for the reference design: the feature extractor with its four extra layers, the anchor
layout with 3 anchors per cell on the lowest map (1917 anchors at 300x300), 1x1 box predictors, and a minimum
number of mined negatives per image. The backbone is any of ``backbone.BACKBONES``, read at strides 16 and 32.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.ssd import SSD, SSDScoringHead

from backbone import FeatureBackbone, backbone_normalization, build_backbone
from backbone import backbone_options as options_of

__all__ = ["SSDFeatureExtractor", "SSDAnchorGenerator", "SSDPredictor", "MobileNetSSD", "ssd300_mobilenet_v1"]


class SSDFeatureExtractor(nn.Module):
    """The backbone's two taps (stride 16 and 32), then extra layers that halve the map each time.

    Each extra layer is a 1x1 convolution to half its depth and a 3x3 stride-2 convolution, with BatchNorm and
    ReLU6 (TF's multi_resolution_feature_maps); ``depth_mult`` scales ``extra_depths``. ``forward(x)`` returns an
    ordered dict of six maps; at 300x300 their sizes are 19, 10, 5, 3, 2, 1. ``out_channels`` lists their depths.
    """

    def __init__(self, backbone: FeatureBackbone, extra_depths: Sequence[int], depth_mult: float = 1.0) -> None:
        super().__init__()
        self.body = backbone
        channels = list(backbone.out_channels.values())
        if len(channels) != 2:
            raise ValueError(f"the SSD backbone must return two maps (stride 16 and 32), got {backbone.out_features}")
        self.extras = nn.ModuleList()
        in_chs = channels[-1]
        for depth in extra_depths:
            # TF: depth_fn(d) = max(int(d * depth_multiplier), min_depth=16)
            out_chs = max(int(depth * depth_mult), 16)
            mid_chs = max(int(depth * depth_mult / 2), 16)
            self.extras.append(
                nn.Sequential(
                    nn.Conv2d(in_chs, mid_chs, 1, bias=False),
                    nn.BatchNorm2d(mid_chs),
                    nn.ReLU6(inplace=True),
                    nn.Conv2d(mid_chs, out_chs, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(out_chs),
                    nn.ReLU6(inplace=True),
                )
            )
            channels.append(out_chs)
            in_chs = out_chs
        self.out_channels = channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        features = OrderedDict(self.body(x))
        x = next(reversed(features.values()))
        for index, layer in enumerate(self.extras):
            x = layer(x)
            features[f"extra{index + 1}"] = x
        return features


def ssd_box_specs(
    num_layers: int = 6,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0),
    reduce_boxes_in_lowest_layer: bool = True,
) -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of each anchor of a cell, per map: TF's create_ssd_anchors.

    Scales are spaced linearly from ``min_scale`` to ``max_scale``; each map adds a box of ratio 1 at the
    geometric mean of its scale and the next one. The lowest map has three: scale 0.1 at ratio 1, and its own
    scale at ratios 2 and 1/2.
    """
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    specs = []
    for layer in range(num_layers):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            specs.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
            continue
        layer_specs = [(scales[layer], ratio) for ratio in aspect_ratios]
        layer_specs.append((math.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        specs.append(layer_specs)
    return specs


class SSDAnchorGenerator(nn.Module):
    """Anchors for each feature map cell, in the order the 1x1 predictors emit them (row, column, anchor).

    A box of scale s and ratio r is s*sqrt(r) wide and s/sqrt(r) tall, relative to the image; centres sit at
    (j + 0.5) / W_k, (i + 0.5) / H_k. ``forward(image_list, feature_maps)`` returns, per image, an
    (num_anchors, 4) tensor of x1y1x2y2 boxes in pixels of the resized image, clipped to it.
    """

    def __init__(self, box_specs: list[list[tuple[float, float]]], clip: bool = True) -> None:
        super().__init__()
        self.box_specs = box_specs
        self.clip = clip
        self._cache: dict[tuple, Tensor] = {}

    def num_anchors_per_location(self) -> list[int]:
        return [len(specs) for specs in self.box_specs]

    def _normalized_anchors(self, grid_sizes: list[tuple[int, int]], dtype: torch.dtype, device) -> Tensor:
        key = (tuple(grid_sizes), dtype, device)
        if key not in self._cache:
            boxes = []
            for (height, width), specs in zip(grid_sizes, self.box_specs, strict=False):
                ys = (torch.arange(height, dtype=torch.float64) + 0.5) / height
                xs = (torch.arange(width, dtype=torch.float64) + 0.5) / width
                cy, cx = torch.meshgrid(ys, xs, indexing="ij")
                centres = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (HW, 1, 2)
                sizes = torch.tensor([[s * math.sqrt(r), s / math.sqrt(r)] for s, r in specs], dtype=torch.float64)
                half = sizes.unsqueeze(0) / 2  # (1, A, 2)
                layer = torch.cat([centres - half, centres + half], dim=-1).reshape(-1, 4)
                boxes.append(layer)
            anchors = torch.cat(boxes)
            if self.clip:
                anchors = anchors.clamp(0.0, 1.0)
            self._cache[key] = anchors.to(dtype=dtype, device=device)
        return self._cache[key]

    def forward(self, image_list: ImageList, feature_maps: list[Tensor]) -> list[Tensor]:
        if len(feature_maps) != len(self.box_specs):
            raise ValueError(f"expected {len(self.box_specs)} feature maps, got {len(feature_maps)}")
        grid_sizes = [tuple(feature.shape[-2:]) for feature in feature_maps]
        height, width = image_list.tensors.shape[-2:]
        anchors = self._normalized_anchors(grid_sizes, feature_maps[0].dtype, feature_maps[0].device)
        scale = anchors.new_tensor([width, height, width, height])
        return [anchors * scale for _ in image_list.image_sizes]


class SSDPredictor(nn.Module):
    """1x1 convolutions predicting, per anchor, class logits (background first) and four box offsets.

    ``forward(features)`` returns {"cls_logits": (N, A_total, num_classes + 1), "bbox_regression": (N, A_total, 4)}.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_anchors: Sequence[int],
        num_classes_with_bg: int,
        background_prior: float = 0.99,
    ) -> None:
        super().__init__()
        cls = nn.ModuleList(
            nn.Conv2d(c, a * num_classes_with_bg, 1) for c, a in zip(in_channels, num_anchors, strict=False)
        )
        reg = nn.ModuleList(nn.Conv2d(c, a * 4, 1) for c, a in zip(in_channels, num_anchors, strict=False))
        for conv in [*cls, *reg]:
            nn.init.normal_(conv.weight, std=0.03)  # TF's truncated normal, stddev 0.03
            nn.init.zeros_(conv.bias)
        # Start every anchor at background probability ``background_prior`` (as RetinaNet's prior): almost all
        # anchors are background, and starting from uniform scores makes the first steps learn only that.
        num_objects = num_classes_with_bg - 1
        background_bias = math.log(background_prior * num_objects / (1.0 - background_prior))
        for conv in cls:
            conv.bias.data.view(-1, num_classes_with_bg)[:, 0] = background_bias
        self.classification_head = SSDScoringHead(cls, num_classes_with_bg)
        self.regression_head = SSDScoringHead(reg, 4)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {
            "bbox_regression": self.regression_head(features),
            "cls_logits": self.classification_head(features),
        }


class MobileNetSSD(SSD):
    """torchvision's SSD with TF's hard negative mining: 3 negatives per positive and at least
    ``min_negatives_per_image`` per image, so images without objects still teach the background class.

    ``object_balance`` b > 0 reweighs the positive anchors of an image by ``k ** -b``, k being the number of anchors
    its box matched, scaled so that they still sum to the number of positives. Large boxes match tens of anchors and
    30-pixel ones one to four, so with the reference's b = 0 small objects hardly count in the loss; b = 1 gives
    every box the same share.
    """

    def __init__(self, *args, min_negatives_per_image: int = 3, object_balance: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if object_balance < 0:
            raise ValueError(f"object_balance must be >= 0, got {object_balance}")
        self.min_negatives_per_image = min_negatives_per_image
        self.object_balance = object_balance

    def positive_weights(self, matched_gt: Tensor, num_boxes: int) -> Tensor:
        """Loss weights (P,) of one image's positive anchors, given the box index each matched (P,)."""
        weights = torch.ones(matched_gt.shape, dtype=torch.float32, device=matched_gt.device)
        if self.object_balance == 0 or matched_gt.numel() == 0:
            return weights
        anchors_per_box = torch.bincount(matched_gt, minlength=num_boxes).float()
        weights = anchors_per_box[matched_gt].pow(-self.object_balance)
        return weights * (matched_gt.numel() / weights.sum())

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        bbox_regression = head_outputs["bbox_regression"]
        cls_logits = head_outputs["cls_logits"]
        bbox_losses = []
        cls_targets = []
        anchor_weights = []
        for target, regression, anchors_per_image, matched in zip(
            targets, bbox_regression, anchors, matched_idxs, strict=False
        ):
            foreground = torch.where(matched >= 0)[0]
            matched_gt = matched[foreground]
            weights = self.positive_weights(matched_gt, len(target["boxes"]))
            encoded = self.box_coder.encode_single(target["boxes"][matched_gt], anchors_per_image[foreground])
            box_loss = F.smooth_l1_loss(regression[foreground], encoded, reduction="none").sum(1)
            bbox_losses.append((weights * box_loss).sum())
            classes = torch.zeros_like(matched, dtype=target["labels"].dtype)
            classes[foreground] = target["labels"][matched_gt]
            cls_targets.append(classes)
            anchor_weight = torch.zeros(matched.shape, dtype=weights.dtype, device=weights.device)
            anchor_weight[foreground] = weights
            anchor_weights.append(anchor_weight)
        cls_targets_t = torch.stack(cls_targets)
        anchor_weights_t = torch.stack(anchor_weights)
        num_classes = cls_logits.size(-1)
        cls_loss = F.cross_entropy(cls_logits.reshape(-1, num_classes), cls_targets_t.reshape(-1), reduction="none")
        cls_loss = cls_loss.view(cls_targets_t.shape)

        positives = cls_targets_t > 0
        num_positive = positives.sum(1, keepdim=True)
        num_negative = (self.neg_to_pos_ratio * num_positive).clamp(min=self.min_negatives_per_image)
        negative_loss = cls_loss.detach().clone()
        negative_loss[positives] = -float("inf")
        _, order = negative_loss.sort(1, descending=True)
        rank = order.argsort(1)
        negatives = rank < num_negative

        normalizer = max(1, int(num_positive.sum()))
        return {
            "bbox_regression": torch.stack(bbox_losses).sum() / normalizer,
            "classification": ((anchor_weights_t * cls_loss)[positives].sum() + cls_loss[negatives].sum()) / normalizer,
        }


def ssd300_mobilenet_v1(
    num_classes: int = 90,
    backbone: str = "mobilenet_v1",
    image_size: int = 300,
    backbone_weights: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    extra_depths: Sequence[int] = (512, 256, 256, 128),
    extra_depth_mult: float | None = None,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    iou_threshold: float = 0.5,
    neg_pos_ratio: float = 3.0,
    min_negatives_per_image: int = 3,
    object_balance: float = 0.0,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.6,
    detections_per_image: int = 100,
    topk_candidates: int = 400,
    activation: str = "relu6",
    **backbone_options: Any,
) -> MobileNetSSD:
    """SSD300 on a registered backbone, MobileNetV1 by default (the paper's detection table).

    Args:
        num_classes: object categories, background not counted.
        backbone: a name in ``backbone.BACKBONES``; its stride-16 and stride-32 taps feed the first two maps.
        image_size: the square input side every image is resized to.
        backbone_weights: a file for the backbone's weight loader (for mobilenet_v1: ours, or timm's
            mobilenetv1_100).
        image_mean, image_std: RGB normalisation of the [0, 1] images; None is the backbone's (MobileNetV1:
            0.5 and 0.5, TF's [-1, 1]).
        extra_depths: depths of the four extra layers at depth multiplier 1.
        extra_depth_mult: scales ``extra_depths``; None follows the backbone's ``width_mult`` (as TF's depth
            multiplier scales both), or 1 for a backbone without one.
        min_scale, max_scale: anchor scales of the first and last maps.
        iou_threshold: anchors with IoU >= this with a box are positives (each box also gets its best anchor).
        neg_pos_ratio: hard negatives mined per positive.
        min_negatives_per_image: mined negatives per image even when it has no objects.
        object_balance: 0 weighs every positive anchor alike (the reference); b > 0 weighs those of a box matched
            by k anchors by k ** -b, so that small boxes, which match few anchors, count more (1: every box alike).
        score_threshold, nms_threshold, detections_per_image, topk_candidates: post-processing.
        activation: the backbone's, for a backbone with that option: "relu6" here, as TF-slim's SSD (MobileNetV1's
            own default is the paper's "relu").
        backbone_options: the backbone's own settings (``backbone.backbone_options(backbone)``), e.g.
            mobilenet_v1's ``width_mult`` (alpha).
    """
    available = options_of(backbone)
    if "activation" in available:
        backbone_options["activation"] = activation
    if extra_depth_mult is None:
        width = available.get("width_mult")
        extra_depth_mult = backbone_options.get("width_mult", width.default if width else 1.0)
    body = build_backbone(backbone, strides=(16, 32), weights=backbone_weights, **backbone_options)
    default_mean, default_std = backbone_normalization(backbone)
    features = SSDFeatureExtractor(body, extra_depths, extra_depth_mult)
    anchor_generator = SSDAnchorGenerator(ssd_box_specs(len(features.out_channels), min_scale, max_scale))
    head = SSDPredictor(features.out_channels, anchor_generator.num_anchors_per_location(), num_classes + 1)
    return MobileNetSSD(
        features,
        anchor_generator,  # type: ignore[arg-type]  # duck-typed: torchvision only calls it
        (image_size, image_size),
        num_classes + 1,
        image_mean=list(image_mean if image_mean is not None else default_mean),
        image_std=list(image_std if image_std is not None else default_std),
        head=head,
        score_thresh=score_threshold,
        nms_thresh=nms_threshold,
        detections_per_img=detections_per_image,
        iou_thresh=iou_threshold,
        topk_candidates=topk_candidates,
        positive_fraction=1.0 / (1.0 + neg_pos_ratio),
        min_negatives_per_image=min_negatives_per_image,
        object_balance=object_balance,
    )
