"""Run configs: overrides, unknown keys and wrong types fail naming the key and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.common.build import check_config
from tasks.common.config import ConfigError, apply_overrides, load_config

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
    task = check_config(load_config(config_file))
    assert task.name == "detection"


def test_unknown_model_key_is_named_with_a_suggestion(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key model.widht_mult \(did you mean width_mult\?\)"):
        check_config(load_config(config_file, ["model.widht_mult=0.5"]))


def test_unknown_trainer_key_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key trainer.max_epoch "):
        check_config(load_config(config_file, ["trainer.max_epoch=3"]))


def test_unknown_top_level_key_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="unknown top-level key modle"):
        check_config(load_config(config_file, ["modle.x=1"]))


def test_wrong_type_is_named(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"model.width_mult must be float, got 'wide'"):
        check_config(load_config(config_file, ["model.width_mult=wide"]))


def test_unknown_optimizer_name_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="optimizer.name"):
        check_config(load_config(config_file, ["optimizer.name=lamb"]))


def test_unknown_model_name_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="model.name 'yolo'"):
        check_config(load_config(config_file, ["model.name=yolo"]))


def test_malformed_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["model.width_mult"])


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_runner_owned_trainer_key_is_rejected(config_file: Path) -> None:
    with pytest.raises(ConfigError, match="trainer.logger is set by the runner"):
        check_config(load_config(config_file, ["trainer.logger=false"]))
