"""End to end through the shared runner: the identity teacher trains and writes LFW metrics and pictures that
evaluation reproduces; the embedder is refused by training; the shipped configs pass the config check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.common.build import build_from_checkpoint
from tasks.common.errors import ConfigError
from tasks.common.predict import predict_images
from tasks.common.runner import evaluate, train
from tasks.registry import load_task_config

from .conftest import FOLDS, PAIRS_PER_FOLD, TRAIN_IDENTITIES, TRAIN_PICTURES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["face_id_teacher.yaml", "demo_face_id_teacher.yaml"])
def test_shipped_configs_pass_the_config_check(name: str) -> None:
    config, task = load_task_config(CONFIGS / name)

    assert task.name == "face_embedding" and task.module.monitor == "val/lfw_accuracy"
    assert config["model"].get("name", task.default_model) == "identity_classifier"


def _tiny_config(tmp_path: Path, root: Path, model: dict[str, Any]) -> Path:
    config = {
        "task": "face_embedding",
        "seed": 0,
        "model": {"width_mult": 0.25, **model},
        "data": {"root": str(root), "image_size": 32, "batch_size": 4, "num_workers": 0, "flip_eval": True},
        "optimizer": {"name": "adamw", "lr": 0.001},
        "trainer": {
            "max_epochs": 1,  # 3 steps of 4 images
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
    }
    path = tmp_path / "tiny_faces.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_training_an_embedder_is_refused_with_a_pointer_to_distillation(tmp_path: Path, lfw_root: Path) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "embedder", "embedding_dim": 8}))

    with pytest.raises(ConfigError, match="tools/distill.py"):
        train(task, config, out=tmp_path / "run")


@pytest.mark.slow
def test_training_writes_lfw_metrics_and_outputs_that_evaluation_and_prediction_reuse(
    tmp_path: Path, lfw_root: Path
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "identity_classifier"}))

    run_dir = train(task, config, out=tmp_path / "run")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected_keys = {
        "lfw_accuracy",
        "lfw_accuracy_std",
        "tar_at_far_1e-3",
        "tar_at_far_1e-4",
        "tar_at_far_1e-3_reason",
        "tar_at_far_1e-4_reason",
        "num_pairs",
        "num_folds",
        "train_identities",
        "train_size",
    }
    assert expected_keys <= set(metrics)
    assert 0.0 <= metrics["lfw_accuracy"] <= 1.0 and metrics["lfw_accuracy_std"] >= 0.0
    assert (metrics["num_pairs"], metrics["num_folds"]) == (2 * FOLDS * PAIRS_PER_FOLD, FOLDS)
    assert (metrics["train_identities"], metrics["train_size"]) == (TRAIN_IDENTITIES, TRAIN_IDENTITIES * TRAIN_PICTURES)
    assert metrics["tar_at_far_1e-3"] is None and metrics["tar_at_far_1e-3_reason"]
    assert (run_dir / "roc.png").is_file() and (run_dir / "folds.csv").is_file()

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate(task, config, checkpoint, out=tmp_path / "eval") == metrics

    module = build_from_checkpoint(task, config, checkpoint)
    records = predict_images(module, [next((lfw_root / "lfw").iterdir())], tmp_path / "predict")
    assert records and all(len(record["embedding"]) == 256 for record in records)
