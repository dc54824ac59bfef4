"""Faster-RCNN on MobileNetV1, after the TF Object Detection API's faster_rcnn_mobilenet, on torchvision's FasterRCNN.

torchvision supplies the meta-architecture (resizing, RPN, proposal sampling, RoIAlign, box coder, losses, NMS);
this file supplies the MobileNet pieces of the reference design: the RPN and the RoI crops both read the stride-16
map (conv11), anchors of four scales and three ratios sit on that one map, every proposal is cropped to 14x14, and
the box classifier is the backbone's own last two stages (conv12, conv13; conv12's stride 2 makes the crop 7x7)
followed by global average pooling.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN, FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from backbone import MobileNetV1Backbone, load_weights

__all__ = ["MobileNetBoxHead", "default_anchor_sizes", "fasterrcnn_mobilenet_v1"]

# TF's grid anchors for Faster-RCNN: scales 0.25, 0.5, 1, 2 of a 256-pixel base box, for images resized to 600.
_TF_ANCHOR_SCALES = (0.25, 0.5, 1.0, 2.0)
_TF_ANCHOR_BASE = 256
_TF_MIN_SIZE = 600
# COCO's most common image size (height, width): the profiler counts the detector on it.
PROFILE_IMAGE_SIZE = (480, 640)


class MobileNetBoxHead(nn.Sequential):
    """The box classifier: the backbone stages that follow the RoI map, run on every crop, then a global average pool.

    The stages are the backbone's own modules, not copies: backbone weights cover them and training updates the
    same parameters (the state dict lists them under both parents). ``forward(crops)`` maps (K, C_in, S, S) RoI
    crops to (K, ``out_channels``) features; with S = 14, conv12's stride 2 works on 7x7.
    """

    def __init__(self, backbone: MobileNetV1Backbone, roi_stage: str) -> None:
        names = backbone.stage_names
        if roi_stage not in names:
            raise ValueError(f"roi_stage {roi_stage!r} is not a stage of the backbone; it has {names}")
        stages = names[names.index(roi_stage) + 1 :]
        if not stages:
            raise ValueError(f"the backbone has no stage after {roi_stage!r} to classify the crops with")
        layers: OrderedDict[str, nn.Module] = OrderedDict((name, backbone.stage(name)) for name in stages)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten(1)
        super().__init__(layers)
        self.stage_names = tuple(stages)
        self.out_channels = backbone.stage_info[stages[-1]].channels


def default_anchor_sizes(min_size: int) -> tuple[float, ...]:
    """TF's anchor sizes (64, 128, 256, 512 px at a 600-pixel shorter side) scaled to ``min_size``."""
    return tuple(_TF_ANCHOR_BASE * scale * min_size / _TF_MIN_SIZE for scale in _TF_ANCHOR_SCALES)


def fasterrcnn_mobilenet_v1(
    num_classes: int = 90,
    width_mult: float = 1.0,
    activation: str = "relu6",
    min_size: int = 600,
    max_size: int = 1024,
    backbone_weights: str | None = None,
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
) -> FasterRCNN:
    """Faster-RCNN with a MobileNetV1 backbone (the paper's "Faster-RCNN 300" and "600" rows).

    Defaults follow the TF Object Detection API's Faster-RCNN settings (Huang et al., 2017) where torchvision's differ.

    Args:
        num_classes: object categories, background not counted.
        width_mult: the backbone's alpha (the RPN's 3x3 convolution and the box classifier follow its widths).
        activation: backbone activation ("relu6" as TF-slim, or "relu").
        min_size: the shorter image side after resizing (300 or 600 in the paper).
        max_size: the cap on the longer side after resizing.
        backbone_weights: a file for ``backbone.load_weights`` (ours, or timm's mobilenetv1_100), loaded before the
            box classifier takes its stages from the backbone.
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
    """
    backbone = MobileNetV1Backbone(width_mult=width_mult, activation=activation, out_features=("conv0",))
    roi_stage = backbone.last_stage_with_stride(16)
    backbone = MobileNetV1Backbone(width_mult=width_mult, activation=activation, out_features=(roi_stage,))
    if backbone_weights:
        load_weights(backbone, backbone_weights)
    # torchvision only checks the backbone has ``out_channels``; ours is a dict of stage -> channels.
    feature_channels = backbone.out_channels[roi_stage]

    sizes = tuple(anchor_sizes) if anchor_sizes is not None else default_anchor_sizes(min_size)
    anchor_generator = AnchorGenerator(sizes=(sizes,), aspect_ratios=(tuple(aspect_ratios),))
    rpn_head = RPNHead(feature_channels, anchor_generator.num_anchors_per_location()[0])
    roi_pool = MultiScaleRoIAlign(featmap_names=[roi_stage], output_size=crop_size, sampling_ratio=sampling_ratio)
    box_head = MobileNetBoxHead(backbone, roi_stage)
    box_predictor = FastRCNNPredictor(box_head.out_channels, num_classes + 1)

    model = FasterRCNN(
        backbone,
        min_size=min_size,
        max_size=max_size,
        image_mean=[0.5, 0.5, 0.5],  # inputs scaled to [-1, 1], as TF's preprocessing
        image_std=[0.5, 0.5, 0.5],
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
    model.profile_image_size = PROFILE_IMAGE_SIZE
    return model
