"""The LightningModule every task derives from: the task contract's hooks, and what all tasks share.

A task writes a subclass that implements the hooks (``training_loss``, ``validation_results``, ``compute_metrics``,
``predict_records``, ``example_input``; optionally ``draw_prediction``, ``prediction_scores`` and ``write_outputs``)
and sets the class attributes (``monitor``, ``mode``, ...). The base owns the steps, the skipped-image logging, the
one gather / de-duplicate / broadcast of validation results and of the losses a task records with
``log_validation_loss`` (each sample counted once under DDP), ``final_metrics``, the optimizer over
``trainable_module()`` and the schedule. The network is built by ``tasks.common.build`` and handed in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
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
            the training run, and theirs are used.
        training_keys: ``model:`` keys that only change training (initial weights, matching, loss weights, mining,
            freezing, dropout), not the trained network's parameters or its outputs in eval mode: a checkpoint
            loads whatever they say. Every other ``model:`` key is the architecture, which must match.
        checkpoint_data_keys: ``data_info`` keys that must agree between a checkpoint and the data it is used on.
        prediction_summary: what ``predict_records`` writes, for the tool's closing message.
        default_score_threshold: the score below which tools/predict.py shows a prediction neither in a picture nor
            in its printout (``--score-threshold`` replaces it; predictions.json keeps every prediction); None: the
            task's predictions have no scores, and the option is refused.
        distillation_kind: what ``distillation_outputs`` returns, for a task whose models can be distilled:
            "softmax" (class logits), "sigmoid" (independent logits, e.g. attributes) or "embedding"
            (L2-normalised embeddings); None: not distillable.
    """

    monitor: ClassVar[str]
    mode: ClassVar[Literal["max", "min"]] = "max"
    logged_metrics: ClassVar[tuple[str, ...]] = ()
    progress_bar_metrics: ClassVar[tuple[str, ...]] = ()
    inference_keys: ClassVar[tuple[str, ...]] = ()
    training_keys: ClassVar[tuple[str, ...]] = ("backbone_weights",)
    checkpoint_data_keys: ClassVar[tuple[str, ...]] = ("class_names",)
    prediction_summary: ClassVar[str] = "predictions"
    default_score_threshold: ClassVar[float | None] = None
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
        # Each validation sample's (loss, weight), when the task records them (``log_validation_loss``).
        self._losses: dict[int, tuple[float, float]] = {}
        self._metrics: dict[str, Any] = {}
        # Every sample's validation result, on the first process only, after a validation epoch.
        self.all_results: dict[int, Any] = {}
        # What training minimises instead of ``training_loss`` (distillation sets one that matches a teacher); a
        # plain callable, so nothing it holds (a teacher) joins this module's parameters, state dict or optimizer.
        self.training_objective: Callable[[TaskModule, Batch], tuple[Tensor, dict[str, Tensor]]] | None = None
        self._resumed_rng: dict[str, Any] | None = None
        self._non_finite_skipped = 0
        # (optimizer steps in all, per epoch) as the runner planned them; None: Lightning's estimate.
        self.schedule_length: tuple[int, int] | None = None

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

    def predict_records(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """For each decoded (H, W, 3) uint8 RGB image, the records predictions.json lists for it, all of them (the
        shared loop adds each record's ``file``)."""
        raise NotImplementedError

    def draw_prediction(
        self, image: np.ndarray, records: list[dict[str, Any]], score_threshold: float
    ) -> np.ndarray | None:
        """A picture of the image's predictions scored at or above ``score_threshold``, (H, W, 3) uint8, saved beside
        predictions.json; None: the task draws no pictures."""
        return None

    def prediction_scores(self, records: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """(label, score) pairs of one image's records, best first, that tools/predict.py prints (those at or above
        the score threshold); [] where the task's predictions have no scores."""
        return []

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
        bad = [
            name
            for name, value in checkpoint.get("state_dict", {}).items()
            if value.is_floating_point() and not bool(torch.isfinite(value).all())
        ]
        if bad:
            raise NonFiniteLossError(
                f"the weights hold NaN or infinite values ({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}) at "
                f"step {self.global_step}: not saved, so the last checkpoint keeps the last good weights. A lower "
                "optimizer.lr or trainer.gradient_clip_val usually cures it"
            )
        checkpoint[RNG_KEY] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_rng = checkpoint.get(RNG_KEY)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        size = max(1, len(batch))
        if batch.skipped:
            self.log("train/skipped_images", float(batch.skipped), reduce_fx="sum", batch_size=size)
        loss: Tensor | None = None
        logs: dict[str, Tensor] = {}
        if len(batch):
            objective = self.training_objective
            loss, logs = objective(self, batch) if objective is not None else self.training_loss(batch)
        here = loss is not None and not bool(torch.isfinite(loss.detach()).all())
        read, unreadable, non_finite = self._summed_over_processes([len(batch), batch.skipped, int(here)])
        self._count_unreadable(read, unreadable)
        if non_finite:
            self._skip_or_stop(loss if here else None, logs, batch_idx)
            return None  # no backward pass, no optimizer step (in every process: the decision is shared)
        if loss is None:
            # Every image of the batch was unreadable: a zero loss that still reaches every trainable parameter,
            # so that under DDP this process joins the gradient all-reduce like the others.
            return torch.stack([p.sum() for p in self.parameters() if p.requires_grad]).sum() * 0.0
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in logs.items():
            self.log(f"train/{name}", value, batch_size=size)
        return loss

    def _summed_over_processes(self, counts: list[int]) -> list[int]:
        """``counts`` summed over every process: one all-reduce per training step, for all that every process must
        decide alike (unreadable images, a non-finite loss)."""
        if self.trainer.world_size <= 1:
            return counts
        total = self.trainer.strategy.reduce(
            torch.tensor(counts, dtype=torch.float64, device=self.device), reduce_op="sum"
        )
        return [int(value) for value in total.tolist()]

    def _count_unreadable(self, read: int, skipped: int) -> None:
        """Stop with a DatasetError, in every process at once, when more than the data's ``max_bad_fraction`` of the
        training images seen so far (``read`` and ``skipped`` in this step, all processes) were unreadable, from
        ``min_seen_for_bad_fraction`` on."""
        datamodule = getattr(self.trainer, "datamodule", None)
        fraction = getattr(datamodule, "max_bad_fraction", None)
        if fraction is None:
            return
        self._images_seen += read + skipped
        self._images_unreadable += skipped
        seen, bad = self._images_seen, self._images_unreadable
        if seen >= datamodule.min_seen_for_bad_fraction and bad > fraction * seen:
            raise DatasetError(
                f"{bad} of the {seen} training images seen so far could not be read (more than "
                f"data.max_bad_fraction {fraction:g}; the warnings above name them): stopped. Fix or remove those "
                "files, or raise data.max_bad_fraction"
            )

    def _skip_or_stop(self, loss: Tensor | None, logs: dict[str, Any], batch_idx: int) -> None:
        """A non-finite loss (``loss``: this process's, None where it is another process's): skip the batch while the
        optimizer's ``skip_non_finite`` allows (counted and logged), else raise NonFiniteLossError, in every process
        at once, before the optimizer step and the next checkpoint, so the last checkpoint keeps the last good
        weights."""
        self._non_finite_skipped += 1
        allowed = self.optimizer_config.skip_non_finite
        where = f"{float(loss.detach()):.4g}" if loss is not None else "finite here but not in another process"
        terms = ", ".join(f"{name} {float(torch.as_tensor(value).detach()):.4g}" for name, value in logs.items())
        what = (
            f"the training loss is {where} at step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
            f"{f'; its terms: {terms}' if terms else ''}"
        )
        if self._non_finite_skipped <= allowed:
            self.log("train/skipped_non_finite", float(self._non_finite_skipped), reduce_fx="max", batch_size=1)
            rank_zero_warn(f"{what}: batch skipped ({self._non_finite_skipped} of optimizer.skip_non_finite {allowed})")
            return
        skipped = f" after skipping {allowed} such batches (optimizer.skip_non_finite)" if allowed else ""
        raise NonFiniteLossError(
            f"{what}. Training stopped{skipped}; the last checkpoint holds the last good weights. A lower "
            "optimizer.lr, a longer optimizer.warmup_epochs or trainer.gradient_clip_val usually cures it"
        )

    def on_validation_epoch_start(self) -> None:
        self._results = {}
        self._losses = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        results = self.validation_results(batch)
        for index, result in zip(batch.indices.tolist(), results, strict=True):
            self._results[int(index)] = result

    def log_validation_loss(self, batch: Batch, losses: Tensor, weights: Tensor | None = None) -> None:
        """Record each sample's validation loss, (B,) sums over the terms it holds (``weights``, (B,): how many;
        default one each). At the epoch's end ``val/loss`` is logged as sum(losses) / sum(weights) over the whole
        validation set, each sample once under DDP. (Per batch, ``self.log(..., sync_dist=True)`` would count the
        samples a distributed sampler repeats, and Lightning's mean over processes that saw different numbers of
        samples divides the summed counts as integers.)"""
        weights = torch.ones_like(losses) if weights is None else weights
        pairs = zip(batch.indices.tolist(), losses.tolist(), weights.tolist(), strict=True)
        self._losses.update((int(index), (loss, weight)) for index, loss, weight in pairs)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        parts = [(self._results, self._losses)]
        if self.trainer.world_size > 1:
            parts = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, (self._results, self._losses))
        metrics: dict[str, Any] = {}
        loss = None
        if self.trainer.is_global_zero:
            self.all_results = merge_results(results for results, _ in parts)
            metrics = self.compute_metrics(self.all_results)
            losses = merge_results(losses for _, losses in parts).values()
            weight = sum(weight for _, weight in losses)
            loss = sum(value for value, _ in losses) / weight if weight > 0 else None
        self._metrics, loss = self.trainer.strategy.broadcast((metrics, loss), src=0)
        if loss is not None:
            self.log("val/loss", loss)
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
        if self.schedule_length is not None:
            # The runner's plan. (Lightning's estimate sets up the training loader before a resumed run's state is
            # restored, and then keeps that loader: it would not continue where the checkpoint left off.)
            total_steps, steps_per_epoch = self.schedule_length
        else:
            total_steps = int(self.trainer.estimated_stepping_batches)
            # Optimizer steps per epoch: a run whose length is given in steps (trainer.max_steps) has max_epochs -1.
            steps_per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        return {
            "optimizer": optimizer,
            "lr_scheduler": build_scheduler(optimizer, self.optimizer_config, total_steps, max(1, steps_per_epoch)),
        }
