"""Run directories: a new run never lands in another run's folder, even when two start in the same second; a
checkpoint is written whole or not at all."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import pytest
import torch

from tasks.common import runner
from tasks.common.errors import ConfigError
from tasks.common.runner import RUN_DIR_ENV, DurableCheckpointIO, default_run_dir


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    frozen = datetime(2026, 1, 2, 3, 4, 5)
    monkeypatch.setattr(runner, "datetime", type("FrozenClock", (), {"now": staticmethod(lambda: frozen)}))

    first, second = default_run_dir("configs/x.yaml"), default_run_dir("configs/x.yaml")

    assert first == Path("runs/x/20260102-030405") and second == Path("runs/x/20260102-030405-2")
    assert first.is_dir() and second.is_dir()


def test_a_folder_holding_files_is_refused_without_resume_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (RUN_DIR_ENV, "RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(ConfigError, match=r"already holds a run \(notes.txt\)"):
        runner.check_run_dir(tmp_path, resume=False)
    runner.check_run_dir(tmp_path / "new", resume=False)  # a new or empty folder is fine

    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_checkpoint_save_that_fails_midway_leaves_the_previous_one_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = DurableCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not a temporary file's 0600
    real_save = torch.save

    def save_half_then_die(obj: object, file: BinaryIO) -> None:
        real_save(obj, file)
        file.seek(len(before) // 2)
        file.truncate()
        raise KeyboardInterrupt  # the process killed mid-write

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)

    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(3))
