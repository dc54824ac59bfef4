"""Run a trained detector on image files: annotated pictures and predictions.json."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import draw_bounding_boxes
from tqdm import tqdm

from tasks.common.files import collect_images
from tasks.common.images import load_rgb

__all__ = ["predict_images"]

_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4"]


@torch.no_grad()
def predict_images(
    module, inputs: Sequence[str | Path], out: str | Path, score_threshold: float = 0.3, batch_size: int = 8
) -> list[dict]:
    """Detect objects in each input image; write ``out/<name>.jpg`` with boxes, class names and scores drawn,
    and ``out/predictions.json``: a list of {"file", "bbox" [x, y, w, h] in pixels, "category_id", "category",
    "score"}. Returns that list."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = module.model.eval()
    paths = collect_images(inputs)
    records: list[dict] = []
    used_names: set[str] = set()
    for start in tqdm(range(0, len(paths), batch_size), desc="predict", unit="batch"):
        chunk = paths[start : start + batch_size]
        arrays = [load_rgb(path) for path in chunk]
        images = [torch.from_numpy(a).permute(2, 0, 1).float().div(255) for a in arrays]
        for path, array, detection in zip(chunk, arrays, model(images), strict=False):
            keep = detection["scores"] >= score_threshold
            boxes, scores, labels = detection["boxes"][keep], detection["scores"][keep], detection["labels"][keep]
            names = [module.class_names[int(label) - 1] for label in labels]
            for box, score, label, name in zip(boxes.tolist(), scores.tolist(), labels.tolist(), names, strict=False):
                records.append(
                    {
                        "file": str(path),
                        "bbox": [
                            round(box[0], 2),
                            round(box[1], 2),
                            round(box[2] - box[0], 2),
                            round(box[3] - box[1], 2),
                        ],
                        "category_id": module.label_to_cat_id[int(label)],
                        "category": name,
                        "score": round(float(score), 4),
                    }
                )
            picture = torch.from_numpy(array).permute(2, 0, 1)
            if len(boxes):  # torchvision warns on an empty box list: an image with nothing found is saved as is
                picture = draw_bounding_boxes(
                    picture,
                    boxes,
                    labels=[f"{n} {s:.2f}" for n, s in zip(names, scores.tolist(), strict=False)],
                    colors=[_PALETTE[(int(label) - 1) % len(_PALETTE)] for label in labels],
                    width=2,
                )
            name = path.stem
            while name in used_names:
                name += "_"
            used_names.add(name)
            from PIL import Image

            Image.fromarray(picture.permute(1, 2, 0).numpy()).save(out / f"{name}.jpg", quality=92)
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    return records
