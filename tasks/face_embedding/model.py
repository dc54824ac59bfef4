"""The embedding student of Table 14: a backbone, global pool and one linear layer to ``embedding_dim``, its output
L2-normalised. The identity teacher is ``tasks.common.classifier.build_classifier`` itself (its embedding is
``ImageClassifier.embed``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tasks.common.classifier import ImageClassifier, build_classifier
from tasks.common.errors import ConfigError

__all__ = ["FACENET_EMBEDDING_DIM", "FaceEmbedder", "build_embedder"]

FACENET_EMBEDDING_DIM = 128


class FaceEmbedder(ImageClassifier):
    """An ``ImageClassifier`` whose ``embedding_dim`` outputs are an embedding: ``forward`` returns them
    L2-normalised. Its state dict is the classifier's (``network.backbone.*``, ``network.fc.*``), so backbone
    weights, timm networks and checkpoints load as they do for a classifier."""

    @property
    def embedding_dim(self) -> int:
        return self.num_classes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB images in [0, 1] -> (N, embedding_dim) unit vectors."""
        return nn.functional.normalize(super().forward(images), dim=1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding: ``forward`` (the pooled features before the linear layer are ``pre_logits``)."""
        return self(images)


def build_embedder(
    embedding_dim: int | None = None,
    backbone: str = "mobilenet_v1",
    dropout: float = 0.0,
    backbone_weights: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    freeze_backbone_epochs: int = 0,
    **backbone_options: Any,
) -> FaceEmbedder:
    """The embedder (the ``model:`` section of ``name: embedder``), taking RGB images in [0, 1].

    Args:
        embedding_dim: the embedding's size: the teacher's, for distillation by the squared embedding difference
            (tools/distill.py fills in the teacher's when it is left null); FaceNet's 128 where nothing sets it.
        backbone, dropout, backbone_weights, image_mean, image_std, freeze_backbone_epochs, backbone_options: as
            ``build_classifier``'s; a weights file's classifier loads only when it has ``embedding_dim`` outputs.
    """
    if embedding_dim is None:
        embedding_dim = FACENET_EMBEDDING_DIM
    if embedding_dim < 1:
        raise ConfigError(f"model.embedding_dim must be >= 1, got {embedding_dim}")
    classifier = build_classifier(
        num_classes=embedding_dim,
        backbone=backbone,
        dropout=dropout,
        backbone_weights=backbone_weights,
        image_mean=image_mean,
        image_std=image_std,
        freeze_backbone_epochs=freeze_backbone_epochs,
        **backbone_options,
    )
    return FaceEmbedder(
        classifier.network,
        classifier.head_name,
        embedding_dim,
        freeze_backbone_epochs,
        mean=classifier.mean.flatten().tolist(),
        std=classifier.std.flatten().tolist(),
    )
