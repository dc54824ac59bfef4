"""Faster-RCNN on MobileNetV1, after the TF Object Detection API's faster_rcnn_mobilenet, on torchvision's FasterRCNN.

torchvision supplies the meta-architecture (resizing, RPN, proposal sampling, RoIAlign, box coder, losses, NMS);
this file supplies the MobileNet pieces of the reference design: the RPN and the RoI crops both read the stride-16
map (conv11), anchors of four scales and three ratios sit on that one map, every proposal is cropped to 14x14, and
the box classifier is the backbone's own last two stages (conv12, conv13; conv12's stride 2 makes the crop 7x7)
followed by global average pooling. The backbone is any of ``backbone.BACKBONES``, read at stride 16.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from backbone import FeatureBackbone, backbone_normalization, build_backbone
from backbone import backbone_options as options_of

__all__ = [
    "PROFILE_IMAGE_SIZE",
    "FALLBACK_REPRESENTATION_SIZE",
    "BackboneBoxHead",
    "box_head_for",
    "default_anchor_sizes",
    "fasterrcnn_mobilenet_v1",
]

# TF's grid anchors for Faster-RCNN: scales 0.25, 0.5, 1, 2 of a 256-pixel base box, for images resized to 600.
_TF_ANCHOR_SCALES = (0.25, 0.5, 1.0, 2.0)
_TF_ANCHOR_BASE = 256
_TF_MIN_SIZE = 600
# COCO's most common image size (height, width): the profiler counts the detector on it.
PROFILE_IMAGE_SIZE = (480, 640)
# Width of the fallback box classifier's two fully connected layers (torchvision's FasterRCNN default).
FALLBACK_REPRESENTATION_SIZE = 1024


class BackboneBoxHead(nn.Sequential):
    """The box classifier: the backbone's own layers after the RoI tap, run on every crop, then a global average pool.

    The layers are the backbone's modules, not copies: backbone weights cover them and training updates the same
    parameters (the state dict lists them under both parents, ``backbone.conv12...`` and ``roi_heads.box_head.
    conv12...``). ``forward(crops)`` maps (K, C_in, S, S) RoI crops to (K, ``out_channels``) features; on
    MobileNetV1 with S = 14, conv12's stride 2 works on 7x7.
    """

    def __init__(self, layers: nn.Module, out_channels: int) -> None:
        # A Sequential's children sit directly under the head, so the keys stay those of the backbone's stages.
        children = OrderedDict(layers.named_children() if isinstance(layers, nn.Sequential) else [("layers", layers)])
        children["pool"] = nn.AdaptiveAvgPool2d(1)
        children["flatten"] = nn.Flatten(1)
        super().__init__(children)
        self.out_channels = out_channels


def box_head_for(backbone: FeatureBackbone, roi_tap: str, crop_size: int) -> tuple[nn.Module, int]:
    """The box classifier on ``roi_tap`` crops and its output width.

    ``BackboneBoxHead`` on ``backbone.layers_after(roi_tap)``, as the reference design. A backbone that cannot
    provide its layers after the tap (``layers_after`` is None, or nothing follows the tap) gets torchvision's
    FasterRCNN default instead: two fully connected layers of ``FALLBACK_REPRESENTATION_SIZE`` (``TwoMLPHead``) on
    the flattened crop.
    """
    layers = backbone.layers_after(roi_tap)
    if layers is None or (isinstance(layers, nn.Sequential) and len(layers) == 0):
        in_features = backbone.out_channels[roi_tap] * crop_size**2
        return TwoMLPHead(in_features, FALLBACK_REPRESENTATION_SIZE), FALLBACK_REPRESENTATION_SIZE
    final = next(reversed(backbone.tap_info.values()))
    return BackboneBoxHead(layers, final.channels), final.channels


def default_anchor_sizes(min_size: int) -> tuple[float, ...]:
    """TF's anchor sizes (64, 128, 256, 512 px at a 600-pixel shorter side) scaled to ``min_size``."""
    return tuple(_TF_ANCHOR_BASE * scale * min_size / _TF_MIN_SIZE for scale in _TF_ANCHOR_SCALES)


def fasterrcnn_mobilenet_v1(
    num_classes: int = 90,
    backbone: str = "mobilenet_v1",
    min_size: int = 600,
    max_size: int = 1024,
    backbone_weights: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    anchor_sizes: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 6000,
    rpn_pre_nms_top_n_test: int = 6000,
    proposals_train: int = 300,
    proposals_test: int = 300,
    rpn_nms_threshold: float = 0.7,
    rpn_fg_iou_threshold: float = 0.7,
    rpn_bg_iou_threshold: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    crop_size: int = 14,
    sampling_ratio: int = 2,
    box_fg_iou_threshold: float = 0.5,
    box_bg_iou_threshold: float = 0.5,
    box_batch_size_per_image: int = 64,
    box_positive_fraction: float = 0.25,
    score_threshold: float = 0.01,
    nms_threshold: float = 0.6,
    detections_per_image: int = 100,
    activation: str = "relu6",
    **backbone_options: Any,
) -> FasterRCNN:
    """Faster-RCNN on a registered backbone, MobileNetV1 by default (the paper's "Faster-RCNN 300" and "600" rows).

    Defaults follow the TF Object Detection API's Faster-RCNN settings (Huang et al., 2017) where torchvision's differ.

    Args:
        num_classes: object categories, background not counted.
        backbone: a name in ``backbone.BACKBONES``; its stride-16 tap feeds the RPN and the RoI crops (the RPN's 3x3
            convolution and the box classifier follow its widths).
        min_size: the shorter image side after resizing (300 or 600 in the paper).
        max_size: the cap on the longer side after resizing.
        backbone_weights: a file for the backbone's weight loader (for mobilenet_v1: ours, or timm's
            mobilenetv1_100), loaded before the box classifier takes its layers from the backbone.
        image_mean, image_std: RGB normalisation of the [0, 1] images; None is the backbone's (MobileNetV1:
            0.5 and 0.5, TF's [-1, 1]).
        anchor_sizes: anchor sides in pixels of the resized image; None is TF's 0.25, 0.5, 1, 2 x 256 px scaled by
            ``min_size`` / 600 (32 to 256 px at 300).
        aspect_ratios: anchor height / width ratios; every size has every ratio on each cell of the stride-16 map.
        rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test: best-scoring anchors kept before the RPN's NMS. TF runs
            NMS on every anchor; 6000 (Detectron's) bounds the cost yet leaves 300 proposals after NMS even for an
            untrained RPN at 600 px, whose top 1000 anchors crowd together and fall to ~150.
        proposals_train, proposals_test: proposals kept per image after the RPN's NMS (the paper evaluates 300).
        rpn_nms_threshold: IoU of the RPN's NMS.
        rpn_fg_iou_threshold, rpn_bg_iou_threshold: anchors at or above / below these IoUs train as object /
            background.
        rpn_batch_size_per_image, rpn_positive_fraction: anchors sampled per image for the RPN losses.
        crop_size: side of each proposal's RoIAlign crop from the stride-16 map (14 in the paper).
        sampling_ratio: RoIAlign's sampling points per output bin side (0: adaptive).
        box_fg_iou_threshold, box_bg_iou_threshold: proposals at or above / below these IoUs train as object /
            background in the box classifier.
        box_batch_size_per_image, box_positive_fraction: proposals sampled per image for the box classifier (TF: 64).
        score_threshold, nms_threshold, detections_per_image: post-processing (per-class NMS).
        activation: the backbone's, for a backbone with that option: "relu6" here, as TF-slim (MobileNetV1's own
            default is the paper's "relu").
        backbone_options: the backbone's own settings (``backbone.backbone_options(backbone)``), e.g.
            mobilenet_v1's ``width_mult`` (alpha).

    The box classifier is ``box_head_for(backbone, tap, crop_size)``: the backbone's layers after the stride-16
    tap (conv12, conv13 on MobileNetV1), or a two-layer MLP for a backbone without ``layers_after``.
    """
    if "activation" in options_of(backbone):
        backbone_options["activation"] = activation
    body = build_backbone(backbone, strides=(16,), weights=backbone_weights, **backbone_options)
    (roi_tap,) = body.out_features
    # torchvision only checks the backbone has ``out_channels``; ours is a dict of tap -> channels.
    feature_channels = body.out_channels[roi_tap]
    default_mean, default_std = backbone_normalization(backbone)

    sizes = tuple(anchor_sizes) if anchor_sizes is not None else default_anchor_sizes(min_size)
    anchor_generator = AnchorGenerator(sizes=(sizes,), aspect_ratios=(tuple(aspect_ratios),))
    rpn_head = RPNHead(feature_channels, anchor_generator.num_anchors_per_location()[0])
    roi_pool = MultiScaleRoIAlign(featmap_names=[roi_tap], output_size=crop_size, sampling_ratio=sampling_ratio)
    box_head, box_channels = box_head_for(body, roi_tap, crop_size)
    box_predictor = FastRCNNPredictor(box_channels, num_classes + 1)

    return FasterRCNN(
        body,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(image_mean if image_mean is not None else default_mean),
        image_std=list(image_std if image_std is not None else default_std),
        rpn_anchor_generator=anchor_generator,
        rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=proposals_train,
        rpn_post_nms_top_n_test=proposals_test,
        rpn_nms_thresh=rpn_nms_threshold,
        rpn_fg_iou_thresh=rpn_fg_iou_threshold,
        rpn_bg_iou_thresh=rpn_bg_iou_threshold,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        rpn_positive_fraction=rpn_positive_fraction,
        box_roi_pool=roi_pool,
        box_head=box_head,
        box_predictor=box_predictor,
        box_score_thresh=score_threshold,
        box_nms_thresh=nms_threshold,
        box_detections_per_img=detections_per_image,
        box_fg_iou_thresh=box_fg_iou_threshold,
        box_bg_iou_thresh=box_bg_iou_threshold,
        box_batch_size_per_image=box_batch_size_per_image,
        box_positive_fraction=box_positive_fraction,
    )
