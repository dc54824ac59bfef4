"""Validation metrics counted once per image, the run-directory outputs, and predictions.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from tasks.classification.module import (
    ClassificationModule,
    classification_metrics,
    plot_confusion_matrix,
    write_per_class_accuracy,
)
from tasks.classification.task import TASK
from tasks.common.build import build_module
from tasks.common.errors import ConfigError
from tasks.common.predict import predict_images


def _module(num_classes: int, **model: object) -> ClassificationModule:
    names = [f"class_{i}" for i in range(num_classes)]
    data_info = {"class_names": names, "num_classes": num_classes, "image_size": 32, "train_size": 8, "val_size": 4}
    config = {"model": {"name": "classifier", "num_classes": num_classes, "width_mult": 0.25, **model}, "optimizer": {}}
    return build_module(TASK, config, data_info)


def test_validation_results_of_all_images_give_the_metrics_and_the_run_keys() -> None:
    module = _module(num_classes=3)
    results = {0: (1, [1, 0, 2]), 1: (2, [0, 2, 1]), 2: (0, [0, 1, 2])}

    metrics = module.compute_metrics(results)

    assert metrics == {"top1": 0.6667, "top5": None, "num_classes": 3, "train_size": 8, "val_size": 4, "num_images": 3}


def test_top1_and_top5_count_the_label_among_the_first_one_and_five() -> None:
    labels = torch.tensor([0, 1, 2, 3])
    topk = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [5, 6, 7, 8, 2], [5, 6, 7, 8, 9]])

    metrics, confusion = classification_metrics(labels, topk, num_classes=10)

    assert metrics == {"top1": 0.25, "top5": 0.75, "num_images": 4}
    assert confusion.shape == (10, 10) and confusion[1, 0] == 1 and confusion.trace() == 1


def test_top5_is_null_with_fewer_than_five_classes() -> None:
    metrics, _ = classification_metrics(torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [0, 1, 2]]), num_classes=3)

    assert metrics["top1"] == 0.5 and metrics["top5"] is None


def test_per_class_accuracy_csv_and_confusion_picture(tmp_path: Path) -> None:
    confusion = torch.tensor([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
    names = ["Chihuahua", "Shih-Tzu", "basset"]

    write_per_class_accuracy(confusion, names, tmp_path / "per_class_accuracy.csv")
    plot_confusion_matrix(confusion, names, tmp_path / "confusion_matrix.png")

    rows = list(csv.DictReader(open(tmp_path / "per_class_accuracy.csv")))
    assert [r["class_name"] for r in rows] == names
    assert [(r["support"], r["correct"], r["accuracy"]) for r in rows] == [
        ("4", "3", "0.7500"),
        ("2", "2", "1.0000"),
        ("0", "0", ""),
    ]
    assert Image.open(tmp_path / "confusion_matrix.png").format == "PNG"


def test_a_model_num_classes_that_contradicts_the_data_is_refused() -> None:
    data_info = {"class_names": ["a", "b"], "num_classes": 2}
    config = {"model": {"name": "classifier", "num_classes": 3, "width_mult": 0.25}, "optimizer": {}}
    with pytest.raises(ConfigError, match="num_classes"):
        build_module(TASK, config, data_info)


def test_predict_writes_the_top_classes_of_each_image(tmp_path: Path) -> None:
    module = _module(num_classes=3)
    for index in range(3):
        Image.new("RGB", (40 + index, 30), (index * 80, 100, 50)).save(tmp_path / f"image_{index}.png")

    records = predict_images(module, [tmp_path], tmp_path / "out")

    assert not list((tmp_path / "out").glob("*.jpg"))  # a classifier draws no pictures
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved == records and len(records) == 3
    for record in records:
        assert record["file"].endswith(".png")
        assert len(record["top5"]) == 3  # fewer than 5 classes
        assert {entry["class"] for entry in record["top5"]} == {"class_0", "class_1", "class_2"}
        scores = [entry["score"] for entry in record["top5"]]
        assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3


def _module_under(strategy, freeze_backbone_epochs: int) -> ClassificationModule:
    import lightning as L

    module = _module(num_classes=3, freeze_backbone_epochs=freeze_backbone_epochs)
    module.trainer = L.Trainer(accelerator="cpu", devices=1, strategy=strategy, logger=False)
    return module


def test_a_frozen_backbone_under_plain_ddp_is_refused_before_training_with_the_fix() -> None:
    from lightning.pytorch.strategies import DDPStrategy

    with pytest.raises(ConfigError, match="ddp_find_unused_parameters_true"):
        _module_under(DDPStrategy(), freeze_backbone_epochs=1).setup("fit")
    _module_under(DDPStrategy(find_unused_parameters=True), freeze_backbone_epochs=1).setup("fit")
    _module_under(DDPStrategy(), freeze_backbone_epochs=0).setup("fit")
