"""The prediction loop every task shares: image files in, predictions.json (and the task's pictures) out."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm import tqdm

from tasks.common.files import collect_images
from tasks.common.images import load_rgb
from tasks.common.module import TaskModule

__all__ = ["predict_images", "describe_predictions"]


@torch.no_grad()
def predict_images(
    module: TaskModule,
    inputs: Sequence[str | Path],
    out: str | Path,
    score_threshold: float | None = None,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Run ``module`` on every image file under ``inputs`` (files or folders, searched recursively).

    Writes ``out/predictions.json``, a list of all the task's records, each with the image's ``file``, and, for
    tasks that draw their predictions, ``out/<image name>.jpg`` (``<image name>_pred.jpg`` where that is one of the
    input images: an input file is never written over) showing those scored at or above ``score_threshold``
    (None: the task's ``default_score_threshold``). Returns the list.
    """
    threshold = _threshold(module, score_threshold)
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
        per_image = module.predict_records(images)
        for path, image, image_records in zip(chunk, images, per_image, strict=True):
            records.extend({"file": str(path), **record} for record in image_records)
            picture = module.draw_prediction(image, image_records, threshold)
            if picture is None:
                continue
            name = path.stem
            while name in used_names or (out / f"{name}.jpg").resolve() in originals:
                name += "_pred" if (out / f"{name}.jpg").resolve() in originals else "_"
            used_names.add(name)
            Image.fromarray(picture).save(out / f"{name}.jpg", quality=92)
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    return records


def _threshold(module: TaskModule, score_threshold: float | None) -> float:
    if score_threshold is not None:
        return score_threshold
    return module.default_score_threshold if module.default_score_threshold is not None else 0.0


def describe_predictions(
    module: TaskModule,
    files: Sequence[str | Path],
    records: Sequence[dict[str, Any]],
    score_threshold: float | None = None,
    few: int = 10,
    shown: int = 3,
) -> list[str]:
    """Lines that tell the user what ``predict_images`` found in ``files`` (``records`` as it returned them), for
    tasks with scores: up to ``few`` images one line each ("dog.jpg: Chihuahua 0.91, beagle 0.05, ..."), their
    ``shown`` best predictions scored at or above ``score_threshold`` (None: the task's default); more images in
    one summary line, counting each image under its best prediction."""
    if module.default_score_threshold is None:
        return []
    threshold = _threshold(module, score_threshold)
    by_file: dict[str, list[dict[str, Any]]] = {str(path): [] for path in files}
    for record in records:
        by_file.setdefault(record["file"], []).append(record)
    scores = {
        file: [pair for pair in module.prediction_scores(image_records) if pair[1] >= threshold]
        for file, image_records in by_file.items()
    }
    below = f"nothing scored at or above {threshold:g}"
    if len(scores) <= few:
        lines = []
        for file, pairs in scores.items():
            best = ", ".join(f"{label} {score:.2f}" for label, score in pairs[:shown])
            more = f" (+{len(pairs) - shown} more)" if len(pairs) > shown else ""
            lines.append(f"{file}: {best}{more}" if pairs else f"{file}: {below}")
        return lines
    counts = Counter(pairs[0][0] for pairs in scores.values() if pairs)
    listed = ", ".join(f"{label} {count}" for label, count in counts.most_common(8))
    others = f", and {len(counts) - 8} more" if len(counts) > 8 else ""
    empty = sum(not pairs for pairs in scores.values())
    return [
        f"{len(scores)} images, each counted under its best prediction: {listed or '-'}{others}"
        + (f"; {empty} with {below}" if empty else "")
    ]
