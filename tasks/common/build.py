"""Turn a checked run config into a data module and a LightningModule; load checkpoints safely."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from tasks.common.config import ConfigError, check_section, load_config
from tasks.common.optim import OptimizerConfig
from tasks.common.task import Task, get_task

__all__ = [
    "TOP_LEVEL_KEYS",
    "CheckpointError",
    "check_config",
    "build_datamodule",
    "build_module",
    "load_checkpoint",
    "build_from_checkpoint",
    "load_run",
    "profile_target",
]

TOP_LEVEL_KEYS = ("task", "seed", "model", "data", "optimizer", "trainer")
# Trainer arguments the runner sets itself.
_RUNNER_TRAINER_KEYS = ("callbacks", "logger", "default_root_dir", "enable_checkpointing")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or was written for another model."""


def check_config(config: dict[str, Any]) -> Task:
    """Check every key of ``config`` against what it maps onto; return the task. Raises ConfigError."""
    source = config.get("_source", "config")
    if "task" not in config:
        raise ConfigError(f"{source}: missing key task (one of detection, classification)")
    task = get_task(config["task"], source)
    allowed = set(TOP_LEVEL_KEYS) | set(task.extra_sections)
    for key in config:
        if not key.startswith("_") and key not in allowed:
            raise ConfigError(f"{source}: unknown top-level key {key}; valid keys: {', '.join(sorted(allowed))}")
    if not isinstance(config.get("seed", 0), int):
        raise ConfigError(f"{source}: seed must be an integer, got {config['seed']!r}")
    for section in ("model", "data", "optimizer", "trainer"):
        value = config.setdefault(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a mapping, got {value!r}")
    model = config["model"]
    name = model.get("name", task.default_model)
    if name not in task.model_builders:
        raise ConfigError(f"{source}: model.name {name!r} is not one of {sorted(task.model_builders)}")
    check_section(model, task.model_builders[name], "model", source, ignore=("name",))
    check_section(config["data"], task.datamodule, "data", source)
    check_section(config["optimizer"], OptimizerConfig, "optimizer", source)
    check_section(config["trainer"], L.Trainer, "trainer", source)
    for key in _RUNNER_TRAINER_KEYS:
        if key in config["trainer"]:
            raise ConfigError(f"{source}: trainer.{key} is set by the runner and cannot be configured")
    return task


def build_datamodule(task: Task, config: dict[str, Any]) -> L.LightningDataModule:
    return task.datamodule(**config["data"])


def build_module(task: Task, config: dict[str, Any], data_info: dict[str, Any]) -> L.LightningModule:
    """The task's LightningModule; model keys the config leaves out (num_classes) come from the data."""
    model = dict(config["model"])
    model.setdefault("name", task.default_model)
    for key in task.model_defaults_from_data:
        if model.get(key) is None and key in data_info:
            model[key] = data_info[key]
    return task.module(model=model, optimizer=dict(config["optimizer"]), data_info=data_info)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to read is reported with the file name
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
        ) from error


def load_checkpoint(
    module: L.LightningModule,
    path: str | Path,
    checkpoint: dict | None = None,
    inference_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Load a Lightning checkpoint written by tools/train.py into ``module`` (weights only, no unpickling of code).

    The model settings saved in the checkpoint must match the module's: a checkpoint of another architecture,
    width or class list is refused with the differing keys named. ``inference_keys`` (post-processing settings
    such as score thresholds) may differ.
    """
    path = Path(path)
    checkpoint = checkpoint if checkpoint is not None else _read_checkpoint(path)
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this toolkit (no state_dict)")
    saved_info = checkpoint.get("hyper_parameters", {}).get("data_info")
    current_info = module.hparams.get("data_info")
    if saved_info is not None and current_info is not None:
        for key in ("class_names", "label_to_cat_id"):
            if key in saved_info and _normalise(saved_info[key]) != _normalise(current_info.get(key)):
                raise CheckpointError(
                    f"{path} was trained on other classes: data_info.{key} is {saved_info[key]!r} in the checkpoint, "
                    f"{current_info.get(key)!r} in the data"
                )
    saved = checkpoint.get("hyper_parameters", {}).get("model")
    current = dict(module.hparams.get("model", {}))
    if saved is not None:
        may_differ = {"backbone_weights", *inference_keys}
        differing = sorted(
            key for key in (set(saved) | set(current)) - may_differ if saved.get(key) != current.get(key)
        )
        if differing:
            details = ", ".join(
                f"model.{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in differing
            )
            raise CheckpointError(
                f"{path} was written for another model: {details} (the run's config.yaml holds its settings)"
            )
    result = module.load_state_dict(checkpoint["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit the model: missing {result.missing_keys[:10]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:10]} ({len(result.unexpected_keys)})"
        )
    return checkpoint


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def build_from_checkpoint(
    config_path: str | Path, checkpoint_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[Task, L.LightningModule]:
    """The config's model with the checkpoint's weights, its class list taken from the checkpoint (no dataset
    needed: for prediction on new images)."""
    config = load_config(config_path, overrides)
    task = check_config(config)
    checkpoint = _read_checkpoint(Path(checkpoint_path))
    data_info = checkpoint.get("hyper_parameters", {}).get("data_info") if isinstance(checkpoint, dict) else None
    if data_info is None:
        raise CheckpointError(f"{checkpoint_path} is not a checkpoint written by tools/train.py (no data_info)")
    module = build_module(task, config, data_info)
    load_checkpoint(module, checkpoint_path, checkpoint, task.inference_model_keys)
    return task, module


def load_run(
    config_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], Task, L.LightningDataModule, L.LightningModule]:
    config = load_config(config_path, overrides)
    task = check_config(config)
    datamodule = build_datamodule(task, config)
    module = build_module(task, config, datamodule.data_info())
    return config, task, datamodule, module


def profile_target(config_path: str, overrides: list[str]) -> tuple[torch.nn.Module, Any, str]:
    """(model in eval mode, the input to call it with, a description) for tools/profile.py CONFIG.

    Needs no dataset: a model section without ``num_classes`` takes the builder's default (COCO's 90, ImageNet's
    1000), which is what the paper's cost columns count.
    """
    config = load_config(config_path, overrides)
    task = check_config(config)
    kwargs = dict(config["model"])
    name = kwargs.pop("name", task.default_model)
    kwargs.pop("backbone_weights", None)
    model = task.model_builders[name](**kwargs).eval()
    example, description = task.profile_input(model, config)
    return model, example, f"{name}: {description}"
