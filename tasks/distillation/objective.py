"""What a student minimises: its teacher's outputs, optionally mixed with the labels it has."""

from __future__ import annotations

from torch import Tensor

from tasks.common.data import Batch
from tasks.common.module import TaskModule
from tasks.distillation.data import DistillBatch
from tasks.distillation.losses import distillation_loss
from tasks.distillation.teacher import Teacher

__all__ = ["DistillationObjective", "labeled_mask"]


def labeled_mask(targets: Tensor) -> Tensor:
    """(B,) True where an image has its label: integer targets of -100 and float targets holding NaN are the
    placeholders of unlabelled images."""
    if targets.is_floating_point():
        missing = targets.isnan()
        return ~(missing.reshape(len(targets), -1).any(dim=1))
    return targets != -100


class DistillationObjective:
    """``TaskModule.training_objective`` for a student of ``teacher``.

    The loss is the task's distillation loss (``tasks.distillation.losses``) between the student's and the
    teacher's outputs for every image, labelled or not; with ``label_weight`` w > 0 it becomes
    ``(1 - w) * distillation + w * labels``, the labels' loss (the task's own ``training_loss``) taken over the
    images of the batch that have a label. A plain object, not a module: the teacher stays out of the student's
    parameters, state dict and optimizer, and out of DDP.
    """

    def __init__(self, teacher: Teacher, kind: str, temperature: float = 4.0, label_weight: float = 0.0) -> None:
        if not 0.0 <= label_weight <= 1.0:
            raise ValueError(f"distill.label_weight must be in [0, 1], got {label_weight}")
        if temperature <= 0:
            raise ValueError(f"distill.temperature must be positive, got {temperature}")
        self.teacher = teacher
        self.kind = kind
        self.temperature = temperature
        self.label_weight = label_weight

    def __call__(self, module: TaskModule, batch: DistillBatch) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.teacher_outputs is not None:
            teacher = batch.teacher_outputs
        else:
            teacher = self.teacher.outputs(batch.teacher_inputs)
        student = module.distillation_outputs(batch.inputs)
        loss = distillation_loss(self.kind, student, teacher, self.temperature)
        logs = {"distill_loss": loss.detach()}
        if self.label_weight > 0:
            mask = labeled_mask(batch.targets)
            if mask.any():
                labeled = Batch(batch.inputs[mask], batch.targets[mask], batch.indices[mask], 0)
                label_loss, label_logs = module.training_loss(labeled)
                logs.update({"label_loss": label_loss.detach(), **label_logs})
                loss = (1 - self.label_weight) * loss + self.label_weight * label_loss
            logs["labeled_fraction"] = mask.float().mean()
        return loss, logs

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.teacher.description}, {self.kind}, T={self.temperature})"
