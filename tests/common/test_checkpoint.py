"""Checkpoints are read safely and refused, naming the difference, when they do not fit the config or the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tasks.classification.task import TASK as CLASSIFICATION
from tasks.common.build import build_module, load_checkpoint
from tasks.common.errors import CheckpointError
from tasks.common.module import TaskModule
from tasks.detection.task import TASK as DETECTION

NAMES = ["a", "b", "c"]


def _classifier(width_mult: float = 0.25, names: list[str] = NAMES) -> TaskModule:
    config = {"model": {"name": "classifier", "width_mult": width_mult}, "optimizer": {}}
    return build_module(CLASSIFICATION, config, {"class_names": names, "num_classes": len(names)})


def _ssd(**model: Any) -> TaskModule:
    config = {"model": {"width_mult": 0.25, "image_size": 64, **model}, "optimizer": {}}
    info = {"class_names": ["cat", "dog"], "num_classes": 2, "label_to_cat_id": {1: 3, 2: 8}}
    return build_module(DETECTION, config, info)


def _save(module: TaskModule, path: Path) -> Path:
    hyper = {key: dict(value) for key, value in module.hparams.items()}
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hyper}, path)
    return path


def test_a_checkpoint_of_the_same_model_loads_its_weights(tmp_path: Path) -> None:
    trained = _classifier()
    with torch.no_grad():
        trained.model.network.fc.bias.fill_(0.5)
    fresh = _classifier()

    load_checkpoint(fresh, _save(trained, tmp_path / "c.ckpt"))

    assert torch.equal(fresh.model.network.fc.bias, torch.full((3,), 0.5))


def test_a_checkpoint_of_another_width_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _save(_classifier(width_mult=0.5), tmp_path / "c.ckpt")

    with pytest.raises(CheckpointError, match=r"model.width_mult: checkpoint 0.5 vs config 0.25"):
        load_checkpoint(_classifier(width_mult=0.25), path)


def test_a_checkpoint_trained_on_other_classes_is_refused(tmp_path: Path) -> None:
    path = _save(_classifier(names=["x", "y", "z"]), tmp_path / "c.ckpt")

    with pytest.raises(CheckpointError, match="other classes: data_info.class_names"):
        load_checkpoint(_classifier(names=NAMES), path)


def test_post_processing_settings_may_differ_from_the_training_run(tmp_path: Path) -> None:
    path = _save(_ssd(nms_threshold=0.6), tmp_path / "d.ckpt")

    load_checkpoint(_ssd(nms_threshold=0.3), path)
    with pytest.raises(CheckpointError, match="model.iou_threshold"):
        load_checkpoint(_ssd(iou_threshold=0.4), path)


def test_detection_category_ids_must_agree(tmp_path: Path) -> None:
    path = _save(_ssd(), tmp_path / "d.ckpt")
    module = _ssd()
    module.hparams["data_info"]["label_to_cat_id"] = {1: 3, 2: 9}

    with pytest.raises(CheckpointError, match="label_to_cat_id"):
        load_checkpoint(module, path)


def test_a_missing_checkpoint_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope.ckpt"):
        load_checkpoint(_classifier(), tmp_path / "nope.ckpt")


def test_a_truncated_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = _save(_classifier(), tmp_path / "c.ckpt")
    path.write_bytes(path.read_bytes()[:1000])

    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*c.ckpt"):
        load_checkpoint(_classifier(), path)


def test_a_plain_state_dict_is_not_taken_for_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(_classifier().state_dict(), path)

    with pytest.raises(CheckpointError, match="not a Lightning checkpoint"):
        load_checkpoint(_classifier(), path)


def test_a_checkpoint_of_another_task_does_not_fit(tmp_path: Path) -> None:
    detector = _ssd()
    hyper = {"model": dict(_classifier().hparams["model"]), "data_info": {"class_names": NAMES}}
    path = tmp_path / "d.ckpt"
    torch.save({"state_dict": detector.state_dict(), "hyper_parameters": hyper}, path)

    with pytest.raises(CheckpointError, match="does not fit the model: missing"):
        load_checkpoint(_classifier(), path)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Path}}, path)  # a class object: outside the allow-list

    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(_classifier(), path)
