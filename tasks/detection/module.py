"""The LightningModule of detection: trains any detector of tasks.detection and evaluates it with COCO metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tasks.common.module import TaskModule
from tasks.detection.evaluation import METRIC_NAMES, coco_metrics, deduplicate, to_coco_results

__all__ = ["DetectionModule"]


class DetectionModule(TaskModule):
    """Wraps a torchvision-style detector (``model(images, targets)`` -> losses in training, detections in eval).

    Args:
        model: the ``model:`` config section; ``name`` picks the builder, the rest are its arguments.
        optimizer: the ``optimizer:`` config section.
        data_info: ``num_classes``, ``class_names`` and ``label_to_cat_id`` of the training data.
    """

    def __init__(self, model: dict[str, Any], optimizer: dict[str, Any], data_info: dict[str, Any]) -> None:
        super().__init__(optimizer)
        self.save_hyperparameters()
        from tasks.detection.task import MODEL_BUILDERS

        kwargs = dict(model)
        self.model = MODEL_BUILDERS[kwargs.pop("name")](**kwargs)
        self.class_names: list[str] = list(data_info["class_names"])
        self.label_to_cat_id = {int(k): int(v) for k, v in data_info["label_to_cat_id"].items()}
        self.cat_id_to_name = {self.label_to_cat_id[i + 1]: name for i, name in enumerate(self.class_names)}
        self._results: dict[int, list[dict]] = {}
        self._metrics: dict[str, Any] = {}
        self._predictions: list[dict] = []
        self.coco_table = ""

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets, skipped = batch
        if not images:  # every image of the batch was unreadable
            return None
        losses = self.model(images, targets)
        loss = sum(losses.values())
        size = len(images)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=size)
        if skipped:
            self.log("train/skipped_images", float(skipped), reduce_fx="sum", batch_size=size)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._results = {}

    def validation_step(self, batch, batch_idx: int) -> None:
        images, targets, _ = batch
        detections = self.model(images)
        for target, detection in zip(targets, detections, strict=False):
            image_id = int(target["image_id"])
            self._results[image_id] = to_coco_results(image_id, detection, self.label_to_cat_id)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        gathered = [self._results]
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, self._results)
        metrics: dict[str, Any] = {}
        table = ""
        predictions: list[dict] = []
        if self.trainer.is_global_zero:
            merged = deduplicate(gathered)
            coco = self.trainer.datamodule.val_dataset.coco
            metrics, table = coco_metrics(coco, merged)
            predictions = [d for image_id in sorted(merged) for d in merged[image_id]]
        metrics, table = self.trainer.strategy.broadcast((metrics, table), src=0)
        self._metrics, self.coco_table, self._predictions = metrics, table, predictions
        for name in METRIC_NAMES:
            value = metrics.get(name)
            self.log(f"val/{name}", -1.0 if value is None else float(value), prog_bar=name in ("map", "map_50"))

    def final_metrics(self) -> dict[str, Any]:
        return dict(self._metrics)

    def write_outputs(self, run_dir: Path) -> None:
        """predictions.json in COCO results format (the dataset's own image and category ids)."""
        import json

        (Path(run_dir) / "predictions.json").write_text(json.dumps(self._predictions))
        (Path(run_dir) / "coco_eval.txt").write_text(self.coco_table)
