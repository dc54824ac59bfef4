"""Run a trained classifier on image files: predictions.json with each image's top-5 classes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from tasks.classification.data import build_eval_transform
from tasks.classification.module import TOP_K
from tasks.common.files import collect_images
from tasks.common.images import load_rgb

__all__ = ["predict_images"]


@torch.no_grad()
def predict_images(
    module,
    inputs: Sequence[str | Path],
    out: str | Path,
    score_threshold: float | None = None,
    batch_size: int = 16,
) -> list[dict]:
    """Classify each input image with the evaluation preprocessing the model was trained with; write
    ``out/predictions.json``: a list of {"file", "top5": [{"class", "score"}, ...]}, best first, scores being
    softmax probabilities (fewer than 5 entries when the model has fewer classes). Returns that list.

    ``score_threshold`` is accepted for the shared tools/predict.py interface and unused: every image lists its
    top 5 whatever their scores.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = module.model.eval()
    device = next(model.parameters()).device
    info = module.hparams["data_info"]
    transform = build_eval_transform(
        int(info.get("image_size", 224)),
        float(info.get("eval_crop_fraction", 0.875)),
        info.get("mean", (0.5, 0.5, 0.5)),
        info.get("std", (0.5, 0.5, 0.5)),
    )
    k = min(TOP_K, len(module.class_names))
    paths = collect_images(inputs)
    records: list[dict] = []
    for start in tqdm(range(0, len(paths), batch_size), desc="predict", unit="batch"):
        chunk = paths[start : start + batch_size]
        images = torch.stack([transform(load_rgb(path)) for path in chunk]).to(device)
        scores, classes = model(images).softmax(dim=1).topk(k, dim=1)
        for path, row_scores, row_classes in zip(chunk, scores.tolist(), classes.tolist(), strict=True):
            pairs = zip(row_scores, row_classes, strict=True)
            top = [{"class": module.class_names[c], "score": round(s, 4)} for s, c in pairs]
            records.append({"file": str(path), "top5": top})
    (out / "predictions.json").write_text(json.dumps(records, indent=1))
    return records
