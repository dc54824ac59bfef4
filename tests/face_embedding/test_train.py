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
from tasks.distillation.runner import distill
from tasks.registry import TASKS, load_task_config

from .conftest import FOLDS, PAIRS_PER_FOLD, TRAIN_IDENTITIES, TRAIN_PICTURES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["face_id_teacher.yaml", "demo_face_id_teacher.yaml"])
def test_shipped_configs_pass_the_config_check(name: str) -> None:
    config, task = load_task_config(CONFIGS / name)

    assert task.name == "face_embedding" and task.module.monitor == "val/lfw_accuracy"
    assert config["model"].get("name", task.default_model) == "identity_classifier"


@pytest.mark.parametrize(
    "name",
    ["demo_face_embed_distill.yaml"]
    + [f"face_embed_distill_{row}.yaml" for row in ("mnv1_160", "mnv1_128", "mnv075_160", "mnv075_128")],
)
def test_shipped_student_configs_are_embedders_sized_by_their_teacher(name: str) -> None:
    config, task = load_task_config(CONFIGS / name)

    assert task.name == "face_embedding" and config["model"]["name"] == "embedder"
    assert config["model"]["embedding_dim"] is None and "distill" in config


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


@pytest.fixture(scope="module")
def identity_run(tmp_path_factory: pytest.TempPathFactory, lfw_root: Path) -> Path:
    """A tiny identity teacher trained once by the shared runner: its run directory."""
    tmp_path = tmp_path_factory.mktemp("identity")
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "identity_classifier"}))
    return train(task, config, out=tmp_path / "run")


@pytest.mark.slow
def test_a_rerun_with_the_same_seed_ends_with_the_same_weights_and_metrics(
    identity_run: Path, lfw_root: Path, tmp_path: Path, assert_same_run
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "identity_classifier"}))

    assert_same_run(identity_run, train(task, config, out=tmp_path / "run"))


@pytest.mark.slow
def test_training_writes_lfw_metrics_and_outputs_that_evaluation_and_prediction_reuse(
    tmp_path: Path, lfw_root: Path, identity_run: Path
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "identity_classifier"}))
    run_dir = identity_run

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


@pytest.mark.slow
def test_an_embedder_distilled_from_the_identity_teacher_takes_its_embedding_size(
    tmp_path: Path, lfw_root: Path, identity_run: Path
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, lfw_root, {"name": "embedder", "width_mult": 0.125}))
    config["distill"] = {"teacher": str(identity_run / "checkpoints" / "last.ckpt")}

    run_dir = distill(task, config, TASKS, out=tmp_path / "student")

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["embedding_dim"] == 256  # the width-0.25 teacher's pooled features
    metrics = json.loads((run_dir / "metrics.json").read_text())
    teacher_metrics = json.loads((identity_run / "metrics.json").read_text())
    assert metrics["teacher_lfw_accuracy"] == pytest.approx(teacher_metrics["lfw_accuracy"])
    assert 0.0 <= metrics["lfw_accuracy"] <= 1.0 and metrics["num_pairs"] == teacher_metrics["num_pairs"]
    # The student's own config (embedding_dim null) evaluates and loads the checkpoint: null means "as trained".
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate(task, config, checkpoint, out=tmp_path / "eval")["lfw_accuracy"] == metrics["lfw_accuracy"]
    student = build_from_checkpoint(task, config, checkpoint)
    assert type(student.model).__name__ == "FaceEmbedder" and student.model.embedding_dim == 256
