"""End to end through the shared runner: train, metrics.json, outputs, then evaluation and prediction of the
checkpoint; and the shipped configs pass the config check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.common.build import build_from_checkpoint
from tasks.common.predict import predict_images
from tasks.common.runner import evaluate, train
from tasks.registry import load_task_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLASSIFICATION_CONFIGS = [
    "imagenet_mnv1.yaml",
    "dogs_mnv1_224.yaml",
    "dogs_mnv075_224.yaml",
    "dogs_mnv1_192.yaml",
    "dogs_mnv075_192.yaml",
    "demo_dogs.yaml",
]


@pytest.mark.parametrize("name", CLASSIFICATION_CONFIGS)
def test_shipped_configs_pass_the_config_check(name: str) -> None:
    _, task = load_task_config(CONFIGS / name)

    assert task.name == "classification" and task.module.monitor == "val/top1"


def _tiny_config(tmp_path: Path, dogs_root: Path) -> Path:
    config = {
        "task": "classification",
        "seed": 0,
        "model": {"name": "classifier", "width_mult": 0.25, "freeze_backbone_epochs": 1},
        "data": {
            "root": str(dogs_root),
            "layout": "stanford_dogs",
            "image_size": 32,
            "batch_size": 8,
            "num_workers": 0,
        },
        "optimizer": {"name": "rmsprop", "lr": 0.01},
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
    }
    path = tmp_path / "tiny_dogs.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_training_writes_metrics_and_outputs_that_evaluation_and_prediction_reuse(
    tmp_path: Path, dogs_root: Path
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root))

    run_dir = train(task, config, out=tmp_path / "run")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"top1", "top5", "num_classes", "train_size", "val_size"} <= set(metrics)
    assert (metrics["num_classes"], metrics["train_size"], metrics["val_size"]) == (5, 15, 10)
    assert 0.0 <= metrics["top1"] <= metrics["top5"] <= 1.0
    assert (run_dir / "per_class_accuracy.csv").is_file() and (run_dir / "confusion_matrix.png").is_file()

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate(task, config, checkpoint, out=tmp_path / "eval") == metrics

    module = build_from_checkpoint(task, config, checkpoint)
    records = predict_images(module, [dogs_root / "Images" / "n02086240-Shih-Tzu"], tmp_path / "predict")
    assert len(records) == 5 and all(len(r["top5"]) == 5 for r in records)
