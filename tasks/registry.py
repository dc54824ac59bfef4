"""The tasks a config's ``task:`` key may name. Adding a task is one line in ``TASKS``.

This module sits above the tasks and below the tools: the tools look a task up here and hand it to the shared
builder and runner (``tasks.common``), which never import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.classification.task import TASK as CLASSIFICATION
from tasks.common.build import check_config
from tasks.common.config import blame, load_config
from tasks.common.errors import ConfigError
from tasks.common.task import Task
from tasks.detection.task import TASK as DETECTION
from tasks.distillation.config import DistillConfig
from tasks.face_attributes.task import TASK as FACE_ATTRIBUTES
from tasks.face_embedding.task import TASK as FACE_EMBEDDING

__all__ = ["TASKS", "get_task", "load_task_config"]

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        DETECTION,
        CLASSIFICATION,
        FACE_ATTRIBUTES,
        FACE_EMBEDDING,
    )
}


def get_task(name: Any, source: str | Path = "config") -> Task:
    if name not in TASKS:
        raise ConfigError(f"{source}: unknown task {name!r}; choose one of {sorted(TASKS)}")
    return TASKS[name]


def load_task_config(path: str | Path, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], Task]:
    """Read a run config, apply ``dotted.key=value`` overrides, look its task up and check every key against it
    (the ``distill:`` section against ``tasks.distillation.config.DistillConfig``)."""
    config = load_config(path, overrides)
    if "task" not in config:
        raise ConfigError(f"{path}: missing key task (one of {', '.join(sorted(TASKS))})")
    task = get_task(config["task"], blame(str(path), "task", config["_overrides"]))
    _read_data_unlabeled_as_distill(config, path)
    check_config(config, task, {"distill": DistillConfig})
    return config, task


def _read_data_unlabeled_as_distill(config: dict[str, Any], path: str | Path) -> None:
    """``data.unlabeled: DIR`` is another spelling of ``distill.unlabeled`` (the folder is the data a student learns
    from, but only distillation can use it); both at once must agree."""
    data = config.get("data")
    if not isinstance(data, dict) or "unlabeled" not in data:
        return
    folder = data.pop("unlabeled")
    distill = config.setdefault("distill", {})
    if not isinstance(distill, dict):
        return  # the config check names the malformed section
    if distill.get("unlabeled") not in (None, folder):
        raise ConfigError(
            f"{path}: data.unlabeled {folder!r} and distill.unlabeled {distill['unlabeled']!r} disagree: give one"
        )
    distill["unlabeled"] = folder
