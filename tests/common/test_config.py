"""Run configs: overrides, unknown keys and wrong types fail naming the key and the file."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from backbone import BACKBONES, BackboneSpec, MobileNetV1Backbone, load_weights
from tasks.common.build import build_module, resolve_normalization
from tasks.common.config import apply_overrides, load_config, parameter_types, signature_keys
from tasks.common.errors import ConfigError
from tasks.common.optim import OptimizerConfig
from tasks.detection.task import TASK as DETECTION
from tasks.registry import TASKS, load_task_config

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
    config_file.write_text(CONFIG.replace("model:\n", "model:\n  widht_mult: 0.5\n"))
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key model.widht_mult \(did you mean width_mult\?\)"):
        load_task_config(config_file)


def test_a_mistake_in_an_override_is_blamed_on_the_override_not_the_file(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^override model.widht_mult=0.5: unknown key model.widht_mult \(did you"):
        load_task_config(config_file, ["model.widht_mult=0.5"])
    with pytest.raises(ConfigError, match=r"^override modle.width_mult=0.5: unknown top-level key modle;"):
        load_task_config(config_file, ["modle.width_mult=0.5"])


def test_a_wrong_type_names_the_types_that_would_do(config_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer.max_epochs must be int or None, got 'abc' \(str\)$"):
        load_task_config(config_file, ["trainer.max_epochs=abc"])


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


@pytest.mark.parametrize("task", ["detection", "classification", "face_attributes", "face_embedding"])
def test_the_data_settings_every_task_shares_are_checked_by_name_and_type(config_file: Path, task: str) -> None:
    # Declared once, on TaskDataModule; each task's data module passes them on through **shared.
    run = [f"task={task}", f"model.name={TASKS[task].default_model}"]
    config, _ = load_task_config(config_file, [*run, "data.max_image_pixels=1000"])
    assert config["data"]["max_image_pixels"] == 1000
    with pytest.raises(ConfigError, match=r"unknown key data\.max_image_pixel \(did you mean max_image_pixels\?\)"):
        load_task_config(config_file, [*run, "data.max_image_pixel=1000"])
    with pytest.raises(ConfigError, match=r"data\.max_image_pixels must be .*got True"):
        load_task_config(config_file, [*run, "data.max_image_pixels=true"])
    with pytest.raises(ConfigError, match=r"data\.val_batch_size must be .*got 2\.5"):
        load_task_config(config_file, [*run, "data.val_batch_size=2.5"])


class _Base:
    def __init__(self, size: int = 1, name: str = "base") -> None:
        pass


class _Forwarding(_Base):
    def __init__(self, rate: float = 0.5, size: int = 2, **rest: object) -> None:
        super().__init__(size=size, **rest)


class _Closed(_Base):
    def __init__(self, rate: float = 0.5) -> None:
        super().__init__()


def test_a_class_passing_kwargs_to_its_base_accepts_the_bases_keys_with_its_own_defaults_first() -> None:
    assert parameter_types(_Forwarding) == {"rate": float, "size": int, "name": str}
    assert signature_keys(_Forwarding)["size"].default == 2
    assert list(signature_keys(_Closed)) == ["rate"]


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


@pytest.mark.parametrize("where", ["file", "override"])
def test_yaml_tags_that_would_build_python_objects_are_refused_and_never_run(
    config_file: Path, tmp_path: Path, where: str
) -> None:
    marker = tmp_path / "marker"
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    if where == "file":
        config_file.write_text(CONFIG + f"extra: {tag}\n")
    overrides = [f"data.root={tag}"] if where == "override" else []

    with pytest.raises(ConfigError, match=r"not valid YAML: line \d+, column \d+: .*python/object/apply:os.system"):
        load_config(config_file, overrides)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("line", "setting", "message"),
    [
        ("  root: data/shapes\n", "  batch_size: true\n", r"data.batch_size must be int, got True \(bool\)"),
        ("  name: sgd\n", "  lr: true\n", r"optimizer.lr must be float, got True \(bool\)"),
        ("seed: 1\n", "min_steps: false\n", r"min_steps must be an integer >= 0, got False"),
    ],
)
def test_booleans_are_neither_integers_nor_floats(config_file: Path, line: str, setting: str, message: str) -> None:
    config_file.write_text(CONFIG.replace(line, line + setting))

    with pytest.raises(ConfigError, match=f"run.yaml: {message}"):
        load_task_config(config_file)


def test_an_integer_is_a_float(config_file: Path) -> None:
    config, _ = load_task_config(config_file, ["optimizer.lr=1"])

    assert OptimizerConfig(**config["optimizer"]).lr == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- task: detection\n- seed: 1\n", "the top level must be a mapping of sections, got list"),
        ("detection\n", "the top level must be a mapping of sections, got str"),
        ("", "missing key task"),
    ],
    ids=["list", "scalar", "empty"],
)
def test_a_top_level_that_is_not_a_mapping_of_sections_is_refused(config_file: Path, text: str, message: str) -> None:
    config_file.write_text(text)

    with pytest.raises(ConfigError, match=f"run.yaml: {message}"):
        load_task_config(config_file)


@pytest.mark.parametrize("where", ["file", "override"])
def test_a_section_that_is_not_a_mapping_is_refused(config_file: Path, where: str) -> None:
    if where == "file":
        config_file.write_text(CONFIG.replace("data:\n  root: data/shapes\n", "data: 3\n"))
    overrides = ["data=3"] if where == "override" else []

    origin = "override data=3" if where == "override" else "run.yaml"
    with pytest.raises(ConfigError, match=f"{origin}: data must be a mapping, got 3"):
        load_task_config(config_file, overrides)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            CONFIG.replace("  width_mult: 0.25\n", "  width_mult: 0.25\n  width_mult: 0.5\n"),
            "model.width_mult on line 6",
        ),
        (CONFIG + "trainer:\n  max_epochs: 3\n", "trainer on line 12 \\(first on line 10\\)"),
    ],
    ids=["in a section", "a section"],
)
def test_a_key_given_twice_is_refused_naming_it_and_its_line(config_file: Path, text: str, message: str) -> None:
    config_file.write_text(text)

    with pytest.raises(ConfigError, match=f"run.yaml: not valid YAML: duplicate key {message}"):
        load_config(config_file)


def test_merge_keys_may_override_what_they_merge(config_file: Path) -> None:
    config_file.write_text(CONFIG + "defaults: &d {max_epochs: 1, min_epochs: 1}\nother:\n  <<: *d\n  max_epochs: 3\n")

    assert load_config(config_file)["other"] == {"max_epochs": 3, "min_epochs": 1}


@pytest.mark.parametrize(
    "name", ["hf-hub:timm/mobilenetv3_large_100.ra_in1k", "hf_hub:timm/resnet10t", "timm/resnet10t", "local-dir:/m"]
)
def test_a_timm_name_that_would_reach_a_model_hub_is_refused_by_the_config_check(
    config_file: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(*args: object) -> None:
        raise AssertionError("the config check opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", offline)
    overrides = ["task=classification", "model.name=classifier", f"model.backbone=timm:{name}"]

    origin = re.escape(f"override model.backbone=timm:{name}")
    with pytest.raises(ConfigError, match=f"{origin}: model.backbone timm:{re.escape(name)} names a model hub"):
        load_task_config(config_file, overrides)


@pytest.mark.parametrize("override", ["model.width_mult", "=0.5", "model..width_mult=0.5", ".seed=1", "model.=1"])
def test_a_malformed_override_is_refused_naming_it(config_file: Path, override: str) -> None:
    with pytest.raises(ConfigError, match=f"command line: override {re.escape(repr(override))} is not of the form"):
        load_task_config(config_file, [override])
