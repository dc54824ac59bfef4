"""The detection task as the shared runner sees it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasks.common.task import Task
from tasks.detection.data import CocoDataModule
from tasks.detection.faster_rcnn import fasterrcnn_mobilenet_v1
from tasks.detection.module import DetectionModule
from tasks.detection.ssd import ssd300_mobilenet_v1

MODEL_BUILDERS = {
    "ssd300_mobilenet_v1": ssd300_mobilenet_v1,
    "fasterrcnn_mobilenet_v1": fasterrcnn_mobilenet_v1,
}


def _predict(*args, **kwargs):
    from tasks.detection.predict import predict_images

    return predict_images(*args, **kwargs)


def profile_input(model: nn.Module, config: dict[str, Any]) -> tuple[list[torch.Tensor], str]:
    """One image: the model's ``profile_image_size`` (Faster-RCNN: COCO's common 640x480, resized as configured)
    or the square input size (SSD)."""
    size = config["model"].get("image_size", 300)
    height, width = getattr(model, "profile_image_size", (size, size))
    return [torch.rand(3, height, width)], f"one {width}x{height} image"


TASK = Task(
    name="detection",
    datamodule=CocoDataModule,
    module=DetectionModule,
    model_builders=MODEL_BUILDERS,
    default_model="ssd300_mobilenet_v1",
    monitor="val/map",
    predict=_predict,
    predict_summary="detections, and one picture per image",
    profile_input=profile_input,
    inference_model_keys=(
        "score_threshold",
        "nms_threshold",
        "detections_per_image",
        "topk_candidates",  # SSD
        "rpn_pre_nms_top_n_test",  # Faster-RCNN
        "proposals_test",
    ),
)
