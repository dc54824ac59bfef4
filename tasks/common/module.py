"""The LightningModule every task derives from: the task contract's hooks, and what all tasks share.

A task writes a subclass that implements the hooks (``training_loss``, ``validation_results``, ``compute_metrics``,
``predict_records``, ``example_input``; optionally ``draw_prediction`` and ``write_outputs``) and sets the class
attributes (``monitor``, ``mode``, ...). The base owns the steps, the skipped-image logging, the one gather /
de-duplicate / broadcast of validation results (each sample counted once under DDP), ``final_metrics``, the
optimizer over ``trainable_module()`` and the schedule. The network is built by ``tasks.common.build`` and handed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from tasks.common.data import Batch
from tasks.common.errors import DatasetError, NonFiniteLossError
from tasks.common.optim import OptimizerConfig, build_optimizer, build_scheduler
from tasks.common.rng import RNG_KEY, rng_states, set_rng_states

__all__ = ["TaskModule", "merge_results"]


def merge_results(per_process: Iterable[Mapping[int, Any]]) -> dict[int, Any]:
    """Merge {dataset index: result} from every process, sorted by index, keeping each sample once (a distributed
    sampler pads the last batches with repeated samples; the first copy is kept)."""
    merged: dict[int, Any] = {}
    for results in per_process:
        for index, result in results.items():
            merged.setdefault(int(index), result)
    return dict(sorted(merged.items()))


class TaskModule(L.LightningModule):
    """Trains ``self.model`` (a plain ``nn.Module`` built by the shared builder) and evaluates it.

    Args:
        model: the network.
        model_config: the ``model:`` config section it was built from (``name`` and the builder's arguments);
            saved in checkpoints, where eval and predict compare it with theirs.
        optimizer: the ``optimizer:`` config section (``tasks.common.optim.OptimizerConfig``).
        data_info: the data module's ``data_info()``: what the model must know of the data (class names, ...);
            saved in checkpoints so that prediction needs no dataset.

    Class attributes a task sets:
        monitor, mode: the validation metric (logged as ``val/<monitor>``) that picks the best checkpoint.
        logged_metrics: keys of ``compute_metrics`` logged as ``val/<key>`` each validation (None logged as NaN).
        progress_bar_metrics: those of them also shown on the progress bar.
        inference_keys: ``model:`` keys that only change post-processing: eval and predict may set them unlike
            the training run.
        checkpoint_data_keys: ``data_info`` keys that must agree between a checkpoint and the data it is used on.
        prediction_summary: what ``predict_records`` writes, for the tool's closing message.
        distillation_kind: what ``distillation_outputs`` returns, for a task whose models can be distilled:
            "softmax" (class logits), "sigmoid" (independent logits, e.g. attributes) or "embedding"
            (L2-normalised embeddings); None: not distillable.
    """

    monitor: ClassVar[str]
    mode: ClassVar[Literal["max", "min"]] = "max"
    logged_metrics: ClassVar[tuple[str, ...]] = ()
    progress_bar_metrics: ClassVar[tuple[str, ...]] = ()
    inference_keys: ClassVar[tuple[str, ...]] = ()
    checkpoint_data_keys: ClassVar[tuple[str, ...]] = ("class_names",)
    prediction_summary: ClassVar[str] = "predictions"
    distillation_kind: ClassVar[Literal["softmax", "sigmoid", "embedding"] | None] = None

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        data_info: Mapping[str, Any],
    ) -> None:
        super().__init__()
        # The same hyper-parameter keys as checkpoints written before the network was built outside the module.
        self.save_hyperparameters(
            {"model": dict(model_config), "optimizer": dict(optimizer or {}), "data_info": dict(data_info)}
        )
        self.model = model
        self.optimizer_config = OptimizerConfig(**(optimizer or {}))
        self.data_info: dict[str, Any] = dict(data_info)
        self._results: dict[int, Any] = {}
        self._metrics: dict[str, Any] = {}
        # Every sample's validation result, on the first process only, after a validation epoch.
        self.all_results: dict[int, Any] = {}
        # What training minimises instead of ``training_loss`` (distillation sets one that matches a teacher); a
        # plain callable, so nothing it holds (a teacher) joins this module's parameters, state dict or optimizer.
        self.training_objective: Callable[[TaskModule, Batch], tuple[Tensor, dict[str, Tensor]]] | None = None
        self._resumed_rng: dict[str, Any] | None = None

    # ---------------------------------------------------------------------------------------------------------
    # The hooks a task implements

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """(the loss to minimise, other values to log as ``train/<name>``) for a batch of at least one sample."""
        raise NotImplementedError

    def validation_results(self, batch: Batch) -> list[Any]:
        """One picklable result per sample of the batch, in order (gathered across processes by dataset index)."""
        raise NotImplementedError

    def compute_metrics(self, results: dict[int, Any]) -> dict[str, Any]:
        """The metrics of all validation samples ({dataset index: result}), run on the first process only; the same
        keys as metrics.json and tools/eval.py. May keep what ``write_outputs`` needs."""
        raise NotImplementedError

    def predict_records(self, images: list[np.ndarray], score_threshold: float | None) -> list[list[dict[str, Any]]]:
        """For each decoded (H, W, 3) uint8 RGB image, the records predictions.json lists for it (the shared loop
        adds each record's ``file``). ``score_threshold`` None means the task's default."""
        raise NotImplementedError

    def draw_prediction(self, image: np.ndarray, records: list[dict[str, Any]]) -> np.ndarray | None:
        """A picture of the image's predictions, (H, W, 3) uint8, saved beside predictions.json; None: no picture."""
        return None

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[Any, str]:
        """(what ``model`` is called with for one image, its description), for profiling and export."""
        raise NotImplementedError

    def write_outputs(self, run_dir: Path) -> None:
        """Files of the last validation written beside metrics.json (first process only)."""

    def distillation_outputs(self, inputs: Tensor) -> Tensor:
        """(N, D) outputs a student of this task learns to reproduce, of ``distillation_kind``, for (N, 3, H, W)
        images in [0, 1]."""
        raise NotImplementedError(f"{type(self).__name__} models cannot be distilled")

    # ---------------------------------------------------------------------------------------------------------
    # What every task shares

    def trainable_module(self) -> nn.Module:
        """The module whose parameters the optimizer updates (a frozen teacher stays outside it)."""
        return self.model

    def setup(self, stage: str) -> None:
        # Channels-last convolutions run about 30% faster on CPU (mkldnn) and on GPUs with tensor cores.
        self.model.to(memory_format=torch.channels_last)

    def on_train_start(self) -> None:
        self._images_seen = 0
        self._images_unreadable = 0
        # A resumed run takes up the random streams where the checkpoint left them, after Lightning's sanity check
        # (whose loader draws from them): the next epoch shuffles as the uninterrupted run's would have.
        if self._resumed_rng is not None:
            set_rng_states(self._resumed_rng)
            self._resumed_rng = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        size = max(1, len(batch))
        if batch.skipped:
            self.log("train/skipped_images", float(batch.skipped), reduce_fx="sum", batch_size=size)
        self._count_unreadable(len(batch), batch.skipped)
        if not len(batch):
            # Every image of the batch was unreadable: a zero loss that still reaches every trainable parameter,
            # so that under DDP this process joins the gradient all-reduce like the others.
            return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0
        objective = self.training_objective
        loss, logs = objective(self, batch) if objective is not None else self.training_loss(batch)
        self._stop_on_non_finite(loss, logs, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in logs.items():
            self.log(f"train/{name}", value, batch_size=size)
        return loss

    def _count_unreadable(self, read: int, skipped: int) -> None:
        """Stop with a DatasetError, in every process at once, when more than the data's ``max_bad_fraction`` of the
        training images seen so far (all processes) were unreadable, from ``min_seen_for_bad_fraction`` on."""
        datamodule = getattr(self.trainer, "datamodule", None)
        fraction = getattr(datamodule, "max_bad_fraction", None)
        if fraction is None:
            return
        counts = torch.tensor([float(read + skipped), float(skipped)], device=self.device)
        if self.trainer.world_size > 1:
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
        self._images_seen += int(counts[0])
        self._images_unreadable += int(counts[1])
        seen, bad = self._images_seen, self._images_unreadable
        if seen >= datamodule.min_seen_for_bad_fraction and bad > fraction * seen:
            raise DatasetError(
                f"{bad} of the {seen} training images seen so far could not be read (more than "
                f"data.max_bad_fraction {fraction:g}; the warnings above name them): stopped. Fix or remove those "
                "files, or raise data.max_bad_fraction"
            )

    def _stop_on_non_finite(self, loss: Tensor, logs: dict[str, Any], batch_idx: int) -> None:
        """Raise NonFiniteLossError, in every process at once, when any process's loss is NaN or infinite: before
        the optimizer step and the next checkpoint, so the last checkpoint keeps the last good weights."""
        here = not bool(torch.isfinite(loss.detach()).all())
        anywhere = here
        if self.trainer.world_size > 1:
            anywhere = bool(self.trainer.strategy.reduce_boolean_decision(here, all=False))
        if not anywhere:
            return
        where = f"{float(loss.detach()):.4g}" if here else "finite here but not in another process"
        terms = ", ".join(f"{name} {float(torch.as_tensor(value).detach()):.4g}" for name, value in logs.items())
        raise NonFiniteLossError(
            f"the training loss is {where} at step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
            f"{f'; its terms: {terms}' if terms else ''}. Training stopped; the last checkpoint holds the last good "
            "weights. A lower optimizer.lr, a longer optimizer.warmup_epochs or trainer.gradient_clip_val usually "
            "cures it"
        )

    def on_validation_epoch_start(self) -> None:
        self._results = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        results = self.validation_results(batch)
        for index, result in zip(batch.indices.tolist(), results, strict=True):
            self._results[int(index)] = result

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        parts = [self._results]
        if self.trainer.world_size > 1:
            parts = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, self._results)
        metrics: dict[str, Any] = {}
        if self.trainer.is_global_zero:
            self.all_results = merge_results(parts)
            metrics = self.compute_metrics(self.all_results)
        self._metrics = self.trainer.strategy.broadcast(metrics, src=0)
        for name in self.logged_metrics:
            value = self._metrics.get(name)
            self.log(
                f"val/{name}", math.nan if value is None else float(value), prog_bar=name in self.progress_bar_metrics
            )

    def final_metrics(self) -> dict[str, Any]:
        """The metrics of the last validation (every process has them), as written to metrics.json."""
        return dict(self._metrics)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.trainable_module(), self.optimizer_config)
        total_steps = int(self.trainer.estimated_stepping_batches)
        # Optimizer steps per epoch: a run whose length is given in steps (trainer.max_steps) has max_epochs -1.
        steps_per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, self.optimizer_config, total_steps, max(1, steps_per_epoch)),
        }
