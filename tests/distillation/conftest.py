"""A tiny synthetic Stanford Dogs set and untrained teachers written as the files a user would have."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tasks.classification.synthetic import make_synthetic_dogs
from tasks.classification.task import TASK as CLASSIFICATION
from tasks.common.build import build_module
from tasks.common.module import TaskModule

NUM_BREEDS = 3


@pytest.fixture(scope="session")
def dogs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 breeds, 4 train and 2 test images each, 40-56 px."""
    out = tmp_path_factory.mktemp("dogs")
    return make_synthetic_dogs(out, seed=1, num_train=4, num_val=2, num_breeds=NUM_BREEDS, size_range=(40, 56))


def classifier_module(num_classes: int = NUM_BREEDS, width_mult: float = 0.25, image_size: int = 32) -> TaskModule:
    names = [f"breed_{i}" for i in range(num_classes)]
    info = {"class_names": names, "num_classes": num_classes, "image_size": image_size, "eval_crop_fraction": 0.875}
    return build_module(CLASSIFICATION, {"model": {"width_mult": width_mult}, "optimizer": {}}, info)


def save_checkpoint(module: TaskModule, path: Path) -> Path:
    """The checkpoint keys tools/train.py writes: state_dict and hyper_parameters."""
    hyper = dict(module.hparams)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hyper}, path)
    return path


def write_config(path: Path, dogs: Path, **sections: Any) -> Path:
    config = {
        "task": "classification",
        "seed": 0,
        "model": {"name": "classifier", "width_mult": 0.25},
        "data": {"root": str(dogs), "layout": "stanford_dogs", "image_size": 32, "batch_size": 4, "num_workers": 0},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0, "warmup_epochs": 0},
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 2,
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path.write_text(yaml.safe_dump(config))
    return path
