"""What a task (detection, classification, ...) gives the shared runner: its data module, its LightningModule,
its model builders, the metric that picks the best checkpoint, and its prediction writer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from torch import nn

__all__ = ["Task", "get_task", "TASK_MODULES"]


@dataclass(frozen=True)
class Task:
    """A task's pieces.

    ``module`` is a LightningModule whose ``__init__(model: dict, optimizer: dict, data_info: dict, **extra)``
    builds ``model_builders[model["name"]](**model_kwargs)``; ``datamodule`` takes the ``data:`` section as keyword
    arguments and reports ``data_info()`` (class names, ids: whatever the module must know about the data).
    """

    name: str
    datamodule: type[L.LightningDataModule]
    module: type[L.LightningModule]
    model_builders: Mapping[str, Callable[..., nn.Module]]
    default_model: str
    monitor: str
    monitor_mode: str = "max"
    # Keys of ``data_info()`` that fill the model section when it does not set them (e.g. num_classes).
    model_defaults_from_data: Sequence[str] = ("num_classes",)
    predict: Callable[..., Any] | None = None
    # What ``predict`` writes for each record, for the tool's closing message.
    predict_summary: str = "predictions"
    # (model, config) -> (example input, description) for tools/profile.py CONFIG.
    profile_input: Callable[[nn.Module, dict[str, Any]], tuple[Any, str]] | None = None
    extra_sections: Sequence[str] = field(default_factory=tuple)
    # ``model:`` keys that only change post-processing: eval.py and predict.py may set them unlike the training run.
    inference_model_keys: Sequence[str] = ()


# The tasks a config's ``task:`` key may name, and the module holding each one's ``TASK``.
TASK_MODULES: dict[str, str] = {
    "detection": "tasks.detection.task",
    "classification": "tasks.classification.task",
}


def get_task(name: str, source: str | Path = "config") -> Task:
    import importlib

    from tasks.common.config import ConfigError

    if name not in TASK_MODULES:
        raise ConfigError(f"{source}: unknown task {name!r}; choose one of {sorted(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name]).TASK
