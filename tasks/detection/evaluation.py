"""COCO evaluation of detections, each image counted once however many processes ran."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

__all__ = ["to_coco_results", "deduplicate", "coco_metrics", "coco_evaluation", "CocoEvaluation", "METRIC_NAMES"]

# COCOeval.stats indices of the metrics we report.
METRIC_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def to_coco_results(
    image_id: int, detections: Mapping[str, torch.Tensor], label_to_cat_id: Mapping[int, int]
) -> list[dict[str, Any]]:
    """One image's detections (x1y1x2y2 boxes in original pixels, contiguous labels) in COCO results format."""
    boxes = detections["boxes"].detach().cpu().double()
    scores = detections["scores"].detach().cpu().tolist()
    labels = detections["labels"].detach().cpu().tolist()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    return [
        {
            "image_id": int(image_id),
            "category_id": int(label_to_cat_id[int(label)]),
            "bbox": [round(v, 2) for v in box],
            "score": round(float(score), 5),
        }
        for box, score, label in zip(xywh, scores, labels, strict=False)
    ]


def deduplicate(per_process: Iterable[Mapping[int, list[dict]]]) -> dict[int, list[dict]]:
    """Merge {image_id: results} from every process, keeping each image once (a distributed sampler pads the
    last batches with repeated images)."""
    merged: dict[int, list[dict]] = {}
    for results in per_process:
        for image_id, detections in results.items():
            merged.setdefault(int(image_id), list(detections))
    return merged


@dataclass(frozen=True)
class CocoEvaluation:
    """One COCO box evaluation: ``metrics``, the printed ``table`` and COCOeval's accumulated ``precision``
    (T IoU thresholds 0.50:0.05:0.95, R 101 recall points, K categories in ``cat_ids`` order, A areas, M max
    detections; -1 where a category has no ground truth), None when nothing was evaluated."""

    metrics: dict[str, Any]
    table: str
    precision: np.ndarray | None = None
    recall_points: np.ndarray | None = None
    cat_ids: tuple[int, ...] = ()

    def pr_curves(self, cat_names: Mapping[int, str]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Per category with ground truth, by name: {"IoU 0.5": (recall, precision), "IoU 0.5:0.95": (recall,
        precision averaged over the 10 thresholds)}, area all, 100 detections per image. The mean of a curve is
        that category's AP."""
        if self.precision is None or self.recall_points is None:
            return {}
        per_category = self.precision[:, :, :, 0, -1]  # area "all", maxDets 100
        curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for k, cat_id in enumerate(self.cat_ids):
            if (per_category[:, :, k] < 0).all():  # no ground truth of this category
                continue
            precision = per_category[:, :, k].clip(min=0)
            curves[cat_names.get(cat_id, str(cat_id))] = {
                "IoU 0.5": (self.recall_points, precision[0]),
                "IoU 0.5:0.95": (self.recall_points, precision.mean(axis=0)),
            }
        return curves


def coco_metrics(coco_gt: COCO, results: Mapping[int, list[dict]]) -> tuple[dict[str, Any], str]:
    """COCO box metrics over exactly the images in ``results``; returns (metrics, the printed COCO table).

    Metrics are COCO's mAP@[.5:.95], @.5, @.75 and by object size; a size with no objects is None.
    """
    evaluation = coco_evaluation(coco_gt, results)
    return evaluation.metrics, evaluation.table


def coco_evaluation(coco_gt: COCO, results: Mapping[int, list[dict]]) -> CocoEvaluation:
    """``coco_metrics`` with what COCOeval accumulated kept (for precision-recall curves)."""
    image_ids = sorted(results)
    detections = [d for image_id in image_ids for d in results[image_id]]
    metrics: dict[str, Any] = {"num_images": len(image_ids), "num_detections": len(detections)}
    if not image_ids:
        return CocoEvaluation({**metrics, **{name: None for name in METRIC_NAMES}}, "no images evaluated\n")
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        if detections:
            coco_dt = coco_gt.loadRes([dict(d) for d in detections])  # loadRes adds keys to each dict it gets
        else:  # loadRes rejects an empty list: evaluate against no detections
            coco_dt = COCO()
            coco_dt.dataset = {"images": coco_gt.dataset["images"], "categories": coco_gt.dataset["categories"]}
            coco_dt.dataset["annotations"] = []
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        evaluator.summarize()
    stats = np.asarray(evaluator.stats, dtype=float)
    for index, name in enumerate(METRIC_NAMES):
        metrics[name] = None if stats[index] < 0 else round(float(stats[index]), 4)
    return CocoEvaluation(
        metrics,
        table.getvalue(),
        np.asarray(evaluator.eval["precision"]),
        np.asarray(evaluator.params.recThrs),
        tuple(int(cat_id) for cat_id in evaluator.params.catIds),
    )
