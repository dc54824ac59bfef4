"""The classification task as the shared runner sees it."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasks.classification.data import ClassificationDataModule
from tasks.classification.model import build_classifier
from tasks.classification.module import ClassificationModule
from tasks.common.task import Task

MODEL_BUILDERS = {
    "classifier": build_classifier,
}


def _predict(*args, **kwargs):
    from tasks.classification.predict import predict_images

    return predict_images(*args, **kwargs)


def profile_input(model: nn.Module, config: dict[str, Any]) -> tuple[torch.Tensor, str]:
    """One image at the data section's input size (the resolution multiplier)."""
    size = int(config["data"].get("image_size", 224))
    return torch.rand(1, 3, size, size), f"one {size}x{size} image"


TASK = Task(
    name="classification",
    datamodule=ClassificationDataModule,
    module=ClassificationModule,
    model_builders=MODEL_BUILDERS,
    default_model="classifier",
    monitor="val/top1",
    predict=_predict,
    predict_summary="each image's top-5 classes",
    profile_input=profile_input,
)
