"""The LightningModule of detection: trains any torchvision-style detector and evaluates it with COCO metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.utils import draw_bounding_boxes

from tasks.common.data import Batch
from tasks.common.module import TaskModule
from tasks.detection.evaluation import METRIC_NAMES, coco_metrics, to_coco_results
from tasks.detection.faster_rcnn import PROFILE_IMAGE_SIZE

__all__ = ["DetectionModule"]

# Detections below this score are left out of predict's pictures and records unless the user says otherwise.
PICTURE_SCORE_THRESHOLD = 0.3
_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4"]


class DetectionModule(TaskModule):
    """Wraps a torchvision-style detector: ``model(images, targets)`` -> named losses in training, ``model(images)``
    -> per image {"boxes" (N, 4) x1y1x2y2 in input pixels, "scores" (N,), "labels" (N,) in 1..C} in eval mode.

    ``data_info`` holds ``num_classes``, ``class_names`` and ``label_to_cat_id`` (contiguous label -> the
    dataset's category id). Validation results are each image's detections in COCO results format.
    """

    monitor = "val/map"
    logged_metrics = METRIC_NAMES
    progress_bar_metrics = ("map", "map_50")
    inference_keys = (
        "score_threshold",
        "nms_threshold",
        "detections_per_image",
        "topk_candidates",  # SSD
        "rpn_pre_nms_top_n_test",  # Faster-RCNN
        "proposals_test",
    )
    checkpoint_data_keys = ("class_names", "label_to_cat_id")
    prediction_summary = "detections, and one picture per image"

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        data_info: Mapping[str, Any],
    ) -> None:
        super().__init__(model, model_config, optimizer, data_info)
        self.class_names: list[str] = list(data_info["class_names"])
        self.label_to_cat_id = {int(k): int(v) for k, v in data_info["label_to_cat_id"].items()}
        self.cat_id_to_label = {cat_id: label for label, cat_id in self.label_to_cat_id.items()}
        self.coco_table = ""

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        losses = self.model(batch.inputs, batch.targets)
        return sum(losses.values()), losses

    def validation_results(self, batch: Batch) -> list[tuple[int, list[dict[str, Any]]]]:
        """Per image (COCO image id, its detections in COCO results format, boxes in original pixels)."""
        detections = self.model(batch.inputs)
        return [
            (int(target["image_id"]), to_coco_results(int(target["image_id"]), detection, self.label_to_cat_id))
            for target, detection in zip(batch.targets, detections, strict=True)
        ]

    def compute_metrics(self, results: dict[int, tuple[int, list[dict[str, Any]]]]) -> dict[str, Any]:
        by_image = dict(results.values())
        metrics, self.coco_table = coco_metrics(self.trainer.datamodule.val_dataset.coco, by_image)
        return metrics

    def write_outputs(self, run_dir: Path) -> None:
        """predictions.json in COCO results format (the dataset's own image and category ids) and coco_eval.txt."""
        detections = [d for image_id, image_detections in sorted(self.all_results.values()) for d in image_detections]
        (Path(run_dir) / "predictions.json").write_text(json.dumps(detections))
        (Path(run_dir) / "coco_eval.txt").write_text(self.coco_table)

    def predict_records(self, images: list[np.ndarray], score_threshold: float | None) -> list[list[dict[str, Any]]]:
        """Per image, its detections at or above ``score_threshold`` (default 0.3): {"bbox" [x, y, w, h] in pixels,
        "category_id", "category", "score"}."""
        threshold = PICTURE_SCORE_THRESHOLD if score_threshold is None else score_threshold
        tensors = [torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device) for image in images]
        records = []
        for detection in self.model(tensors):
            keep = detection["scores"] >= threshold
            boxes = detection["boxes"][keep].double()
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
            scores, labels = detection["scores"][keep].tolist(), detection["labels"][keep].tolist()
            records.append(
                [
                    {
                        "bbox": [round(value, 2) for value in box],
                        "category_id": self.label_to_cat_id[int(label)],
                        "category": self.class_names[int(label) - 1],
                        "score": round(float(score), 4),
                    }
                    for box, score, label in zip(xywh, scores, labels, strict=True)
                ]
            )
        return records

    def draw_prediction(self, image: np.ndarray, records: list[dict[str, Any]]) -> np.ndarray:
        """The image with each detection's box, class name and score drawn."""
        if not records:  # torchvision warns on an empty box list: an image with nothing found is saved as is
            return image
        xywh = torch.tensor([record["bbox"] for record in records], dtype=torch.float64)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        labels = [self.cat_id_to_label[record["category_id"]] for record in records]
        picture = draw_bounding_boxes(
            torch.from_numpy(image).permute(2, 0, 1),
            boxes,
            labels=[f"{record['category']} {record['score']:.2f}" for record in records],
            colors=[_PALETTE[(label - 1) % len(_PALETTE)] for label in labels],
            width=2,
        )
        return picture.permute(1, 2, 0).numpy()

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[list[Tensor], str]:
        """One image: the detector's fixed input size (SSD), or COCO's common 640x480 resized as the detector is
        configured (Faster-RCNN)."""
        height, width = getattr(model.transform, "fixed_size", None) or PROFILE_IMAGE_SIZE
        return [torch.rand(3, height, width)], f"one {width}x{height} image"
