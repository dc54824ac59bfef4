"""The LightningModule of detection: trains any torchvision-style detector and evaluates it with COCO metrics."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from tasks.common.data import Batch
from tasks.common.images import load_rgb
from tasks.common.module import TaskModule
from tasks.detection.drawing import (
    Box,
    Detection,
    GroundTruth,
    class_colour,
    draw_boxes,
    draw_evaluation,
    plot_pr_curves,
)
from tasks.detection.evaluation import METRIC_NAMES, CocoEvaluation, coco_evaluation, to_coco_results
from tasks.detection.faster_rcnn import PROFILE_IMAGE_SIZE

__all__ = ["DetectionModule"]

# Validation images drawn (ground truth and detections) into the run's or the evaluation's pictures/.
EVAL_PICTURES = 16


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
        "rpn_nms_threshold",
    )
    # Anchor matching, loss weighting and sampling: training only. Everything else (input size, anchors, RoI
    # crops, backbone options) is the architecture.
    training_keys = (
        *TaskModule.training_keys,
        "iou_threshold",  # SSD
        "neg_pos_ratio",
        "min_negatives_per_image",
        "object_balance",
        "rpn_pre_nms_top_n_train",  # Faster-RCNN
        "proposals_train",
        "rpn_fg_iou_threshold",
        "rpn_bg_iou_threshold",
        "rpn_batch_size_per_image",
        "rpn_positive_fraction",
        "box_fg_iou_threshold",
        "box_bg_iou_threshold",
        "box_batch_size_per_image",
        "box_positive_fraction",
    )
    checkpoint_data_keys = ("class_names", "label_to_cat_id")
    prediction_summary = "detections, and one picture per image"
    default_score_threshold = 0.3  # what pictures show: a trained detector's boxes below it are mostly clutter

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
        self._evaluation: CocoEvaluation | None = None
        self._val_dataset: Any = None

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
        self._val_dataset = self.trainer.datamodule.val_dataset
        self._evaluation = coco_evaluation(self._val_dataset.coco, by_image)
        self.coco_table = self._evaluation.table
        return self._evaluation.metrics

    def write_outputs(self, run_dir: Path) -> None:
        """predictions.json in COCO results format (the dataset's own image and category ids), coco_eval.txt,
        pr_curves.png (precision-recall per class, beside coco_eval.txt) and pictures/: the first validation images
        with their ground truth and detections (see ``draw_evaluation``)."""
        run_dir = Path(run_dir)
        detections = [d for image_id, image_detections in sorted(self.all_results.values()) for d in image_detections]
        (run_dir / "predictions.json").write_text(json.dumps(detections))
        (run_dir / "coco_eval.txt").write_text(self.coco_table)
        if self._evaluation is None or self._val_dataset is None:
            return
        coco = self._val_dataset.coco
        names = {cat_id: str(cat["name"]) for cat_id, cat in coco.cats.items()}
        map_50 = self._evaluation.metrics.get("map_50")
        title = f"mAP@0.5 {map_50:.3f} on {self._evaluation.metrics['num_images']} images" if map_50 is not None else ""
        plot_pr_curves(self._evaluation.pr_curves(names), run_dir / "pr_curves.png", title)
        self._write_pictures(run_dir / "pictures", names, EVAL_PICTURES)

    def _write_pictures(self, folder: Path, names: Mapping[int, str], count: int) -> None:
        """The first ``count`` validation images of the last validation, each with its ground truth (crowd regions
        left out) and its detections scored at or above ``default_score_threshold``, as folder/<image name>.jpg."""
        coco = self._val_dataset.coco
        folder.mkdir(parents=True, exist_ok=True)
        for image_id, image_detections in list(self.all_results.values())[:count]:
            truth = [
                GroundTruth(_xyxy(ann["bbox"]), names[ann["category_id"]])
                for ann in coco.imgToAnns.get(image_id, [])
                if not ann.get("iscrowd", 0)
            ]
            shown = [
                Detection(_xyxy(d["bbox"]), names[d["category_id"]], d["score"])
                for d in image_detections
                if d["score"] >= self.default_score_threshold
            ]
            path = self._val_dataset.image_path(image_id)
            picture = draw_evaluation(load_rgb(path), truth, shown)
            Image.fromarray(picture).save(folder / f"{path.stem}.jpg", quality=92)

    def predict_records(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per image, every detection the model keeps (those scored at or above ``model.score_threshold``, at most
        ``model.detections_per_image``): {"bbox" [x, y, w, h] in pixels, "category_id", "category", "score"}."""
        tensors = [torch.from_numpy(image).permute(2, 0, 1).float().div(255).to(self.device) for image in images]
        records = []
        for detection in self.model(tensors):
            boxes = detection["boxes"].double()
            xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
            scores, labels = detection["scores"].tolist(), detection["labels"].tolist()
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

    def draw_prediction(self, image: np.ndarray, records: list[dict[str, Any]], score_threshold: float) -> np.ndarray:
        """The image with each detection scored at or above ``score_threshold`` drawn: its box in its class's colour
        and "<class> <score>" on a filled label inside the picture, the most confident on top."""
        shown = sorted((r for r in records if r["score"] >= score_threshold), key=lambda r: r["score"])
        boxes = [
            Box(
                _xyxy(r["bbox"]),
                class_colour(self.cat_id_to_label[r["category_id"]]),
                f"{r['category']} {r['score']:.2f}",
            )
            for r in shown
        ]
        return draw_boxes(image, boxes)

    def prediction_scores(self, records: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """(class, score) of each detection, the most confident first."""
        return sorted(((r["category"], r["score"]) for r in records), key=lambda pair: -pair[1])

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[list[Tensor], str]:
        """One image: the detector's fixed input size (SSD), or COCO's common 640x480 resized as the detector is
        configured (Faster-RCNN)."""
        height, width = getattr(model.transform, "fixed_size", None) or PROFILE_IMAGE_SIZE
        return [torch.rand(3, height, width)], f"one {width}x{height} image"


def _xyxy(xywh: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = xywh
    return (x, y, x + w, y + h)
