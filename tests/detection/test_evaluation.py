"""COCO box metrics on hand-made ground truth and detections whose metrics are worked out by hand.

COCOeval's AP is the mean, over the 10 IoU thresholds 0.50:0.05:0.95 and the categories that have ground truth,
of the precision (made non-increasing from the right) read at the 101 recall points 0.00:0.01:1.00; a recall
point beyond the highest recall reached reads 0.
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from tasks.detection.drawing import plot_pr_curves
from tasks.detection.evaluation import coco_evaluation, coco_metrics, to_coco_results

# Gapped ids, as in COCO (1, 3, 18 are person, car, dog there).
PERSON, CAR, DOG = 1, 3, 18
CATEGORIES = [{"id": PERSON, "name": "person"}, {"id": CAR, "name": "car"}, {"id": DOG, "name": "dog"}]
SMALL_BOX = [10.0, 10.0, 10.0, 10.0]  # xywh, area 100: COCO's "small" (area <= 32**2)
MEDIUM_BOX = [8.0, 4.0, 40.0, 40.0]  # area 1600: COCO's "medium" (32**2 < area <= 96**2)
SIZE_METRICS = ("map_small", "map_medium", "map_large")
ALL_METRICS = ("map", "map_50", "map_75", *SIZE_METRICS)


def ground_truth(image_ids: list[int], boxes: list[tuple[int, int, list[float]]]) -> COCO:
    """A COCO ground truth over 64x48 images with ``boxes`` as (image_id, category_id, xywh)."""
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i, "width": 64, "height": 48, "file_name": f"{i}.png"} for i in image_ids],
        "annotations": [
            {
                "id": k,
                "image_id": image_id,
                "category_id": cat_id,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
            for k, (image_id, cat_id, bbox) in enumerate(boxes, start=1)
        ],
        "categories": CATEGORIES,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def detection(image_id: int, category_id: int, bbox: list[float], score: float) -> dict[str, Any]:
    return {"image_id": image_id, "category_id": category_id, "bbox": list(bbox), "score": score}


@pytest.fixture
def one_car() -> COCO:
    """Image 1 holds one small car; image 2 holds nothing."""
    return ground_truth([1, 2], [(1, CAR, SMALL_BOX)])


def test_perfect_detection_gives_map_1(one_car: COCO) -> None:
    metrics, _ = coco_metrics(one_car, {1: [detection(1, CAR, SMALL_BOX, 0.9)]})
    assert metrics["map"] == 1.0
    assert metrics["map_50"] == 1.0
    assert metrics["map_75"] == 1.0


def test_detection_with_iou_0_68_counts_at_map_50_not_map_75(one_car: COCO) -> None:
    # 10x6.8 inside the 10x10 truth: IoU 68/100, a match at the thresholds 0.50, 0.55, 0.60, 0.65 (4 of 10).
    metrics, _ = coco_metrics(one_car, {1: [detection(1, CAR, [10.0, 10.0, 10.0, 6.8], 0.9)]})
    assert metrics["map_50"] == 1.0
    assert metrics["map_75"] == 0.0
    assert metrics["map"] == pytest.approx(0.4)


def test_detection_of_the_wrong_class_gives_map_0(one_car: COCO) -> None:
    # The car is missed (AP 0); the dog has no ground truth, so its AP is undefined and not averaged in.
    metrics, _ = coco_metrics(one_car, {1: [detection(1, DOG, SMALL_BOX, 0.9)]})
    assert metrics["map"] == 0.0


def test_false_positive_ranked_above_the_true_positive_halves_ap(one_car: COCO) -> None:
    # Ranked: FP then TP, so precision 0 then 1/2 at recall 0 then 1; made non-increasing: 1/2 at every recall.
    results = {1: [detection(1, CAR, [40.0, 30.0, 10.0, 10.0], 0.9), detection(1, CAR, SMALL_BOX, 0.8)]}
    metrics, _ = coco_metrics(one_car, results)
    assert metrics["map"] == pytest.approx(0.5)


def test_false_positive_ranked_below_the_true_positive_leaves_ap_at_1(one_car: COCO) -> None:
    results = {1: [detection(1, CAR, [40.0, 30.0, 10.0, 10.0], 0.1), detection(1, CAR, SMALL_BOX, 0.8)]}
    metrics, _ = coco_metrics(one_car, results)
    assert metrics["map"] == 1.0


def test_image_with_ground_truth_but_no_detections_halves_recall() -> None:
    # Two cars, one found: recall 1/2 at precision 1, so the 51 recall points 0.00..0.50 read 1, the other 50 read 0.
    coco = ground_truth([1, 2], [(1, CAR, SMALL_BOX), (2, CAR, SMALL_BOX)])
    metrics, _ = coco_metrics(coco, {1: [detection(1, CAR, SMALL_BOX, 0.9)], 2: []})
    assert metrics["map"] == pytest.approx(51 / 101, abs=1e-4)


def test_detection_on_an_image_without_ground_truth_lowers_precision(one_car: COCO) -> None:
    # The false positive on image 2 outranks the true positive on image 1: AP 1/2 as above.
    results = {1: [detection(1, CAR, SMALL_BOX, 0.5)], 2: [detection(2, CAR, SMALL_BOX, 0.9)]}
    metrics, _ = coco_metrics(one_car, results)
    assert metrics["map"] == pytest.approx(0.5)


def test_results_with_no_detections_at_all_give_map_0(one_car: COCO) -> None:
    metrics, _ = coco_metrics(one_car, {1: [], 2: []})
    assert {name: metrics[name] for name in ("map", "map_50", "map_75")} == {"map": 0.0, "map_50": 0.0, "map_75": 0.0}
    assert (metrics["num_images"], metrics["num_detections"]) == (2, 0)


def test_results_over_no_images_give_every_metric_none(one_car: COCO) -> None:
    metrics, _ = coco_metrics(one_car, {})
    assert {name: metrics[name] for name in ALL_METRICS} == dict.fromkeys(ALL_METRICS)
    assert metrics["num_images"] == 0


def test_size_buckets_absent_from_the_ground_truth_are_none() -> None:
    coco = ground_truth([1], [(1, CAR, MEDIUM_BOX)])
    metrics, _ = coco_metrics(coco, {1: [detection(1, CAR, MEDIUM_BOX, 0.9)]})
    assert {name: metrics[name] for name in SIZE_METRICS} == {"map_small": None, "map_medium": 1.0, "map_large": None}


def test_ground_truth_of_images_left_out_of_the_results_is_not_counted() -> None:
    coco = ground_truth([1, 2], [(1, CAR, SMALL_BOX), (2, CAR, SMALL_BOX)])
    metrics, _ = coco_metrics(coco, {1: [detection(1, CAR, SMALL_BOX, 0.9)]})
    assert metrics["map"] == 1.0
    assert metrics["num_images"] == 1


def test_metrics_come_with_cocos_printed_table(one_car: COCO) -> None:
    _, table = coco_metrics(one_car, {1: [detection(1, CAR, SMALL_BOX, 0.9)]})
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.000" in table


def test_coco_metrics_leaves_the_callers_detections_unchanged(one_car: COCO) -> None:
    # The detection module writes these same dicts to predictions.json after computing the metrics.
    results = {1: [detection(1, CAR, SMALL_BOX, 0.9)]}
    before = copy.deepcopy(results)
    coco_metrics(one_car, results)
    assert results == before


def test_to_coco_results_converts_x1y1x2y2_to_xywh() -> None:
    detections = {
        "boxes": torch.tensor([[10.5, 20.25, 30.5, 60.75]]),
        "scores": torch.tensor([0.5]),
        "labels": torch.tensor([1]),
    }
    (result,) = to_coco_results(7, detections, {1: PERSON})
    assert result["bbox"] == [10.5, 20.25, 20.0, 40.5]


def test_to_coco_results_maps_contiguous_labels_to_gapped_category_ids() -> None:
    detections = {
        "boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 5.0], [2.0, 2.0, 6.0, 6.0]]),
        "scores": torch.tensor([0.9, 0.8, 0.7]),
        "labels": torch.tensor([3, 1, 2]),
    }
    results = to_coco_results(7, detections, {1: PERSON, 2: CAR, 3: DOG})
    assert [r["category_id"] for r in results] == [DOG, PERSON, CAR]
    assert [r["image_id"] for r in results] == [7, 7, 7]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.8, 0.7])


def test_to_coco_results_rounds_float32_boxes_to_hundredths() -> None:
    detections = {
        "boxes": torch.tensor([[0.1, 0.2, 1.3, 2.456]]),
        "scores": torch.tensor([0.25]),
        "labels": torch.tensor([2]),
    }
    (result,) = to_coco_results(1, detections, {2: CAR})
    assert result["bbox"] == [0.1, 0.2, 1.2, 2.26]


def test_to_coco_results_of_no_detections_is_empty() -> None:
    detections = {"boxes": torch.zeros((0, 4)), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)}
    assert to_coco_results(1, detections, {1: PERSON}) == []


def test_converted_detections_score_like_the_boxes_they_came_from(one_car: COCO) -> None:
    detections = {
        "boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([2]),
    }
    metrics, _ = coco_metrics(one_car, {1: to_coco_results(1, detections, {1: PERSON, 2: CAR, 3: DOG})})
    assert metrics["map"] == 1.0


def test_pr_curves_give_one_curve_per_class_with_ground_truth_whose_mean_is_its_ap(tmp_path) -> None:
    # Person: one of two found, at IoU 1 (AP 51/101 at every threshold); car: found at IoU 0.68 (AP50 1, AP 0.4:
    # 4 of the 10 thresholds); dog: no ground truth, left out rather than drawn as a curve of -1.
    coco = ground_truth([1, 2], [(1, PERSON, SMALL_BOX), (2, PERSON, SMALL_BOX), (1, CAR, MEDIUM_BOX)])
    results = {1: [detection(1, PERSON, SMALL_BOX, 0.9), detection(1, CAR, [8.0, 4.0, 40.0, 27.2], 0.8)], 2: []}

    evaluation = coco_evaluation(coco, results)
    curves = evaluation.pr_curves({cat["id"]: cat["name"] for cat in CATEGORIES})
    plot_pr_curves(curves, tmp_path / "pr_curves.png")

    assert list(curves) == ["person", "car"]
    person, car = curves["person"], curves["car"]
    assert set(person) == {"IoU 0.5", "IoU 0.5:0.95"}
    recall, precision = person["IoU 0.5"]
    assert recall.shape == precision.shape == (101,) and recall[-1] == 1.0
    assert precision.mean() == pytest.approx(51 / 101) and person["IoU 0.5:0.95"][1].mean() == pytest.approx(51 / 101)
    assert car["IoU 0.5"][1].mean() == pytest.approx(1.0) and car["IoU 0.5:0.95"][1].mean() == pytest.approx(0.4)
    assert evaluation.metrics["map"] == pytest.approx((51 / 101 + 0.4) / 2, abs=1e-4)
    assert Image.open(tmp_path / "pr_curves.png").format == "PNG"


def test_pr_curves_of_an_evaluation_over_no_images_are_empty_and_still_drawn(one_car: COCO, tmp_path) -> None:
    curves = coco_evaluation(one_car, {}).pr_curves({CAR: "car"})
    plot_pr_curves(curves, tmp_path / "pr_curves.png")

    assert curves == {} and (tmp_path / "pr_curves.png").is_file()
