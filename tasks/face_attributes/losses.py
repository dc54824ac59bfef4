"""The training loss of face attributes: binary cross-entropy over the labelled targets only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["masked_binary_cross_entropy", "per_image_binary_cross_entropy"]


def masked_binary_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy with logits over the (image, attribute) entries whose target is not NaN.

    Args:
        logits: (N, A) raw scores.
        targets: (N, A) of 0 / 1, NaN where unknown (an image a distillation run added without labels).

    Returns a scalar; with no labelled entry it is 0 and still part of the graph (``logits.sum() * 0``), so a
    batch of unlabelled images backpropagates nothing rather than NaN.
    """
    sums, counts = per_image_binary_cross_entropy(logits, targets)
    return sums.sum() / counts.sum().clamp(min=1)


def per_image_binary_cross_entropy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(N,) sums of each image's binary cross-entropy over its labelled attributes, and (N,) how many it has: the
    pieces ``masked_binary_cross_entropy`` divides, kept per image for a loss over a whole validation set."""
    labelled = ~torch.isnan(targets)
    losses = F.binary_cross_entropy_with_logits(logits, torch.where(labelled, targets, 0.0), reduction="none")
    return (losses * labelled).sum(dim=1), labelled.sum(dim=1)
