"""Put a task together from a checked run config: data module, network, LightningModule; load checkpoints safely.

The tools look the task up (``tasks.registry``) and hand it here with the config; nothing here knows a particular
task.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn

from backbone import BACKBONES, backbone_normalization, backbone_options
from backbone.weights import unsafe_pickle_reason
from tasks.common.classifier import refuse_model_hub
from tasks.common.config import check_section, parameter_types, signature_keys
from tasks.common.errors import CheckpointError, ConfigError
from tasks.common.module import TaskModule
from tasks.common.optim import OptimizerConfig
from tasks.common.task import Task

__all__ = [
    "TOP_LEVEL_KEYS",
    "check_config",
    "resolve_normalization",
    "build_model",
    "build_module",
    "load_run",
    "read_checkpoint",
    "load_checkpoint",
    "build_from_checkpoint",
    "profile_target",
]

TOP_LEVEL_KEYS = ("task", "seed", "min_steps", "checkpoint_every_n_steps", "model", "data", "optimizer", "trainer")
# Trainer arguments the runner sets itself.
_RUNNER_TRAINER_KEYS = ("callbacks", "logger", "default_root_dir", "enable_checkpointing")
# Builder arguments that come from the data section (resolved input normalisation), never from model:.
_FROM_DATA = {"image_mean": "mean", "image_std": "std"}


def _builder(task: Task, model: Mapping[str, Any]) -> Callable[..., nn.Module]:
    return task.model_builders[model.get("name", task.default_model)]


def _takes_backbone_options(builder: Callable[..., nn.Module]) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())


def _backbone_name(builder: Callable[..., nn.Module], model: Mapping[str, Any]) -> str | None:
    parameter = inspect.signature(builder).parameters.get("backbone")
    if parameter is None:
        return None
    return model.get("backbone", parameter.default)


def _model_schema(task: Task, model: Mapping[str, Any], source: str) -> dict[str, Any]:
    """{key the model: section may set: its annotation}: the builder's arguments, and the backbone's options when
    the builder passes them on (``**backbone_options``)."""
    builder = _builder(task, model)
    schema = parameter_types(builder, exclude=tuple(_FROM_DATA))
    name = _backbone_name(builder, model)
    if _takes_backbone_options(builder) and name in BACKBONES:
        schema.update({key: param.annotation for key, param in backbone_options(name).items()})
    elif not isinstance(name, str | None):
        raise ConfigError(f"{source}: model.backbone must be a string, got {name!r}")
    elif name is not None:
        refuse_model_hub(name, f"{source}: model.backbone")
    return schema


def check_config(
    config: dict[str, Any], task: Task, extra_sections: Mapping[str, Callable[..., Any]] | None = None
) -> None:
    """Check every key of ``config`` against what it maps onto. Raises ConfigError naming the file and the key.

    ``extra_sections`` are optional sections beyond ``TOP_LEVEL_KEYS`` and what each maps onto (``distill``:
    the settings of tools/distill.py, which eval and predict read past).
    """
    source = config.get("_source", "config")
    extra_sections = dict(extra_sections or {})
    allowed = (*TOP_LEVEL_KEYS, *extra_sections)
    for key in config:
        if not key.startswith("_") and key not in allowed:
            raise ConfigError(f"{source}: unknown top-level key {key}; valid keys: {', '.join(allowed)}")
    for key, target in extra_sections.items():
        if key in config:
            if not isinstance(config[key], dict):
                raise ConfigError(f"{source}: {key} must be a mapping, got {config[key]!r}")
            check_section(config[key], target, key, source)
    for key in ("seed", "min_steps", "checkpoint_every_n_steps"):
        value = config.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{source}: {key} must be an integer >= 0, got {value!r}")
    for section in ("model", "data", "optimizer", "trainer"):
        value = config.setdefault(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {section} must be a mapping, got {value!r}")
    model = config["model"]
    name = model.get("name", task.default_model)
    if name not in task.model_builders:
        raise ConfigError(f"{source}: model.name {name!r} is not one of {sorted(task.model_builders)}")
    check_section(model, _model_schema(task, model, source), "model", source, ignore=("name",))
    check_section(config["data"], task.datamodule, "data", source)
    check_section(config["optimizer"], OptimizerConfig, "optimizer", source)
    check_section(config["trainer"], L.Trainer, "trainer", source)
    for key in _RUNNER_TRAINER_KEYS:
        if key in config["trainer"]:
            raise ConfigError(f"{source}: trainer.{key} is set by the runner and cannot be configured")


def resolve_normalization(task: Task, config: dict[str, Any]) -> None:
    """Fill ``data.mean`` / ``data.std`` that the config leaves out with the chosen backbone's own normalisation, so
    that the values used are saved with the run. A network the backbone registry does not know (``timm:NAME``)
    keeps None: its builder takes the network's own."""
    data = config["data"]
    names = signature_keys(task.datamodule)
    if "mean" not in names or (data.get("mean") is not None and data.get("std") is not None):
        return
    name = _backbone_name(_builder(task, config["model"]), config["model"]) or "mobilenet_v1"
    if name not in BACKBONES:
        return
    mean, std = backbone_normalization(name)
    if data.get("mean") is None:
        data["mean"] = [float(v) for v in mean]
    if data.get("std") is None:
        data["std"] = [float(v) for v in std]


def build_model(task: Task, model_config: Mapping[str, Any], data_info: Mapping[str, Any]) -> nn.Module:
    """The network of ``model_config`` (a complete ``model:`` section, ``name`` included), with the input
    normalisation of ``data_info`` when it gives one (checkpoints written before it was saved there do not)."""
    kwargs = dict(model_config)
    builder = task.model_builders[kwargs.pop("name")]
    accepted = inspect.signature(builder).parameters
    for argument, key in _FROM_DATA.items():
        if argument in accepted and data_info.get(key) is not None:
            kwargs[argument] = list(data_info[key])
    return builder(**kwargs)


def build_module(task: Task, config: Mapping[str, Any], data_info: Mapping[str, Any]) -> TaskModule:
    """The task's LightningModule around a new network; ``model.num_classes`` left out comes from the data."""
    model_config = dict(config["model"])
    model_config.setdefault("name", task.default_model)
    if model_config.get("num_classes") is None and "num_classes" in data_info:
        if "num_classes" in inspect.signature(task.model_builders[model_config["name"]]).parameters:
            model_config["num_classes"] = data_info["num_classes"]
    network = build_model(task, model_config, data_info)
    return task.module(network, model_config, config["optimizer"], data_info)


def load_run(task: Task, config: dict[str, Any]) -> tuple[L.LightningDataModule, TaskModule]:
    """(data module, module) of a checked config; the config's normalisation is resolved in place first."""
    resolve_normalization(task, config)
    datamodule = task.datamodule(**config["data"])
    return datamodule, build_module(task, config, datamodule.data_info())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, read safely (weights only), or a CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to read is reported with the file name
        reason = unsafe_pickle_reason(error)
        if reason is not None:  # torch's own message goes on to explain how to load the file unsafely
            raise CheckpointError(
                f"{path}: refused: its pickle would import or call {reason}, which safe (weights-only) loading does "
                "not allow; nothing from it was run"
            ) from error
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated, or not a torch file?): {type(error).__name__}: "
            f"{(str(error).splitlines() or [''])[0][:300]}"
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this toolkit (no state_dict)")
    return checkpoint


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def load_checkpoint(module: TaskModule, path: str | Path, checkpoint: dict | None = None) -> dict[str, Any]:
    """Load a checkpoint written by tools/train.py into ``module`` (weights only: no code from the file runs).

    The model settings saved in the checkpoint must match the module's, and its ``checkpoint_data_keys`` (class
    names, ...) the data's: a checkpoint of another architecture, width or class list is refused with the
    differing keys named. The module's ``inference_keys`` (post-processing settings) may differ.
    """
    path = Path(path)
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path)
    hyper = checkpoint.get("hyper_parameters") or {}
    saved = hyper.get("model") or {}
    current = dict(module.hparams.get("model", {}))
    may_differ = {"backbone_weights", *module.inference_keys}
    differing = [k for k in (set(saved) | set(current)) - may_differ if saved.get(k) != current.get(k)] if saved else []
    differing.sort(key=lambda k: (k != "name", k))  # model.name first: it tells another task or architecture
    details = ", ".join(f"model.{k}: checkpoint {saved.get(k)!r} vs config {current.get(k)!r}" for k in differing)
    refused = CheckpointError(
        f"{path} was written for another model: {details} (the run's config.yaml holds its settings)"
    )
    if "name" in differing:  # another task or architecture: say so before comparing its classes
        raise refused
    saved_info, current_info = hyper.get("data_info"), module.hparams.get("data_info")
    if saved_info is not None and current_info is not None:
        for key in module.checkpoint_data_keys:
            if key in saved_info and _normalise(saved_info[key]) != _normalise(current_info.get(key)):
                raise CheckpointError(
                    f"{path} was trained on other classes: data_info.{key} is {saved_info[key]!r} in the checkpoint, "
                    f"{current_info.get(key)!r} in the data"
                )
    if differing:
        raise refused
    try:
        result = module.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as error:  # shapes that differ although the saved settings agree (a hand-made file)
        first = str(error).splitlines()[1:2] or [str(error)]
        raise CheckpointError(f"{path} does not fit the model: {first[0].strip()[:300]}") from error
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit the model: missing {result.missing_keys[:10]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:10]} ({len(result.unexpected_keys)})"
        )
    return checkpoint


def fill_from_checkpoint(config: dict[str, Any], checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each model setting it leaves null taken from the checkpoint (an embedder's ``embedding_dim``,
    which tools/distill.py sizes to the teacher): null means "as trained"."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("model") or {}
    filled = {key: saved[key] for key, value in config["model"].items() if value is None and key in saved}
    return {**config, "model": {**config["model"], **filled}} if filled else config


def build_from_checkpoint(task: Task, config: dict[str, Any], checkpoint_path: str | Path) -> TaskModule:
    """The config's model with the checkpoint's weights, its data_info (class list, normalisation) taken from the
    checkpoint: no dataset needed, for prediction on new images."""
    checkpoint = read_checkpoint(Path(checkpoint_path))
    data_info = (checkpoint.get("hyper_parameters") or {}).get("data_info")
    if data_info is None:
        raise CheckpointError(f"{checkpoint_path} is not a checkpoint written by tools/train.py (no data_info)")
    module = build_module(task, fill_from_checkpoint(config, checkpoint), data_info)
    load_checkpoint(module, checkpoint_path, checkpoint)
    return module


def profile_target(task: Task, config: Mapping[str, Any]) -> tuple[nn.Module, Any, str]:
    """(model in eval mode, the input to call it with, a description) for tools/profile.py CONFIG.

    Needs no dataset: a model section without ``num_classes`` (or any other key left null, such as an embedder's
    ``embedding_dim``) takes the builder's default (COCO's 90, ImageNet's 1000, FaceNet's 128), which is what the
    paper's cost columns count.
    """
    model_config = {key: value for key, value in config["model"].items() if value is not None}
    model_config.setdefault("name", task.default_model)
    model_config.pop("backbone_weights", None)
    model = build_model(task, model_config, {}).eval()
    example, description = task.module.example_input(model, config["model"], config["data"])
    return model, example, f"{model_config['name']}: {description}"
