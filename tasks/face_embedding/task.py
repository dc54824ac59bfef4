"""The face-embedding task (Table 14) as the shared pipeline sees it: an identity-classifier teacher trained by
tools/train.py, an embedder student trained from it by tools/distill.py, both evaluated by LFW verification."""

from __future__ import annotations

from tasks.common.classifier import build_classifier
from tasks.common.task import Task
from tasks.face_embedding.data import FaceEmbeddingDataModule
from tasks.face_embedding.model import build_embedder
from tasks.face_embedding.module import FaceEmbeddingModule

TASK = Task(
    name="face_embedding",
    datamodule=FaceEmbeddingDataModule,
    module=FaceEmbeddingModule,
    model_builders={"identity_classifier": build_classifier, "embedder": build_embedder},
    default_model="identity_classifier",
)
