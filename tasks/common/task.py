"""What a task gives the shared pipeline: one ``Task`` value, registered by one line in ``tasks/registry.py``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from tasks.common.data import TaskDataModule
from tasks.common.module import TaskModule

__all__ = ["Task"]


@dataclass(frozen=True)
class Task:
    """A task's pieces, which the shared builder (``tasks.common.build``) and runner put together.

    Attributes:
        name: what a config's ``task:`` key says.
        datamodule: takes the ``data:`` section as keyword arguments; its ``data_info()`` tells the module what it
            must know of the data.
        module: the ``TaskModule`` subclass: its hooks say how to train, evaluate and predict.
        model_builders: ``model.name`` -> builder; the ``model:`` section's other keys are the builder's arguments
            (and, for a builder taking ``**backbone_options``, the chosen backbone's). Builders take
            ``image_mean`` / ``image_std`` (the resolved input normalisation) and, where the data decides it,
            ``num_classes``.
        default_model: the builder used when the config gives no ``model.name``.
    """

    name: str
    datamodule: type[TaskDataModule]
    module: type[TaskModule]
    model_builders: Mapping[str, Callable[..., nn.Module]]
    default_model: str
