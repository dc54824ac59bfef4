"""Train and evaluate any task from a run config: run directory, Trainer assembly, metrics.json."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from tasks.common.build import (
    check_trainer,
    fill_from_checkpoint,
    load_checkpoint,
    load_run,
    read_checkpoint,
    refuse_another_task,
)
from tasks.common.config import dump_config
from tasks.common.console import console_callbacks, silence_library_chatter
from tasks.common.errors import CheckpointError, ConfigError
from tasks.common.module import TaskModule
from tasks.common.task import Task

__all__ = [
    "DurableCheckpointIO",
    "default_run_dir",
    "check_run_dir",
    "build_trainer",
    "plan_training_length",
    "train",
    "fit",
    "eval_dir",
    "evaluate",
    "write_json",
]

# Below this many optimizer steps a run is warned that it will hardly learn.
FEW_STEPS = 100

log = logging.getLogger(__name__)


# Lightning's DDP launcher starts the other ranks as new processes running the same command a second or more later:
# they read the run directory the first process chose from the environment they inherit, not a later timestamp.
RUN_DIR_ENV = "MOBILENET_TOOLKIT_RUN_DIR"


def _launcher_job_id() -> str | None:
    """The id every process of a job started by torchrun or SLURM shares, None outside one: torchrun's rendezvous id
    (``--rdzv-id``, or the one it draws on a single machine; the static rendezvous of ``--master-addr`` /
    ``--master-port`` without ``--rdzv-id`` has the literal "none"), else the SLURM job and step (each ``srun`` is a
    step) when SLURM started several tasks, as Lightning tells SLURM apart (not in an allocation whose job name is
    "bash" or "interactive")."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id != "none":
        return "torchrun-" + re.sub(r"[^\w.-]", "_", run_id)
    job, tasks = os.environ.get("SLURM_JOB_ID"), int(os.environ.get("SLURM_NTASKS", "1") or 1)
    if job and tasks > 1 and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        step = os.environ.get("SLURM_STEP_ID")
        return f"slurm-{job}" + (f"-{step}" if step else "")
    return None


def default_run_dir(config_path: str | Path) -> Path:
    """runs/<config name>/<timestamp>, with a suffix (-2, -3...) when a run started in the same second took it.

    Processes started by torchrun or SLURM rather than Lightning's launcher start apart and cannot agree on a time:
    they share runs/<config name>/<torchrun|slurm>-<job id> instead. Without a job id (torchrun's static rendezvous,
    ``--master-addr`` / ``--master-port`` without ``--rdzv-id``; WORLD_SIZE set by hand) the run is refused: such a
    run needs ``--out``.
    """
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    job = _launcher_job_id()
    if job is not None:
        run_dir = Path("runs") / Path(config_path).stem / job
        if _holds_another_run(run_dir):
            raise ConfigError(
                f"{run_dir} already holds a run of this job: continue it with --resume --out {run_dir}, or give "
                "another --out"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world_size > 1:
        raise ConfigError(
            f"this is one of {world_size} processes (WORLD_SIZE) started outside Lightning without a job id they all "
            "share (torchrun's --rdzv-id, SLURM's job id), so they cannot agree on a new run directory: give them all "
            "the same --out DIR"
        )
    base = Path("runs") / Path(config_path).stem / datetime.now().strftime("%Y%m%d-%H%M%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    candidate, number = base, 1
    while True:
        try:
            candidate.mkdir()  # atomic: two runs cannot both create it
            return candidate
        except FileExistsError:
            number += 1
            candidate = base.with_name(f"{base.name}-{number}")


def _is_relaunched_rank(run_dir: Path) -> bool:
    """A DDP process other than the first: started by Lightning's launcher (it inherits the run directory), by
    torchrun / SLURM (a non-zero rank in the environment), or Lightning's launcher on a node other than the first."""
    if os.environ.get(RUN_DIR_ENV) == str(run_dir):
        return True
    ranks = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")
    return any(int(os.environ.get(name, "0") or 0) > 0 for name in ranks)


def _holds_another_run(run_dir: Path) -> bool:
    """``run_dir`` holds files, and this process is not one of the DDP ranks that share it with the first."""
    return run_dir.is_dir() and any(run_dir.iterdir()) and not _is_relaunched_rank(run_dir)


def check_run_dir(run_dir: Path, resume: bool) -> None:
    """Refuse to start a new run in a directory that holds one (nothing a user made is overwritten), and to
    resume one that has no checkpoint."""
    if resume:
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise CheckpointError(f"cannot resume: {run_dir / 'checkpoints' / 'last.ckpt'} does not exist")
        return
    if _holds_another_run(run_dir):
        raise ConfigError(
            f"{run_dir} already holds a run ({', '.join(sorted(p.name for p in run_dir.iterdir())[:5])}): continue "
            "it with --resume, or give another --out (or none, for a new runs/<config>/<time> folder)"
        )


def _log_version(run_dir: Path, resume: bool) -> str:
    """Where this attempt's CSV log goes under run_dir/logs: the first attempt's logs/metrics.csv, each resume its
    own logs/resume-N/metrics.csv, so that no attempt's history replaces another's."""
    if not resume:
        return ""
    number = 1
    while (run_dir / "logs" / f"resume-{number}").exists():
        number += 1
    return f"resume-{number}"


@contextmanager
def _run_dir_for_relaunched_ranks(run_dir: Path) -> Iterator[None]:
    """Publish ``run_dir`` to the processes the DDP launcher starts inside this block; restore the variable after."""
    inherited = os.environ.get(RUN_DIR_ENV)
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        yield
    finally:
        if inherited is None:
            del os.environ[RUN_DIR_ENV]
        else:
            os.environ[RUN_DIR_ENV] = inherited


def write_json(data: Any, path: Path) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _loggers(run_dir: Path, version: str = "") -> list:
    loggers: list = [CSVLogger(run_dir, name="logs", version=version)]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="logs", version="tensorboard"))
    except ImportError:
        pass
    return loggers


class DurableCheckpointIO(TorchCheckpointIO):
    """Checkpoints written whole or not at all: into a temporary file beside the target, flushed to disk (fsync),
    then renamed over it (atomic within one filesystem) and the folder synced, so that a crash at any moment leaves
    the previous checkpoint or the new one, never part of one. (Lightning's own save writes the target file in
    place, or through a temporary file in the system's temp folder, which a rename across filesystems copies.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide the checkpoint from the user's group
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def build_trainer(
    trainer_config: dict[str, Any],
    run_dir: Path,
    monitor: str | None = None,
    mode: str = "max",
    train: bool = True,
    log_version: str = "",
    checkpoint_every_n_steps: int = 0,
) -> L.Trainer:
    """A Trainer with the config's ``trainer:`` arguments, and the runner's logging and checkpointing: last.ckpt
    after every epoch and, with ``checkpoint_every_n_steps``, every that many optimizer steps too."""
    silence_library_chatter()
    kwargs = dict(trainer_config)
    callbacks: list = console_callbacks(kwargs)
    if train:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
        # last.ckpt after every epoch: the newest checkpoint, kept under that name. (``save_last=True`` beside
        # ``save_top_k=0`` writes it only when training ends, so a crash would lose every epoch.)
        latest = {"dirpath": run_dir / "checkpoints", "filename": "last", "enable_version_counter": False}
        # At every training epoch's end, whether or not it validated (by default Lightning saves at validation's
        # end, so a run validating every 3rd epoch left its last epochs unsaved).
        callbacks.append(ModelCheckpoint(**latest, save_top_k=1, save_on_train_epoch_end=True))
        if checkpoint_every_n_steps:
            # Lightning takes steps and epochs only in separate callbacks; both write last.ckpt.
            callbacks.append(ModelCheckpoint(**latest, save_top_k=1, every_n_train_steps=checkpoint_every_n_steps))
        if monitor:
            callbacks.append(
                ModelCheckpoint(
                    dirpath=run_dir / "checkpoints",
                    filename="best-{epoch}",
                    monitor=monitor,
                    mode=mode,
                    save_top_k=1,
                    auto_insert_metric_name=False,
                )
            )
        kwargs.update(callbacks=callbacks, logger=_loggers(run_dir, log_version), plugins=[DurableCheckpointIO()])
    else:
        kwargs.update(callbacks=callbacks, logger=False, enable_checkpointing=False)
    kwargs.setdefault("log_every_n_steps", 10)
    return L.Trainer(default_root_dir=run_dir, **kwargs)


def _steps_per_epoch(datamodule: L.LightningDataModule, trainer: L.Trainer) -> tuple[int, int]:
    """(optimizer steps per epoch in each process, training samples), counted from the data the run will see."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()  # a labelled subset (data.label_fraction) is what the loader serves
    batches = math.ceil(len(loader) / max(1, trainer.world_size))
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif limit is not None:
        batches = int(batches * limit)
    return math.ceil(batches / trainer.accumulate_grad_batches), len(loader.dataset)


def plan_training_length(
    trainer_config: dict[str, Any], steps_per_epoch: int, min_steps: int = 0
) -> tuple[dict[str, Any], int, str]:
    """(trainer arguments, optimizer steps the run will take, a note of what changed) for a run whose length is
    given in epochs (``max_epochs``) or in optimizer steps (``max_steps``), lengthened to ``min_steps`` where the
    data is too small for the configured epochs. A lengthened run validates as often as the configured one:
    ``check_val_every_n_epoch`` grows with its epochs."""
    kwargs = dict(trainer_config)
    max_steps = kwargs.get("max_steps")
    step_limit = max_steps if max_steps is not None and max_steps >= 0 else None
    max_epochs = kwargs.get("max_epochs")
    if max_epochs is None:
        max_epochs = -1 if step_limit is not None else 1000  # Lightning's defaults
    epoch_limit = max_epochs * steps_per_epoch if max_epochs >= 0 else None
    steps = min(limit for limit in (epoch_limit, step_limit) if limit is not None)
    if steps >= min_steps or steps_per_epoch == 0:
        return kwargs, steps, ""
    if epoch_limit is not None and epoch_limit < min_steps:
        epochs = math.ceil(min_steps / steps_per_epoch)
        every = kwargs.get("check_val_every_n_epoch", 1)
        if every:
            kwargs["check_val_every_n_epoch"] = max(1, round(every * epochs / max(1, max_epochs)))
        kwargs["max_epochs"] = epochs
    if step_limit is not None and step_limit < min_steps:
        kwargs["max_steps"] = min_steps
    kwargs, new_steps, _ = plan_training_length(kwargs, steps_per_epoch)
    return kwargs, new_steps, f" (lengthened from {steps} to reach min_steps {min_steps})"


def train(task: Task, config: dict[str, Any], out: str | Path | None = None, resume: bool = False) -> Path:
    """Train a checked run config of ``task``; return the run directory (checkpoints/, logs/, config.yaml,
    metrics.json and the task's outputs)."""
    L.seed_everything(config.get("seed", 0), workers=True, verbose=False)  # the network's initial weights too
    datamodule, module = load_run(task, config)
    return fit(task, module, datamodule, config, out, resume)


@contextmanager
def _removed_if_left_empty(run_dir: Path, created: bool, default: bool) -> Iterator[None]:
    """Remove ``run_dir`` again when this run created it and an error (a dataset the data module could not read,
    found once the folder existed) stops it before any file was written there: a mistake leaves nothing behind.
    A folder holding any file is kept as it is. A ``default`` run directory's runs/<config> and runs/ go too when
    that leaves them empty."""
    try:
        yield
    except BaseException:
        if created and run_dir.is_dir() and not any(path.is_file() for path in run_dir.rglob("*")):
            shutil.rmtree(run_dir)
            for parent in list(run_dir.parents)[:2] if default else []:
                if any(parent.iterdir()):
                    break
                parent.rmdir()
        raise


def fit(
    task: Task,
    module: TaskModule,
    datamodule: L.LightningDataModule,
    config: dict[str, Any],
    out: str | Path | None = None,
    resume: bool = False,
    before_fit: Callable[[L.Trainer, Path], None] | None = None,
    after_fit: Callable[[L.Trainer], dict[str, Any]] | None = None,
) -> Path:
    """Fit ``module`` (of ``task``) on ``datamodule`` as ``config`` says, in the run directory ``out`` (default
    runs/<config name>/<timestamp>; with ``resume``, continued from its last.ckpt); return the run directory.

    ``before_fit(trainer, run_dir)`` runs once the trainer exists; ``after_fit(trainer)`` after the final
    validation, its metrics added to metrics.json (distillation: the teacher's own score).
    """
    if resume and out is None:
        raise ValueError("--resume needs --out DIR: the run directory to continue")
    source = config.get("_source", "run")
    check_trainer(config)  # before the run directory: Lightning's refusal of a setting is then one error line
    created = out is None or not Path(out).exists()  # default_run_dir makes its folder
    run_dir = Path(out) if out is not None else default_run_dir(source)
    if out is not None:
        check_run_dir(run_dir, resume)
    ckpt_path = run_dir / "checkpoints" / "last.ckpt" if resume else None
    if ckpt_path is not None:
        # Before anything runs: a truncated or foreign checkpoint, or one of another model or class list than this
        # config's, is one clear error here rather than a Lightning traceback later.
        load_checkpoint(task, module, ckpt_path)
    log_version = _log_version(run_dir, resume) if not _is_relaunched_rank(run_dir) else ""
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_dir_for_relaunched_ranks(run_dir), _removed_if_left_empty(run_dir, created, default=out is None):
        L.seed_everything(config.get("seed", 0), workers=True, verbose=False)
        every = config.get("checkpoint_every_n_steps", 0)

        def trainer_for(trainer_config: dict[str, Any]) -> L.Trainer:
            return build_trainer(
                trainer_config,
                run_dir,
                module.monitor,
                module.mode,
                log_version=log_version,
                checkpoint_every_n_steps=every,
            )

        trainer = trainer_for(config["trainer"])
        steps_per_epoch, samples = _steps_per_epoch(datamodule, trainer)
        trainer_config, steps, note = plan_training_length(
            config["trainer"], steps_per_epoch, config.get("min_steps", 0)
        )
        if trainer_config != config["trainer"]:
            config["trainer"] = trainer_config
            trainer = trainer_for(trainer_config)
        module.schedule_length = (steps, steps_per_epoch)
        rank_zero_info(
            f"training: {steps} optimizer steps{note}, {steps_per_epoch} per epoch ({samples} training samples, "
            f"{trainer.world_size} process(es))"
        )
        if steps < FEW_STEPS:
            rank_zero_warn(
                f"only {steps} optimizer steps: too few to learn much; raise trainer.max_epochs or set min_steps "
                f"(top level of {source})"
            )
        if trainer.is_global_zero:
            dump_config(config, run_dir / "config.yaml")
        if before_fit is not None:
            before_fit(trainer, run_dir)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
        # Final validation with the weights training ended on: the same keys as tools/eval.py.
        trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics = module.final_metrics()
        if after_fit is not None:
            metrics.update(after_fit(trainer))
    if trainer.is_global_zero:
        write_json(metrics, run_dir / "metrics.json")
        module.write_outputs(run_dir)
    return run_dir


def eval_dir(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Where ``evaluate`` writes: ``out``, by default ``eval/`` beside the checkpoint's run."""
    return Path(out) if out is not None else Path(checkpoint).resolve().parent.parent / "eval"


def evaluate(
    task: Task,
    config: dict[str, Any],
    checkpoint: str | Path,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the config's validation data; write metrics.json (and task outputs) to ``out``
    (default: ``eval/`` beside the checkpoint's run). A folder that already holds a metrics.json is refused unless
    ``overwrite``: evaluation never replaces another run's results unasked."""
    run_dir = eval_dir(checkpoint, out)
    if (run_dir / "metrics.json").is_file() and not overwrite and not _is_relaunched_rank(run_dir):
        raise ConfigError(
            f"{run_dir} already holds results (metrics.json): give another --out, or --overwrite to replace them"
        )
    check_trainer(config)
    saved = read_checkpoint(Path(checkpoint))
    refuse_another_task(task, checkpoint, saved)  # before reading the data, which this config's task expects
    datamodule, module = load_run(task, fill_from_checkpoint(config, saved))
    load_checkpoint(task, module, checkpoint, saved)
    with _run_dir_for_relaunched_ranks(run_dir):
        trainer = build_trainer(config["trainer"], run_dir, train=False)
        trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = module.final_metrics()
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(metrics, run_dir / "metrics.json")
        module.write_outputs(run_dir)
    return metrics
