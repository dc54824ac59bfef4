"""The face-attributes task as the shared pipeline sees it."""

from __future__ import annotations

from tasks.common.classifier import build_classifier
from tasks.common.task import Task
from tasks.face_attributes.data import FaceAttributeDataModule
from tasks.face_attributes.module import FaceAttributesModule

TASK = Task(
    name="face_attributes",
    datamodule=FaceAttributeDataModule,
    module=FaceAttributesModule,
    model_builders={"classifier": build_classifier},
    default_model="classifier",
)
