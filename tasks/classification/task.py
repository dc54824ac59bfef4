"""The classification task as the shared pipeline sees it."""

from __future__ import annotations

from tasks.classification.data import ClassificationDataModule
from tasks.classification.module import ClassificationModule
from tasks.common.classifier import build_classifier
from tasks.common.task import Task

TASK = Task(
    name="classification",
    datamodule=ClassificationDataModule,
    module=ClassificationModule,
    model_builders={"classifier": build_classifier},
    default_model="classifier",
)
