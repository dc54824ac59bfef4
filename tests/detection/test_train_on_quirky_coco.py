"""The demo config trains on any COCO-format dataset by changing data.root only: gapped category ids, crowd
regions, empty, greyscale, RGBA and CMYK images, boxes outside the image."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_config_trains_and_evaluates_on_a_quirky_coco_dataset(quirky_coco, tmp_path: Path) -> None:
    image_dir, ann_file = quirky_coco
    data = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        shutil.copytree(image_dir, data / split)
        (data / "annotations").mkdir(parents=True, exist_ok=True)
        shutil.copy(ann_file, data / "annotations" / f"instances_{split}.json")
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "train.py"),
            str(ROOT / "configs" / "demo_shapes_ssd.yaml"),
            "--out",
            str(run_dir),
            f"data.root={data}",
            "model.image_size=96",
            # After a few steps every score is below the default 0.01: keep them all, so that the checks of the
            # predictions below have predictions to check.
            "model.score_threshold=0.0",
            "data.image_size=96",
            "data.batch_size=2",
            "data.num_workers=0",
            "trainer.max_epochs=1",
            "min_steps=0",
            "trainer.enable_progress_bar=false",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 5
    saved = json.loads((run_dir / "predictions.json").read_text())
    assert saved and metrics["num_detections"] == len(saved)
    # Labels 1..3 map back to the file's gapped category ids, and boxes to each image's original pixels (the model
    # saw 96x96 inputs).
    assert {p["category_id"] for p in saved} == {3, 8, 15}
    sizes = {image["id"]: (image["width"], image["height"]) for image in json.loads(ann_file.read_text())["images"]}
    assert {p["image_id"] for p in saved} == set(sizes)
    for prediction in saved:
        x, y, w, h = prediction["bbox"]
        width, height = sizes[prediction["image_id"]]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0
        assert x + w <= width + 1e-3 and y + h <= height + 1e-3
