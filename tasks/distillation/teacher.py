"""Teachers: a checkpoint of ours, a timm network with local weights, or an ONNX file run by onnxruntime.

Every teacher is held as a ``TaskModule`` of the student's task around the teacher's network, frozen in every sense
(eval mode, no gradients, outside the student's parameters, state dict and optimizer), so that its outputs for a
batch and its own score on the evaluation data come from the task's own hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tasks.common.build import build_module, load_checkpoint, read_checkpoint
from tasks.common.errors import CheckpointError, ConfigError
from tasks.common.module import TaskModule
from tasks.common.task import Task
from tasks.distillation.config import DistillConfig

__all__ = [
    "Teacher",
    "OnnxNetwork",
    "load_teacher",
    "checkpoint_teacher",
    "timm_teacher",
    "onnx_teacher",
    "check_teacher_fits",
]

TIMM_PREFIX = "timm:"


@dataclass
class Teacher:
    """A frozen ``module`` of the student's task, fed ``image_size`` x ``image_size`` views of each training crop."""

    module: TaskModule
    image_size: int
    description: str

    def __post_init__(self) -> None:
        self.module.eval()
        self.module.requires_grad_(False)

    @property
    def kind(self) -> str | None:
        return self.module.distillation_kind

    def outputs(self, images: Tensor) -> Tensor:
        """The teacher's (N, D) distillation outputs for (N, 3, S, S) images in [0, 1] at its own size. Run under
        ``no_grad`` (not ``inference_mode``: the losses' backward must be able to use them)."""
        if self.module.device != images.device:
            self.module.to(images.device)
        self.module.eval()
        with torch.no_grad():
            return self.module.distillation_outputs(images).float()


def _frozen_module(task: Task, model_config: Mapping[str, Any], data_info: Mapping[str, Any]) -> TaskModule:
    return build_module(task, {"model": dict(model_config), "optimizer": {}}, data_info)


def checkpoint_teacher(task: Task, path: str | Path) -> Teacher:
    """A teacher from a checkpoint written by tools/train.py or tools/distill.py for ``task``; it sees images at
    the size it was trained on and normalises them as it was trained."""
    path = Path(path)
    checkpoint = read_checkpoint(path)
    hyper = checkpoint.get("hyper_parameters") or {}
    if "model" not in hyper or "data_info" not in hyper:
        raise CheckpointError(f"{path} is not a checkpoint written by tools/train.py (no model or data_info)")
    model = dict(hyper["model"])
    if "backbone_weights" in model:  # the checkpoint's weights replace them, and that file need not be here
        model["backbone_weights"] = None
    module = _frozen_module(task, model, hyper["data_info"])
    load_checkpoint(task, module, path, checkpoint)
    size = hyper["data_info"].get("image_size")
    if not isinstance(size, int):
        raise CheckpointError(f"{path}: its data_info gives no image_size for the teacher's input")
    return Teacher(module, size, f"{hyper['model'].get('name')} from {path}")


def timm_teacher(task: Task, spec: str, config: DistillConfig, data_info: Mapping[str, Any]) -> Teacher:
    """A timm network (``timm:NAME``) with local weights as a model of the student's task; unless the config
    says otherwise, it sees images at its pretrained input size, normalised as its pretrained configuration."""
    if not config.teacher_weights:
        raise ConfigError(f"teacher {spec} needs --teacher-weights FILE (a local timm state dict or safetensors file)")
    info = {**data_info, "mean": config.teacher_mean, "std": config.teacher_std}
    model = {"name": task.default_model, "backbone": spec, "backbone_weights": config.teacher_weights}
    module = _frozen_module(task, model, info)
    size = config.teacher_image_size
    if size is None:
        pretrained = getattr(getattr(module.model, "network", None), "pretrained_cfg", None) or {}
        size = int(pretrained.get("input_size", (3, 224, 224))[-1])
    return Teacher(module, size, f"{spec} with {config.teacher_weights}")


class OnnxNetwork(nn.Module):
    """An ONNX model run by onnxruntime on the CPU, with the interface of the toolkit's networks: ``forward``
    maps (N, 3, S, S) images in [0, 1] to (N, D) logits (probabilities are turned into logits), ``embed`` to
    L2-normalised (N, D) outputs. It normalises its input with ``mean`` and ``std`` first."""

    def __init__(
        self, path: Path, image_size: int, mean: Sequence[float], std: Sequence[float], outputs: str = "logits"
    ) -> None:
        super().__init__()
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for a bad file
            raise CheckpointError(f"{path}: onnxruntime cannot load it: {str(error).splitlines()[0][:300]}") from error
        self.input_name = self.session.get_inputs()[0].name
        self.outputs = outputs
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1), persistent=False)
        try:
            probe = self._run(torch.zeros(1, 3, image_size, image_size))
        except Exception as error:  # noqa: BLE001
            raise CheckpointError(
                f"{path}: does not run on a 1x3x{image_size}x{image_size} image (distill.teacher_image_size): "
                f"{str(error).splitlines()[0][:300]}"
            ) from error
        if probe.ndim != 2:
            raise CheckpointError(f"{path}: its first output has shape {tuple(probe.shape)}, expected (N, D)")
        self.num_classes = int(probe.shape[1])

    def _run(self, images: Tensor) -> Tensor:
        normalised = ((images - self.mean.to(images.device)) / self.std.to(images.device)).float()
        array = normalised.detach().cpu().contiguous().numpy()
        (output, *_) = self.session.run(None, {self.input_name: np.ascontiguousarray(array)})
        return torch.from_numpy(np.asarray(output, dtype=np.float32)).to(images.device)

    def forward(self, images: Tensor) -> Tensor:
        output = self._run(images)
        if self.outputs == "probabilities":
            return torch.logit(output.clamp(1e-6, 1 - 1e-6))
        return output

    def embed(self, images: Tensor) -> Tensor:
        return F.normalize(self._run(images), dim=1)


def onnx_teacher(task: Task, path: str | Path, config: DistillConfig, data_info: Mapping[str, Any]) -> Teacher:
    """An ONNX file as a model of the student's task. Its input size and normalisation cannot be read from the file:
    ``distill.teacher_image_size``, ``teacher_mean`` and ``teacher_std`` are required."""
    path = Path(path)
    missing = [key for key in ("teacher_image_size", "teacher_mean", "teacher_std") if getattr(config, key) is None]
    if missing:
        raise ConfigError(
            f"an ONNX teacher ({path}) needs {', '.join('distill.' + key for key in missing)}: its input size and "
            "normalisation cannot be read from the file"
        )
    network = OnnxNetwork(
        path, config.teacher_image_size, config.teacher_mean, config.teacher_std, config.teacher_outputs
    )
    module = task.module(network, {"name": "onnx", "file": str(path)}, {}, data_info)
    return Teacher(module, config.teacher_image_size, f"ONNX model {path}")


def teacher_output_size(teacher: Teacher) -> int:
    """How many outputs (classes, attributes, embedding values) the teacher gives per image."""
    return int(teacher.outputs(torch.zeros(1, 3, teacher.image_size, teacher.image_size)).shape[1])


def check_teacher_fits(teacher: Teacher, student: TaskModule, student_size: int) -> None:
    """Refuse, before training, a teacher whose outputs a student cannot learn: another kind of output (a detector
    teaching face attributes) or another number of outputs than the student's head, both sizes named."""
    if student.distillation_kind is None:
        raise ConfigError(f"{type(student).__name__} models cannot be distilled")
    if teacher.kind != student.distillation_kind:
        raise ConfigError(
            f"the teacher ({teacher.description}) gives {teacher.kind or 'no distillable'} outputs, the student "
            f"learns {student.distillation_kind} outputs: it cannot teach this task"
        )
    teacher_dim = teacher_output_size(teacher)
    was_training = student.training
    student.eval()
    with torch.no_grad():
        student_dim = student.distillation_outputs(torch.zeros(1, 3, student_size, student_size)).shape[1]
    student.train(was_training)
    if teacher_dim != student_dim:
        raise ConfigError(
            f"the teacher ({teacher.description}) gives {teacher_dim} outputs per image, the student's head "
            f"{student_dim}: they must agree (set the student's model.num_classes or embedding size to {teacher_dim})"
        )


def _checkpoint_task(path: Path, student_task: Task, tasks: Mapping[str, Task]) -> Task:
    """The task a checkpoint was written for: the one saved with it or, in a checkpoint written before the task was
    saved, the one whose builders include its ``model.name`` (the student's own task first, where several tasks
    share a builder name)."""
    hyper = read_checkpoint(path).get("hyper_parameters") or {}
    if hyper.get("task") in tasks:
        return tasks[hyper["task"]]
    name = (hyper.get("model") or {}).get("name")
    candidates = [task for task in tasks.values() if name in task.model_builders]
    if student_task in candidates:
        return student_task
    if len(candidates) == 1:
        return candidates[0]
    known = {task.name: sorted(task.model_builders) for task in tasks.values()}
    raise CheckpointError(f"{path}: model.name {name!r} is not a model of one task here ({known})")


def load_teacher(
    spec: str, student_task: Task, config: DistillConfig, data_info: Mapping[str, Any], tasks: Mapping[str, Task]
) -> Teacher:
    """The teacher ``spec`` names: ``timm:NAME``, an ``.onnx`` file, or a checkpoint of any of ``tasks``."""
    if spec.startswith(TIMM_PREFIX):
        return timm_teacher(student_task, spec, config, data_info)
    path = Path(spec)
    if not path.is_file():
        raise CheckpointError(f"teacher not found: {path} (a checkpoint, an .onnx file or timm:NAME)")
    if path.suffix.lower() == ".onnx":
        return onnx_teacher(student_task, path, config, data_info)
    return checkpoint_teacher(_checkpoint_task(path, student_task, tasks), path)
