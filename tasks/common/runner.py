"""Train and evaluate any task from a run config: run directory, Trainer assembly, metrics.json."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from tasks.common.build import CheckpointError, load_checkpoint, load_run
from tasks.common.config import dump_config

__all__ = ["default_run_dir", "build_trainer", "train", "evaluate", "write_json"]

log = logging.getLogger(__name__)


# Lightning's DDP launcher starts the other ranks as new processes running the same command a second or more later:
# they read the run directory the first process chose from the environment they inherit, not a later timestamp.
RUN_DIR_ENV = "MOBILENET_TOOLKIT_RUN_DIR"


def default_run_dir(config_path: str | Path) -> Path:
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return Path(inherited)
    return Path("runs") / Path(config_path).stem / datetime.now().strftime("%Y%m%d-%H%M%S")


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


def _loggers(run_dir: Path) -> list:
    loggers: list = [CSVLogger(run_dir, name="logs", version="")]
    try:
        import tensorboard  # noqa: F401
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(run_dir, name="logs", version="tensorboard"))
    except ImportError:
        pass
    return loggers


def build_trainer(
    trainer_config: dict[str, Any], run_dir: Path, monitor: str | None = None, mode: str = "max", train: bool = True
) -> L.Trainer:
    """A Trainer with the config's ``trainer:`` arguments, and the runner's logging and checkpointing."""
    kwargs = dict(trainer_config)
    if train:
        callbacks: list = [LearningRateMonitor(logging_interval="step")]
        callbacks.append(ModelCheckpoint(dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0))
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
        kwargs.update(callbacks=callbacks, logger=_loggers(run_dir))
    else:
        kwargs.update(logger=False, enable_checkpointing=False)
    kwargs.setdefault("log_every_n_steps", 10)
    return L.Trainer(default_root_dir=run_dir, **kwargs)


def train(
    config_path: str | Path,
    overrides: Sequence[str] = (),
    out: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Train the run config; return the run directory (checkpoints/, logs/, config.yaml, metrics.json)."""
    if resume and out is None:
        raise ValueError("--resume needs --out DIR: the run directory to continue")
    config, task, datamodule, module = load_run(config_path, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(config_path)
    ckpt_path = None
    if resume:
        ckpt_path = run_dir / "checkpoints" / "last.ckpt"
        if not ckpt_path.is_file():
            raise CheckpointError(f"cannot resume: {ckpt_path} does not exist")
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_dir_for_relaunched_ranks(run_dir):
        L.seed_everything(config.get("seed", 0), workers=True, verbose=False)
        trainer = build_trainer(config["trainer"], run_dir, task.monitor, task.monitor_mode)
        if trainer.is_global_zero:
            dump_config(config, run_dir / "config.yaml")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
        # Final validation with the weights training ended on: the same keys as tools/eval.py.
        trainer.validate(module, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        metrics = module.final_metrics()
        write_json(metrics, run_dir / "metrics.json")
        module.write_outputs(run_dir)
    return run_dir


def evaluate(
    config_path: str | Path, checkpoint: str | Path, overrides: Sequence[str] = (), out: str | Path | None = None
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the config's validation data; write metrics.json (and task outputs) to ``out``."""
    config, task, datamodule, module = load_run(config_path, overrides)
    load_checkpoint(module, checkpoint, inference_keys=task.inference_model_keys)
    run_dir = Path(out) if out is not None else Path(checkpoint).resolve().parent.parent / "eval"
    trainer = build_trainer(config["trainer"], run_dir, train=False)
    trainer.validate(module, datamodule=datamodule, verbose=False)
    metrics = module.final_metrics()
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(metrics, run_dir / "metrics.json")
        module.write_outputs(run_dir)
    return metrics
