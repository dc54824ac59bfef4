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
    for name in (RUN_DIR_ENV, "RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"):
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


# ---------------------------------------------------------------------------------------------------------------
# Processes started by torchrun or SLURM, not by Lightning's launcher: they start apart, and must agree on one folder.

LAUNCHER_VARIABLES = (
    RUN_DIR_ENV,
    "RANK",
    "LOCAL_RANK",
    "NODE_RANK",
    "WORLD_SIZE",
    "TORCHELASTIC_RUN_ID",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_NTASKS",
    "SLURM_STEP_ID",
    "SLURM_PROCID",
)


@pytest.fixture
def launched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean launcher environment in tmp_path, with a clock that moves on a second per call, as ranks start apart."""
    monkeypatch.chdir(tmp_path)
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    ticks = iter(range(60))
    clock = staticmethod(lambda: datetime(2026, 1, 2, 3, 4, next(ticks)))
    monkeypatch.setattr(runner, "datetime", type("MovingClock", (), {"now": clock}))
    return monkeypatch


def _start_rank(monkeypatch: pytest.MonkeyPatch, rank: int, **environment: str) -> Path:
    for name, value in {"RANK": str(rank), "LOCAL_RANK": str(rank), **environment}.items():
        monkeypatch.setenv(name, value)
    return default_run_dir("configs/x.yaml")


def test_torchrun_ranks_share_the_folder_of_their_rendezvous_id(launched: pytest.MonkeyPatch) -> None:
    torchrun = {"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "3f2c9a"}  # --rdzv-id, or the id --standalone draws

    first = _start_rank(launched, 0, **torchrun)
    (first / "config.yaml").write_text("written by rank 0")  # the second rank starts after the first has begun
    second = _start_rank(launched, 1, **torchrun)

    assert first == second == Path("runs/x/torchrun-3f2c9a") and first.is_dir()


def test_slurm_tasks_share_the_folder_of_their_job_step(launched: pytest.MonkeyPatch) -> None:
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_STEP_ID": "0", "SLURM_JOB_NAME": "train"}

    first = _start_rank(launched, 0, SLURM_PROCID="0", **slurm)
    (first / "config.yaml").write_text("written by rank 0")
    second = _start_rank(launched, 1, SLURM_PROCID="1", **slurm)

    assert first == second == Path("runs/x/slurm-4242-0")


def test_ranks_launched_without_a_job_id_are_asked_for_out(launched: pytest.MonkeyPatch) -> None:
    # torchrun without --rdzv-id or --standalone sets the literal "none".
    with pytest.raises(ConfigError, match=r"one of 2 processes \(WORLD_SIZE\).*give them all the same --out DIR"):
        _start_rank(launched, 0, WORLD_SIZE="2", TORCHELASTIC_RUN_ID="none")

    assert not Path("runs").exists()


def test_a_job_folder_holding_a_run_is_refused_to_a_new_first_rank(launched: pytest.MonkeyPatch) -> None:
    torchrun = {"WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "job7"}
    folder = _start_rank(launched, 0, **torchrun)
    (folder / "config.yaml").write_text("an earlier run of the job")

    with pytest.raises(ConfigError, match=r"runs/x/torchrun-job7 already holds a run of this job: .*--resume --out"):
        _start_rank(launched, 0, **torchrun)
    assert (folder / "config.yaml").read_text() == "an earlier run of the job"


def test_one_process_in_an_interactive_slurm_allocation_gets_its_own_folder(launched: pytest.MonkeyPatch) -> None:
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "8", "SLURM_JOB_NAME": "interactive"}  # Lightning's rule

    first, second = _start_rank(launched, 0, **slurm), _start_rank(launched, 0, **slurm)

    assert first == Path("runs/x/20260102-030400") and second == Path("runs/x/20260102-030401")


def test_the_first_process_of_a_second_node_does_not_refuse_the_out_the_first_node_filled(
    tmp_path: Path, launched: pytest.MonkeyPatch
) -> None:
    # Lightning's own launcher on each node (NODE_RANK, WORLD_SIZE, MASTER_ADDR set by hand): no RANK yet.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.yaml").write_text("written by node 0")
    launched.setenv("NODE_RANK", "1")

    runner.check_run_dir(tmp_path / "out", resume=False)
