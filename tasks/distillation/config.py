"""The ``distill:`` section of a run config (read by tools/distill.py; tools/train.py, eval.py and predict.py
read past it, so one config serves the student's whole life)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["DistillConfig"]


@dataclass
class DistillConfig:
    """How a student learns from its teacher.

    Args:
        teacher: a checkpoint written by tools/train.py or tools/distill.py, ``timm:NAME`` (with
            ``teacher_weights``), or an ``.onnx`` file; ``--teacher`` sets it, and the run's config.yaml records it
            so that ``--resume`` rebuilds the teacher.
        teacher_weights: a local timm state dict or safetensors file, for ``timm:NAME``.
        teacher_image_size: the square side the teacher sees (required for ONNX; default: the checkpoint's
            training size, the timm model's pretrained input size).
        teacher_mean, teacher_std: the teacher's RGB normalisation of [0, 1] images (required for ONNX; default:
            the checkpoint's, the timm model's pretrained configuration's).
        teacher_outputs: what an ONNX teacher's first output holds: "logits" or "probabilities" (classes,
            attributes), "embeddings" (faces).
        temperature: Hinton's softmax temperature T for class logits (the KL term is scaled by T squared).
        label_weight: weight of the labels' own loss in ``(1 - w) * distillation + w * labels``, over the images
            that have a label; 0 learns from the teacher alone. ``data.label_fraction`` keeps the labels of a
            seeded subset of the training split, the other images then unlabelled.
        unlabeled: a folder of unlabelled images (searched recursively) added to the training images.
        train_on: "both" (the training split and ``unlabeled``) or "unlabeled" (the folder alone).
        cache_teacher: compute the teacher's outputs once per training image (un-augmented input), keyed by the
            image's path, kept in the run directory and reused across epochs and on resume.
    """

    teacher: str | None = None
    teacher_weights: str | None = None
    teacher_image_size: int | None = None
    teacher_mean: list[float] | None = None
    teacher_std: list[float] | None = None
    teacher_outputs: Literal["logits", "probabilities", "embeddings"] = "logits"
    temperature: float = 4.0
    label_weight: float = 0.0
    unlabeled: str | None = None
    train_on: Literal["both", "unlabeled"] = "both"
    cache_teacher: bool = False
