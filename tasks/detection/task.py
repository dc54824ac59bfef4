"""The detection task as the shared pipeline sees it."""

from __future__ import annotations

from tasks.common.task import Task
from tasks.detection.data import CocoDataModule
from tasks.detection.faster_rcnn import fasterrcnn_mobilenet_v1
from tasks.detection.module import DetectionModule
from tasks.detection.ssd import ssd300_mobilenet_v1

TASK = Task(
    name="detection",
    datamodule=CocoDataModule,
    module=DetectionModule,
    model_builders={
        "ssd300_mobilenet_v1": ssd300_mobilenet_v1,
        "fasterrcnn_mobilenet_v1": fasterrcnn_mobilenet_v1,
    },
    default_model="ssd300_mobilenet_v1",
)
