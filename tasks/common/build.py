"""Put a task together from a checked run config: data module, network, LightningModule; load checkpoints safely.

The tools look the task up (``tasks.registry``) and hand it here with the config; nothing here knows a particular
task.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from backbone import BACKBONES, backbone_normalization, backbone_options
from backbone.weights import unsafe_pickle_reason
from tasks.common.classifier import refuse_model_hub
from tasks.common.config import blame, check_section, parameter_types, signature_keys
from tasks.common.errors import CheckpointError, ConfigError
from tasks.common.module import TaskModule
from tasks.common.optim import OptimizerConfig
from tasks.common.task import Task

__all__ = [
    "TOP_LEVEL_KEYS",
    "check_config",
    "check_trainer",
    "resolve_normalization",
    "model_settings",
    "build_model",
    "build_module",
    "load_run",
    "read_checkpoint",
    "load_checkpoint",
    "refuse_another_task",
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


def model_settings(task: Task, model: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting the network of ``model`` (a ``model:`` section) is built with: each builder argument and, for a
    builder passing them on, each option of its backbone, with its default where the section leaves it out (the
    builder's own default first: SSD's ``activation`` is "relu6" where MobileNetV1's is "relu"). Sequences are
    lists, as YAML gives them. ``image_mean`` / ``image_std`` come from the data and are not among them."""
    builder = _builder(task, model)
    settings: dict[str, Any] = {"name": model.get("name", task.default_model)}
    backbone = _backbone_name(builder, model)
    if _takes_backbone_options(builder) and backbone in BACKBONES:
        settings.update({key: param.default for key, param in backbone_options(backbone).items()})
    for key, param in signature_keys(builder).items():
        if key not in _FROM_DATA and param.default is not inspect.Parameter.empty:
            settings[key] = param.default
    settings.update(model)
    return {key: _as_lists(value) for key, value in settings.items()}


def _as_lists(value: Any) -> Any:
    return [_as_lists(item) for item in value] if isinstance(value, list | tuple) else value


def _set_in(config: Mapping[str, Any], key: str) -> str:
    """Where the run config ``config`` set the dotted ``key``: the override that set it, else its file."""
    return blame(config.get("_source", "config"), key, config.get("_overrides"))


def check_config(
    config: dict[str, Any], task: Task, extra_sections: Mapping[str, Callable[..., Any]] | None = None
) -> None:
    """Check every key of ``config`` against what it maps onto. Raises ConfigError naming the file and the key.

    ``extra_sections`` are optional sections beyond ``TOP_LEVEL_KEYS`` and what each maps onto (``distill``:
    the settings of tools/distill.py, which eval and predict read past).
    """
    source, overrides = config.get("_source", "config"), config.get("_overrides")

    def where(key: str) -> str:
        return _set_in(config, key)

    extra_sections = dict(extra_sections or {})
    allowed = (*TOP_LEVEL_KEYS, *extra_sections)
    for key in config:
        if not key.startswith("_") and key not in allowed:
            raise ConfigError(f"{where(key)}: unknown top-level key {key}; valid keys: {', '.join(allowed)}")
    for key, target in extra_sections.items():
        if key in config:
            if not isinstance(config[key], dict):
                raise ConfigError(f"{where(key)}: {key} must be a mapping, got {config[key]!r}")
            check_section(config[key], target, key, source, overrides=overrides)
    for key in ("seed", "min_steps", "checkpoint_every_n_steps"):
        value = config.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where(key)}: {key} must be an integer >= 0, got {value!r}")
    for section in ("model", "data", "optimizer", "trainer"):
        value = config.setdefault(section, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{where(section)}: {section} must be a mapping, got {value!r}")
    model = config["model"]
    name = model.get("name", task.default_model)
    if name not in task.model_builders:
        raise ConfigError(f"{where('model.name')}: model.name {name!r} is not one of {sorted(task.model_builders)}")
    schema = _model_schema(task, model, where("model.backbone"))
    check_section(model, schema, "model", source, ignore=("name",), overrides=overrides)
    check_section(config["data"], task.datamodule, "data", source, overrides=overrides)
    check_section(config["optimizer"], OptimizerConfig, "optimizer", source, overrides=overrides)
    check_section(config["trainer"], L.Trainer, "trainer", source, overrides=overrides)
    for key in _RUNNER_TRAINER_KEYS:
        if key in config["trainer"]:
            raise ConfigError(f"{where('trainer.' + key)}: trainer.{key} is set by the runner and cannot be configured")


# The trainer settings that choose the hardware: a refusal of Lightning's is blamed on the first of them set.
_HARDWARE_KEYS = ("accelerator", "devices", "strategy", "precision", "num_nodes")


def check_trainer(config: Mapping[str, Any]) -> None:
    """Build a Trainer from the ``trainer:`` section of a checked config and drop it, so that settings Lightning
    refuses (``accelerator: gpu`` on a machine without one, an unknown strategy or precision) are one ConfigError
    before a run directory exists, not a traceback once it does."""
    settings = config["trainer"]
    given = [key for key in _HARDWARE_KEYS if key in settings]
    source = _set_in(config, f"trainer.{given[0]}" if given else "trainer")
    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:  # the device summary ("GPU available: ...") belongs to the real run
            logger.setLevel(logging.WARNING)
        L.Trainer(**{**settings, "logger": False, "enable_checkpointing": False})
    except (MisconfigurationException, ValueError, ImportError) as error:
        if len(given) != 1 or not source.startswith("override "):  # else the override says it already
            source += ": " + (", ".join(f"trainer.{key}={settings[key]!r}" for key in given) or "trainer")
        hint = ""
        no_gpu = isinstance(error, MisconfigurationException) and not torch.cuda.is_available()
        if no_gpu and settings.get("accelerator") not in (None, "auto", "cpu"):
            hint = " (this machine has no GPU: trainer.accelerator=cpu, or auto, which takes a GPU where there is one)"
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConfigError(f"{source}: Lightning refuses it: {message}{hint}") from error
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)


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


def build_model(
    task: Task,
    model_config: Mapping[str, Any],
    data_info: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The network of ``model_config`` (a complete ``model:`` section, ``name`` included), with the input
    normalisation of ``data_info`` when it gives one (checkpoints written before it was saved there do not).

    A value the builder refuses (``width_mult: -1``) is a ConfigError naming where ``config``, the run config the
    section comes from, set it: its file or the override."""
    kwargs = dict(model_config)
    builder = task.model_builders[kwargs.pop("name")]
    accepted = inspect.signature(builder).parameters
    for argument, key in _FROM_DATA.items():
        if argument in accepted and data_info.get(key) is not None:
            kwargs[argument] = list(data_info[key])
    try:
        return builder(**kwargs)
    except ValueError as error:
        if type(error) is not ValueError:  # the toolkit's own errors (ConfigError, DatasetError) name their origin
            raise
        config = config or {}
        key = re.match(r"\w+", str(error))  # "width_mult must be positive, got -1"
        key = key.group() if key is not None and key.group() in model_config else None
        where = _set_in(config, f"model.{key}" if key else "model")
        raise ConfigError(f"{where}: model.{error}" if key else f"{where}: model: {error}") from error


def build_module(task: Task, config: Mapping[str, Any], data_info: Mapping[str, Any]) -> TaskModule:
    """The task's LightningModule around a new network; ``model.num_classes`` left out comes from the data."""
    model_config = dict(config["model"])
    model_config.setdefault("name", task.default_model)
    if model_config.get("num_classes") is None and "num_classes" in data_info:
        if "num_classes" in inspect.signature(task.model_builders[model_config["name"]]).parameters:
            model_config["num_classes"] = data_info["num_classes"]
    network = build_model(task, model_config, data_info, config)
    module = task.module(network, model_config, config["optimizer"], data_info)
    module.hparams["task"] = task.name  # saved in its checkpoints: one of another task is refused naming it
    return module


def load_run(task: Task, config: dict[str, Any]) -> tuple[L.LightningDataModule, TaskModule]:
    """(data module, module) of a checked config; the config's normalisation is resolved in place first."""
    resolve_normalization(task, config)
    datamodule = task.datamodule(**config["data"])
    return datamodule, build_module(task, config, datamodule.data_info())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, read safely (weights only), or a CheckpointError naming the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    foreign = _not_a_torch_file(path)
    if foreign is not None:
        raise CheckpointError(f"{path} is not a checkpoint: {foreign}")
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
            f"cannot read checkpoint {path} (truncated or corrupt?): {type(error).__name__}: {_first_sentence(error)}"
        ) from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint of this toolkit (no state_dict)")
    return checkpoint


def _not_a_torch_file(path: Path) -> str | None:
    """Why ``path`` cannot have been written by ``torch.save`` (a zip archive; before torch 1.6, a pickle), from its
    first bytes; None when it may have been."""
    with path.open("rb") as file:
        head = file.read(4)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):  # a zip archive; a pickle of protocol 2 or more
        return None
    return f"it starts with {head!r}, where a file written by torch.save starts with a zip archive's b'PK\\x03\\x04'"


def _first_sentence(error: BaseException) -> str:
    """The first sentence of an error's message: torch's go on with advice that does not apply here."""
    line = (str(error).strip().splitlines() or [""])[0]
    return re.split(r"\.\s+(?=[A-Z])", line, maxsplit=1)[0].rstrip(".")


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    return value


def refuse_another_task(task: Task, path: str | Path, checkpoint: Mapping[str, Any]) -> None:
    """Refuse a checkpoint (``read_checkpoint``'s) of another task than ``task``, named by the task saved with it or,
    in a checkpoint written before the task was saved, by a ``model.name`` none of ``task``'s builders has."""
    hyper = checkpoint.get("hyper_parameters") or {}
    saved_task, saved_name = hyper.get("task"), (hyper.get("model") or {}).get("name")
    if saved_task is not None and saved_task != task.name:
        raise CheckpointError(
            f"{path} is a {saved_task} checkpoint (task {saved_task}, model.name {saved_name!r}), and this is a "
            f"{task.name} config: use it with the config of the run that wrote it (its config.yaml)"
        )
    if saved_name is not None and saved_name not in task.model_builders:
        raise CheckpointError(
            f"{path} holds a {saved_name!r} model, which is not one of the {task.name} task's "
            f"({', '.join(sorted(task.model_builders))}): a checkpoint of another task? Use it with the config of the "
            "run that wrote it (its config.yaml)"
        )


def _pairs(keys: list[str], saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    return ", ".join(f"model.{key}: checkpoint {saved.get(key)!r} vs config {current.get(key)!r}" for key in keys)


def load_checkpoint(task: Task, module: TaskModule, path: str | Path, checkpoint: dict | None = None) -> dict[str, Any]:
    """Load a checkpoint written by tools/train.py into ``module``, a module of ``task`` (weights only: no code from
    the file runs).

    A checkpoint of another task is refused naming its task. The network's settings must match: the checkpoint's
    and the module's, each resolved by ``model_settings`` (defaults filled in: spelling a default out changes
    nothing), but for the module's ``inference_keys`` (post-processing: the module's own are used) and
    ``training_keys`` (they do not change the trained network; a difference is noted in one line). Its
    ``checkpoint_data_keys`` (class names, ...) must match the data's. A refusal names the differing keys.
    """
    path = Path(path)
    checkpoint = checkpoint if checkpoint is not None else read_checkpoint(path)
    hyper = checkpoint.get("hyper_parameters") or {}
    saved = hyper.get("model") or {}
    refuse_another_task(task, path, checkpoint)
    current: dict[str, Any] = {}
    differing: list[str] = []
    if saved:
        saved, current = model_settings(task, saved), model_settings(task, module.hparams.get("model", {}))
        keys = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
        differing = [key for key in keys if key not in (*module.inference_keys, *module.training_keys)]
        differing.sort(key=lambda k: k != "name")  # model.name first: it tells another architecture
        # Null is "as trained" (backbone_weights, which the checkpoint's weights replace): not worth a line.
        training = [key for key in keys if key in module.training_keys and current.get(key) is not None]
        if training:
            rank_zero_info(f"{path}: its run's training settings differ: {_pairs(training, saved, current)}")
    refused = CheckpointError(
        f"{path} was written for another model: {_pairs(differing, saved, current)} (the run's config.yaml holds "
        "its settings)"
    )
    if "name" in differing:  # another architecture: say so before comparing its classes
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
    which tools/distill.py sizes to the teacher): null means "as trained". ``backbone_weights`` is null: the
    checkpoint's weights replace them, so that file need not exist where the checkpoint is evaluated."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("model") or {}
    filled = {key: saved[key] for key, value in config["model"].items() if value is None and key in saved}
    if "backbone_weights" in config["model"]:
        filled["backbone_weights"] = None
    return {**config, "model": {**config["model"], **filled}} if filled else config


def build_from_checkpoint(task: Task, config: dict[str, Any], checkpoint_path: str | Path) -> TaskModule:
    """The config's model with the checkpoint's weights, its data_info (class list, normalisation) taken from the
    checkpoint: no dataset needed, for prediction on new images."""
    checkpoint = read_checkpoint(Path(checkpoint_path))
    refuse_another_task(task, checkpoint_path, checkpoint)  # before building: its data_info may not suit this task
    data_info = (checkpoint.get("hyper_parameters") or {}).get("data_info")
    if data_info is None:
        raise CheckpointError(f"{checkpoint_path} is not a checkpoint written by tools/train.py (no data_info)")
    module = build_module(task, fill_from_checkpoint(config, checkpoint), data_info)
    load_checkpoint(task, module, checkpoint_path, checkpoint)
    return module


def profile_target(task: Task, config: Mapping[str, Any]) -> tuple[nn.Module, Any, str]:
    """(model in eval mode, the input to call it with, a description) for tools/profile.py CONFIG.

    Needs no dataset. A model section without ``num_classes`` takes the data's class count where the data module
    knows it without reading the dataset (``known_num_classes``: Stanford Dogs' 120 breeds), else the builder's
    default (COCO's 90, ImageNet's 1000); the description says which and why. Any other key left null, such as an
    embedder's ``embedding_dim``, takes the builder's default (FaceNet's 128).
    """
    model_config = {key: value for key, value in config["model"].items() if value is not None}
    model_config.setdefault("name", task.default_model)
    model_config.pop("backbone_weights", None)
    classes = _profiled_classes(task, model_config, config["data"])
    model = build_model(task, model_config, {}, config).eval()
    example, description = task.module.example_input(model, config["model"], config["data"])
    return model, example, f"{model_config['name']}: {description}{classes}"


def _profiled_classes(task: Task, model_config: dict[str, Any], data_config: dict[str, Any]) -> str:
    """Set ``model_config``'s ``num_classes`` where the config leaves it out and the data knows it; return how many
    classes the model will have and why, as a note for the description ("" for a builder without classes)."""
    parameter = inspect.signature(task.model_builders[model_config["name"]]).parameters.get("num_classes")
    if parameter is None:
        return ""
    if "num_classes" in model_config:
        return f", {model_config['num_classes']} classes (model.num_classes)"
    count, why = task.datamodule.known_num_classes(data_config)
    if count is None:
        return f", {parameter.default} classes (the builder's default: {why}; set model.num_classes)"
    model_config["num_classes"] = count
    return f", {count} classes ({why})"
