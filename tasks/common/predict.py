"""The prediction loop every task shares: image files in, predictions.json (and the task's pictures) out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from tasks.common.files import collect_images
from tasks.common.images import load_rgb
from tasks.common.module import TaskModule

__all__ = ["predict_images"]


@torch.no_grad()
def predict_images(
    module: TaskModule,
    inputs: Sequence[str | Path],
    out: str | Path,
    score_threshold: float | None = None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Run ``module`` on every image file under ``inputs`` (files or folders, searched recursively).

    Writes ``out/predictions.json``, a list of the task's records, each with the image's ``file``, and, for tasks
    that draw their predictions, ``out/<image name>.jpg`` (``<image name>_pred.jpg`` where that is one of the input
    images: an input file is never written over). Returns the list.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    module.eval()
    paths = collect_images(inputs)
    originals = {path.resolve() for path in paths}  # never drawn over, even when ``out`` is their folder
    records: list[dict[str, Any]] = []
    used_names: set[str] = set()
    for start in tqdm(range(0, len(paths), batch_size), desc="predict", unit="batch"):
        chunk = paths[start : start + batch_size]
        images = [load_rgb(path) for path in chunk]
        per_image = module.predict_records(images, score_threshold)
        for path, image, image_records in zip(chunk, images, per_image, strict=True):
            records.extend({"file": str(path), **record} for record in image_records)
            picture = module.draw_prediction(image, image_records)
            if picture is None:
                continue
            name = path.stem
            while name in used_names or (out / f"{name}.jpg").resolve() in originals:
                name += "_pred" if (out / f"{name}.jpg").resolve() in originals else "_"
            used_names.add(name)
            Image.fromarray(picture).save(out / f"{name}.jpg", quality=92)
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    return records
