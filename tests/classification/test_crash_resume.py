"""A run killed with SIGKILL (mid-epoch, or while a checkpoint is being written) and resumed with --resume ends where
the uninterrupted run ends: the same step, epoch, weights and metrics, with augmentation, dropout and two loader
workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]

# Run in a fresh process: train (or resume) the config; KILL_AT_STEP makes the process SIGKILL itself when the
# training step of that global step starts (after the checkpoint of the step before), KILL_IN_SAVE_AT_STEP while
# the checkpoint of that step is half written.
DRIVER = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from tasks.common.module import TaskModule
from tasks.common.runner import train
from tasks.registry import load_task_config

kill_at = int(os.environ.get("KILL_AT_STEP", "-1"))
kill_in_save = int(os.environ.get("KILL_IN_SAVE_AT_STEP", "-1"))
real_step, real_save = TaskModule.training_step, torch.save

def training_step(self, batch, batch_idx):
    if self.global_step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(self, batch, batch_idx)

def save(obj, file, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("global_step") == kill_in_save and hasattr(file, "write"):
        file.write(b"PK\\x03\\x04 half of a checkpoint")
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, file, *args, **kwargs)

TaskModule.training_step = training_step
torch.save = save
config, task = load_task_config(sys.argv[1])
train(task, config, out=sys.argv[2], resume=len(sys.argv) > 3)
"""


def _config(tmp_path: Path, dogs_root: Path) -> Path:
    # 15 training images in batches of 4: 3 steps per epoch, 9 in all; a checkpoint every 2 steps lands mid-epoch.
    config = {
        "task": "classification",
        "seed": 3,
        "checkpoint_every_n_steps": 2,
        "model": {"name": "classifier", "width_mult": 0.25, "dropout": 0.2},
        "data": {"root": str(dogs_root), "layout": "stanford_dogs", "image_size": 32, "batch_size": 4},
        "optimizer": {"name": "rmsprop", "lr": 0.01},
        "trainer": {
            "max_epochs": 3,
            "check_val_every_n_epoch": 2,  # last.ckpt must still follow every epoch (and the run's end)
            "accelerator": "cpu",
            "devices": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
    }
    config["data"]["num_workers"] = 2  # persistent workers, whose augmentation must not depend on their history
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(config: Path, out: Path, resume: bool = False, **kill: int) -> int:
    driver = DRIVER.format(root=str(ROOT))
    env = {**os.environ, **{name.upper(): str(step) for name, step in kill.items()}}
    command = [sys.executable, "-c", driver, str(config), str(out), *(["resume"] if resume else [])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, dogs_root: Path) -> tuple[Path, Path]:
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    config = _config(tmp_path, dogs_root)
    assert _run(config, tmp_path / "run") == 0
    return config, tmp_path / "run"


def _assert_same_end(resumed: Path, whole: Path) -> None:
    expected = torch.load(whole / "checkpoints" / "last.ckpt", weights_only=True)
    actual = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)
    assert (actual["epoch"], actual["global_step"]) == (expected["epoch"], expected["global_step"]) == (2, 9)
    for name, value in expected["state_dict"].items():
        assert torch.allclose(actual["state_dict"][name].float(), value.float(), atol=1e-5), name
    assert json.loads((resumed / "metrics.json").read_text()) == pytest.approx(
        json.loads((whole / "metrics.json").read_text()), abs=1e-4
    )


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_end(
    tmp_path: Path, uninterrupted: tuple[Path, Path]
) -> None:
    config, whole = uninterrupted
    run = tmp_path / "run"

    assert _run(config, run, kill_at_step=5) == -signal.SIGKILL
    left = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert left["global_step"] == 4 and left["epoch"] == 1  # one batch into the second epoch
    assert _run(config, run, resume=True) == 0

    _assert_same_end(run, whole)


@pytest.mark.slow
def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_one_before(
    tmp_path: Path, uninterrupted: tuple[Path, Path]
) -> None:
    config, whole = uninterrupted
    run = tmp_path / "run"

    assert _run(config, run, kill_in_save_at_step=4) == -signal.SIGKILL
    left = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert left["global_step"] == 3  # the complete checkpoint of the end of the first epoch
    assert _run(config, run, resume=True) == 0

    _assert_same_end(run, whole)
