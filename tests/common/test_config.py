"""Run configs: overrides, unknown keys and wrong types fail naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from backbone import BACKBONES, BackboneSpec, MobileNetV1Backbone, load_weights
from tasks.common.build import build_module, resolve_normalization
from tasks.common.config import apply_overrides, load_config
from tasks.common.errors import ConfigError
from tasks.detection.task import TASK as DETECTION
from tasks.registry import load_task_config

CONFIG = """\
task: detection
seed: 1
model:
  name: ssd300_mobilenet_v1
  width_mult: 0.25
data:
  root: data/shapes
optimizer:
  name: sgd
trainer:
  max_epochs: 2
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(CONFIG)
    return path


def test_overrides_set_nested_values_parsed_as_yaml(config_file: Path) -> None:
    config = load_config(config_file, ["model.width_mult=0.5", "trainer.max_epochs=1", "data.root=/x"])
    assert config["model"]["width_mult"] == 0.5
    assert config["trainer"]["max_epochs"] == 1
    assert config["data"]["root"] == "/x"


def test_valid_config_passes_the_check(config_file: Path) -> None:
    _, task = load_task_config(config_file)
    assert task.name == "detection"


def test_unknown_model_key_is_named_with_a_suggestion(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key model.widht_mult \(did you mean width_mult\?\)"):
        load_task_config(config_file, ["model.widht_mult=0.5"])


def test_unknown_trainer_key_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key trainer.max_epoch "):
        load_task_config(config_file, ["trainer.max_epoch=3"])


def test_unknown_top_level_key_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown top-level key modle"):
        load_task_config(config_file, ["modle.x=1"])


def test_wrong_type_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.width_mult must be float, got 'wide'"):
        load_task_config(config_file, ["model.width_mult=wide"])


def test_unknown_optimizer_name_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="optimizer.name"):
        load_task_config(config_file, ["optimizer.name=lamb"])


def test_unknown_model_name_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="model.name 'yolo'"):
        load_task_config(config_file, ["model.name=yolo"])


def test_malformed_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["model.width_mult"])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_runner_owned_trainer_key_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="trainer.logger is set by the runner"):
        load_task_config(config_file, ["trainer.logger=false"])


def test_backbone_keys_are_checked_against_the_chosen_backbone(config_file: Path) -> None:
    _, task = load_task_config(config_file, ["model.separable=false", "model.activation=relu"])
    assert task.name == "detection"
    with pytest.raises(ConfigError, match=r"model.activation must be one of 'relu', 'relu6', got 'gelu'"):
        load_task_config(config_file, ["model.activation=gelu"])


def test_a_backbone_key_that_does_not_apply_to_the_chosen_network_is_refused(config_file: Path) -> None:
    overrides = ["task=classification", "model.name=classifier", "model.backbone=timm:resnet10t"]
    with pytest.raises(ConfigError, match="unknown key model.width_mult"):
        load_task_config(config_file, overrides)


def test_normalisation_is_a_data_setting_not_a_model_one(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key model.image_mean"):
        load_task_config(config_file, ["model.image_mean=[0.4, 0.4, 0.4]"])


def test_a_negative_min_steps_is_refused(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="min_steps must be an integer >= 0, got -5"):
        load_task_config(config_file, ["min_steps=-5"])


class _GreyBackbone(MobileNetV1Backbone):
    mean = (0.25, 0.25, 0.25)
    std = (0.125, 0.125, 0.125)


@pytest.fixture
def grey_backbone(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BACKBONES, "grey", BackboneSpec(_GreyBackbone, load_weights))
    return "grey"


def test_the_chosen_backbones_normalisation_fills_the_data_section(config_file: Path, grey_backbone: str) -> None:
    config, task = load_task_config(config_file, [f"model.backbone={grey_backbone}"])

    resolve_normalization(task, config)

    assert config["data"]["mean"] == [0.25, 0.25, 0.25] and config["data"]["std"] == [0.125, 0.125, 0.125]


def test_a_data_normalisation_overrides_the_backbones(config_file: Path, grey_backbone: str) -> None:
    config, task = load_task_config(config_file, [f"model.backbone={grey_backbone}", "data.mean=[0.4, 0.5, 0.6]"])

    resolve_normalization(task, config)

    assert config["data"]["mean"] == [0.4, 0.5, 0.6] and config["data"]["std"] == [0.125, 0.125, 0.125]


def test_the_resolved_normalisation_reaches_the_model(grey_backbone: str) -> None:
    info = {"class_names": ["a", "b"], "num_classes": 2, "label_to_cat_id": {1: 1, 2: 2}, "mean": [0.4, 0.5, 0.6]}
    config = {"model": {"backbone": grey_backbone, "width_mult": 0.25, "image_size": 64}, "optimizer": {}}

    module = build_module(DETECTION, config, info)

    assert module.model.transform.image_mean == [0.4, 0.5, 0.6]
    assert module.model.transform.image_std == [0.125, 0.125, 0.125]  # not in data_info: the backbone's


def test_scientific_notation_without_a_dot_is_a_float_in_files_and_overrides(config_file: Path) -> None:
    config_file.write_text(CONFIG.replace("  name: sgd\n", "  name: sgd\n  lr: 3e-4\n  weight_decay: 4E-5\n"))

    config, _ = load_task_config(config_file)  # the schema check accepts them as the floats they are
    overridden, _ = load_task_config(config_file, ["optimizer.lr=1e-3", "data.root=1e3d"])

    assert (config["optimizer"]["lr"], config["optimizer"]["weight_decay"]) == (3e-4, 4e-5)
    assert overridden["optimizer"]["lr"] == 1e-3 and overridden["data"]["root"] == "1e3d"


def test_yaml_tags_that_would_build_python_objects_are_refused(config_file: Path) -> None:
    config_file.write_text(CONFIG + "extra: !!python/object/apply:os.system ['echo hacked']\n")

    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_file)
