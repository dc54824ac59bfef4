"""Distil a teacher into the model of a run config: the shared runner with a distillation objective and data."""

from __future__ import annotations

import inspect
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from tasks.common.build import build_module, resolve_normalization
from tasks.common.config import signature_keys
from tasks.common.errors import ConfigError
from tasks.common.runner import build_trainer, fit
from tasks.common.task import Task
from tasks.distillation.cache import teacher_cache
from tasks.distillation.config import DistillConfig
from tasks.distillation.data import DistillationDataModule
from tasks.distillation.objective import DistillationObjective
from tasks.distillation.teacher import Teacher, check_teacher_fits, load_teacher, teacher_output_size

__all__ = ["EpochTimer", "distill"]


class EpochTimer(Callback):
    """Prints each training epoch's time (validation excluded) and keeps them in ``seconds``."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        rank_zero_info(f"epoch {trainer.current_epoch}: training took {self.seconds[-1]:.1f} s")


def _data_setting(task: Task, config: dict[str, Any], key: str) -> Any:
    if key in config["data"]:
        return config["data"][key]
    parameter = signature_keys(task.datamodule).get(key)
    return None if parameter is None else parameter.default


def _size_embedding_to_teacher(task: Task, config: dict[str, Any], teacher: Teacher) -> None:
    """An embedding student whose ``model.embedding_dim`` is left out (or null) gets the teacher's size, written
    into the config so that the run's config.yaml and checkpoint describe the student fully."""
    model = config["model"]
    builder = task.model_builders[model.get("name", task.default_model)]
    if "embedding_dim" in inspect.signature(builder).parameters and model.get("embedding_dim") is None:
        model["embedding_dim"] = teacher_output_size(teacher)
        rank_zero_info(f"model.embedding_dim: {model['embedding_dim']}, the teacher's embedding size")


def distill(
    task: Task,
    config: dict[str, Any],
    tasks: Mapping[str, Task],
    out: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Train the model of ``config`` (a checked config of ``task``) to reproduce the teacher its ``distill:``
    section names (a checkpoint of any of ``tasks``, ``timm:NAME`` or an ONNX file); return the run directory:
    the same files as tools/train.py writes, the teacher's own score on the evaluation data in metrics.json
    (``teacher_<metric>``), and ``teacher_cache.safetensors`` with ``distill.cache_teacher``."""
    settings = DistillConfig(**config.get("distill", {}))
    if not settings.teacher:
        raise ConfigError(f"{config.get('_source', 'config')}: no teacher: give --teacher (or distill.teacher)")
    resolve_normalization(task, config)
    student_size = _data_setting(task, config, "image_size")
    if not isinstance(student_size, int):
        raise ConfigError(f"{task.name}: distillation needs a square data.image_size for the student")
    if settings.cache_teacher and _data_setting(task, config, "augment") not in (None, "none"):
        raise ConfigError(
            "--cache-teacher computes the teacher's outputs once, on the un-augmented image, but data.augment is "
            f"{_data_setting(task, config, 'augment')!r}: the teacher would see a different crop each epoch. "
            "Set data.augment=none, or train without the cache"
        )
    val_data = task.datamodule(**config["data"])
    teacher = load_teacher(settings.teacher, task, settings, val_data.data_info(), tasks)
    train_data = task.datamodule(**{**config["data"], "image_size": max(student_size, teacher.image_size)})
    datamodule = DistillationDataModule(
        train_data,
        val_data,
        student_size,
        teacher.image_size,
        unlabeled=settings.unlabeled,
        train_on=settings.train_on,
    )
    _size_embedding_to_teacher(task, config, teacher)
    L.seed_everything(config.get("seed", 0), workers=True, verbose=False)  # the student's initial weights too
    module = build_module(task, config, val_data.data_info())
    check_teacher_fits(teacher, module, student_size)
    module.training_objective = DistillationObjective(
        teacher, module.distillation_kind, settings.temperature, settings.label_weight
    )
    rank_zero_info(f"distilling {teacher.description} ({teacher.image_size} px) into {module.hparams['model']}")
    timer = EpochTimer()

    def before_fit(trainer: L.Trainer, run_dir: Path) -> None:
        trainer.callbacks.append(timer)
        if settings.cache_teacher:
            datamodule.setup("fit")
            cache = teacher_cache(
                teacher, datamodule.train_dataset, run_dir, datamodule.batch_size, write=trainer.is_global_zero
            )
            datamodule.use_cache(cache)

    def teacher_score(trainer: L.Trainer) -> dict[str, Any]:
        teacher_data = task.datamodule(**{**config["data"], "image_size": teacher.image_size})
        evaluator = build_trainer(config["trainer"], Path(trainer.default_root_dir), train=False)
        evaluator.validate(teacher.module, datamodule=teacher_data, verbose=False)
        teacher.module.eval()
        key = module.monitor.removeprefix("val/")
        if timer.seconds:
            rank_zero_info(f"mean training epoch: {sum(timer.seconds) / len(timer.seconds):.1f} s")
        scores = {f"teacher_{key}": teacher.module.final_metrics().get(key)}
        if datamodule.train_dataset is not None:
            # What the student trained on: labelled and unlabelled images (the task's own count is its labelled split).
            scores["train_size"] = len(datamodule.train_dataset)
        return scores

    return fit(task, module, datamodule, config, out, resume, before_fit=before_fit, after_fit=teacher_score)
