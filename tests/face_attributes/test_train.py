"""End to end through the shared runner: train, metrics.json and the run's outputs, then evaluation and prediction
of the checkpoint; and the shipped configs pass the config check."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tasks.common.build import build_from_checkpoint
from tasks.common.predict import predict_images
from tasks.common.runner import evaluate, train
from tasks.registry import load_task_config

from .conftest import NUM_TRAIN, NUM_VAL

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "name",
    ["face_attr_teacher.yaml", "demo_face_attr_teacher.yaml", "demo_face_attr_distill.yaml"]
    + [f"face_attr_distill_{width}_{size}.yaml" for width in ("mnv1", "mnv050", "mnv025") for size in (224, 128)],
)
def test_shipped_configs_pass_the_config_check(name: str) -> None:
    config, task = load_task_config(CONFIGS / name)

    assert task.name == "face_attributes" and task.module.monitor == "val/mean_ap"
    assert config["optimizer"]["name"] == "rmsprop"


def _tiny_config(tmp_path: Path, root: Path) -> Path:
    config = {
        "task": "face_attributes",
        "seed": 0,
        "model": {"name": "classifier", "width_mult": 0.25},
        "data": {"root": str(root), "image_size": 32, "batch_size": 8, "num_workers": 0},
        "optimizer": {"name": "rmsprop", "lr": 0.05},
        "trainer": {
            "max_epochs": 2,
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


@pytest.mark.slow
def test_a_rerun_with_the_same_seed_ends_with_the_same_weights_and_metrics(
    tmp_path: Path, celeba_root: Path, assert_same_run
) -> None:
    # Augmented (the default light crop and flip) and shuffled: every random draw follows the seed.
    runs = []
    for name in ("first", "second"):
        config, task = load_task_config(_tiny_config(tmp_path, celeba_root))
        runs.append(train(task, config, out=tmp_path / name))

    assert_same_run(*runs)


@pytest.mark.slow
def test_training_writes_metrics_and_outputs_that_evaluation_and_prediction_reuse(
    tmp_path: Path, celeba_root: Path
) -> None:
    config, task = load_task_config(_tiny_config(tmp_path, celeba_root))
    names = (celeba_root / "list_attr_celeba.txt").read_text().splitlines()[1].split()

    run_dir = train(task, config, out=tmp_path / "run")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"mean_ap", "mean_accuracy", "num_attributes", "train_size", "val_size", "num_images"} <= set(metrics)
    assert (metrics["num_attributes"], metrics["train_size"], metrics["val_size"]) == (len(names), NUM_TRAIN, NUM_VAL)
    assert metrics["num_images"] == NUM_VAL
    assert 0.0 <= metrics["mean_ap"] <= 1.0 and 0.0 <= metrics["mean_accuracy"] <= 1.0
    rows = list(csv.DictReader(open(run_dir / "per_attribute.csv")))
    assert [row["attribute"] for row in rows] == names
    assert Image.open(run_dir / "per_attribute_ap.png").format == "PNG"

    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    assert evaluate(task, config, checkpoint, out=tmp_path / "eval") == metrics

    module = build_from_checkpoint(task, config, checkpoint)
    images = sorted((celeba_root / "img_align_celeba").iterdir())[:3]
    records = predict_images(module, images, tmp_path / "predict", score_threshold=0.0)
    assert [Path(r["file"]).name for r in records] == [p.name for p in images]
    assert all(list(r["attributes"]) == names for r in records)
