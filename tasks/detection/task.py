"""The detection task as the shared runner sees it."""

from __future__ import annotations

from tasks.common.task import Task
from tasks.detection.data import CocoDataModule
from tasks.detection.module import DetectionModule
from tasks.detection.ssd import ssd300_mobilenet_v1

MODEL_BUILDERS = {
    "ssd300_mobilenet_v1": ssd300_mobilenet_v1,
}


def _predict(*args, **kwargs):
    from tasks.detection.predict import predict_images

    return predict_images(*args, **kwargs)


TASK = Task(
    name="detection",
    datamodule=CocoDataModule,
    module=DetectionModule,
    model_builders=MODEL_BUILDERS,
    default_model="ssd300_mobilenet_v1",
    monitor="val/map",
    predict=_predict,
)
