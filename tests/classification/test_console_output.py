"""A training run prints our progress and results, not Lightning's chatter (tasks/common/console.py)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
import yaml

from tasks.common.runner import train
from tasks.registry import load_task_config


def _tiny_config(tmp_path: Path, dogs_root: Path) -> Path:
    config = {
        "task": "classification",
        "seed": 0,
        "model": {"name": "classifier", "width_mult": 0.25},
        "data": {
            "root": str(dogs_root),
            "layout": "stanford_dogs",
            "image_size": 32,
            "batch_size": 8,
            "num_workers": 0,
        },
        "trainer": {
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "limit_val_batches": 1,
        },
    }
    path = tmp_path / "tiny_dogs.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_run_shows_progress_and_summary_without_library_chatter(
    tmp_path: Path, dogs_root: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # The default progress bar and model summary, as a user sees them; warnings recorded whatever the filters.
    config, task = load_task_config(_tiny_config(tmp_path, dogs_root))
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(task, config, out=tmp_path / "run")
    out, err = capfd.readouterr()
    printed = "\n".join([out, err, caplog.text, *(str(w.message) for w in caught)])

    assert "Epoch 0: 100%" in printed and "train/loss=" in printed and "Total params" in printed
    for chatter in ("litlogger", "LeafSpec", "FLOPs", "Total Flops", "v_num"):
        assert chatter not in printed, chatter
