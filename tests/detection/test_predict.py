"""Detection prediction: predictions.json keeps every detection the model returns, the score threshold only
decides what the pictures and the printout show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from tasks.common.predict import describe_predictions, predict_images
from tasks.detection.drawing import class_colour
from tasks.detection.module import DetectionModule


class FixedDetector(nn.Module):
    """Returns the same two detections for every image: a circle scored 0.9 and a star scored 0.2."""

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return [
            {
                "boxes": torch.tensor([[4.0, 20.0, 40.0, 60.0], [50.0, 20.0, 90.0, 60.0]]),
                "scores": torch.tensor([0.9, 0.2]),
                "labels": torch.tensor([1, 2]),
            }
            for _ in images
        ]


def _module() -> DetectionModule:
    data_info = {"class_names": ["circle", "star"], "label_to_cat_id": {1: 1, 2: 7}, "num_classes": 2}
    return DetectionModule(FixedDetector(), {"name": "fixed"}, None, data_info)


def _has(picture: np.ndarray, colour: str) -> bool:
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return bool((np.abs(picture.astype(int) - rgb).max(axis=-1) < 8).sum() > 30)


def test_predictions_keep_the_detections_below_the_threshold_that_the_picture_leaves_out(tmp_path: Path) -> None:
    Image.new("RGB", (96, 80), (128, 128, 128)).save(tmp_path / "shapes.png")

    records = predict_images(_module(), [tmp_path / "shapes.png"], tmp_path / "out", score_threshold=0.5)

    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved == records
    assert [(r["category"], r["category_id"], r["score"]) for r in records] == [("circle", 1, 0.9), ("star", 7, 0.2)]
    picture = np.asarray(Image.open(tmp_path / "out" / "shapes.jpg"))
    assert _has(picture, class_colour(1)) and not _has(picture, class_colour(2))


def test_the_printout_lists_what_the_threshold_shows() -> None:
    module = _module()
    records = [{"file": "a.jpg", **r} for r in module.predict_records([np.zeros((80, 96, 3), np.uint8)])[0]]

    assert describe_predictions(module, ["a.jpg", "b.jpg"], records) == [
        "a.jpg: circle 0.90",
        "b.jpg: nothing scored at or above 0.3",
    ]
    assert describe_predictions(module, ["a.jpg"], records, score_threshold=0.1) == ["a.jpg: circle 0.90, star 0.20"]
    files = [f"{i}.jpg" for i in range(12)]
    many = describe_predictions(module, files, [{**record, "file": "3.jpg"} for record in records])
    assert many == [
        "12 images, each counted under its best prediction: circle 1; 11 with nothing scored at or above 0.3"
    ]
