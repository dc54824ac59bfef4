"""The losses that make a student reproduce its teacher, one per kind of output (``TaskModule.distillation_kind``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["soft_target_kl", "soft_target_bce", "embedding_distance", "distillation_loss"]


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al.'s soft targets: KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch and
    scaled by T squared (so that its gradients keep their size as T changes). (N, C) logits each."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


def soft_target_bce(student_logits: Tensor, teacher_probabilities: Tensor) -> Tensor:
    """The paper's per-attribute cross-entropy: binary cross-entropy of the student's (N, A) logits against the
    teacher's (N, A) probabilities, averaged over attributes and images."""
    return F.binary_cross_entropy_with_logits(student_logits, teacher_probabilities)


def embedding_distance(student: Tensor, teacher: Tensor) -> Tensor:
    """The paper's squared L2 distance between the L2-normalised (N, D) student and teacher embeddings, averaged
    over images (between 0 and 4 per image)."""
    return (F.normalize(student, dim=1) - F.normalize(teacher, dim=1)).pow(2).sum(dim=1).mean()


def distillation_loss(kind: str, student: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """The loss for a task's ``distillation_kind``: ``teacher`` holds logits for "softmax" and "sigmoid" (turned
    into probabilities here) and embeddings for "embedding"."""
    if kind == "softmax":
        return soft_target_kl(student, teacher, temperature)
    if kind == "sigmoid":
        return soft_target_bce(student, teacher.sigmoid())
    if kind == "embedding":
        return embedding_distance(student, teacher)
    raise ValueError(f"no distillation loss for outputs of kind {kind!r}")
