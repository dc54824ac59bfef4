"""A synthetic shapes data set written in the exact COCO 2017 layout, for demos and end-to-end tests.

``make_shapes_coco(out)`` writes::

    out/annotations/instances_train2017.json
    out/annotations/instances_val2017.json
    out/train2017/000000000123.jpg ...
    out/val2017/...

Circles, squares, triangles and stars (category ids 1, 2, 4, 7: gapped like COCO's, to exercise the id mapping) in
random colours, with or without an outline, on noise, gradient or stripe backgrounds. Objects lie fully inside the
image and may overlap, but each stays at least ``min_visible`` visible. About ``empty_fraction`` of the images have no
objects (listed in "images", with no annotations). Image ids are unique across both splits and gapped.
Everything is drawn from ``seed``: the same seed gives the same files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.synthetic import blotches, regular_polygon, rotate, star

__all__ = ["SHAPE_CATEGORIES", "make_shapes_coco"]

SHAPE_CATEGORIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 4, "name": "triangle", "supercategory": "shape"},
    {"id": 7, "name": "star", "supercategory": "shape"},
)


# Unit outlines (circumradius 1) keyed by category id; each object rotates and scales one.
_TEMPLATES: dict[int, np.ndarray] = {
    1: regular_polygon(48),
    2: regular_polygon(4, phase=math.pi / 4),
    4: regular_polygon(3, phase=-math.pi / 2),
    7: star(),
}


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _noise_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    # Blotchy low-frequency noise: a coarse random grid upsampled, plus fine grain.
    cell_size = rng.integers(4, 17)
    noise = blotches(rng, height, width, cell_size)
    base = _colour(rng)
    mix = rng.uniform(0.2, 0.6)
    return base * (1 - mix) + noise * mix


def _ramp(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Signed distance along a random direction, (H, W)."""
    angle = rng.uniform(0, math.pi)
    ys, xs = np.ogrid[:height, :width]
    return (xs * math.cos(angle) + ys * math.sin(angle)).astype(np.float32)


def _gradient_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    ramp = _ramp(rng, height, width)
    t = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1.0)
    return _colour(rng) * (1 - t[..., None]) + _colour(rng) * t[..., None]


def _stripe_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    period = rng.uniform(6, 40)
    t = 0.5 + 0.5 * np.sin(2 * math.pi * _ramp(rng, height, width) / period)
    if rng.random() < 0.5:
        t = (t > 0.5).astype(np.float32)
    return _colour(rng) * (1 - t[..., None]) + _colour(rng) * t[..., None]


_BACKGROUNDS: tuple[Callable[[np.random.Generator, int, int], np.ndarray], ...] = (
    _noise_background,
    _gradient_background,
    _stripe_background,
)


def _polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = Image.new("1", (width, height), 0)
    ImageDraw.Draw(mask).polygon([tuple(v) for v in vertices.tolist()], fill=1)
    return np.asarray(mask, dtype=bool)


def _polygon_area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _place_objects(
    rng: np.random.Generator,
    height: int,
    width: int,
    num_objects: int,
    size_range: tuple[int, int],
    min_visible: float,
    max_tries: int = 10,
) -> list[tuple[int, np.ndarray]]:
    """Choose (category id, vertices) for up to ``num_objects`` shapes, drawn in list order, so that each keeps at
    least ``min_visible`` of its pixels once the later ones are drawn over it."""
    cat_ids = list(_TEMPLATES)
    owner = np.full((height, width), -1, dtype=np.int16)
    full_areas: list[int] = []
    placed: list[tuple[int, np.ndarray]] = []
    for _ in range(num_objects):
        cat_id = cat_ids[rng.integers(len(cat_ids))]
        for _ in range(max_tries):
            size = rng.uniform(size_range[0], min(size_range[1], height, width))
            angle = rng.uniform(0, 2 * math.pi)
            offsets = rotate(_TEMPLATES[cat_id], angle)
            # ``size`` is the longer side of the shape's box, as a data set's object sizes are quoted.
            offsets *= size / float((offsets.max(axis=0) - offsets.min(axis=0)).max())
            low, high = offsets.min(axis=0), offsets.max(axis=0)
            centre_x = rng.uniform(-low[0], width - high[0])
            centre_y = rng.uniform(-low[1], height - high[1])
            vertices = offsets + np.array([centre_x, centre_y])
            mask = _polygon_mask(vertices, height, width)
            covered = owner[mask]
            still_visible = all(
                np.count_nonzero(owner == j) - np.count_nonzero(covered == j) >= min_visible * full_areas[j]
                for j in np.unique(covered[covered >= 0]).tolist()
            )
            if still_visible and mask.any():
                owner[mask] = len(placed)
                full_areas.append(int(mask.sum()))
                placed.append((cat_id, vertices))
                break
    return placed


def _contrasting_colour(rng: np.random.Generator, against: np.ndarray, min_distance: float = 80.0) -> np.ndarray:
    colour = _colour(rng)
    for _ in range(20):
        if np.linalg.norm(colour - against) >= min_distance:
            break
        colour = _colour(rng)
    return colour


def _draw_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    objects: list[tuple[int, np.ndarray]],
) -> Image.Image:
    background = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))](rng, height, width)
    image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _, vertices in objects:
        x0, y0 = np.floor(vertices.min(axis=0)).astype(int)
        x1, y1 = np.ceil(vertices.max(axis=0)).astype(int)
        local_mean = background[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1].reshape(-1, 3).mean(axis=0)
        fill = _contrasting_colour(rng, local_mean)
        outline = _contrasting_colour(rng, fill) if rng.random() < 0.5 else None
        draw.polygon(
            [tuple(v) for v in vertices.tolist()],
            fill=tuple(int(c) for c in fill),
            outline=None if outline is None else tuple(int(c) for c in outline),
            width=int(rng.integers(1, 4)),
        )
    grain = rng.integers(-6, 7, size=(height, width, 1), dtype=np.int16)
    return Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8))


def _annotation(ann_id: int, image_id: int, cat_id: int, vertices: np.ndarray) -> dict[str, Any]:
    x0, y0 = vertices.min(axis=0)
    x1, y1 = vertices.max(axis=0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat_id,
        "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
        "area": round(_polygon_area(vertices), 2),
        "iscrowd": 0,
        "segmentation": [[round(float(c), 2) for c in vertices.reshape(-1)]],
    }


def _write_split(
    out: Path,
    split: str,
    image_ids: list[int],
    first_ann_id: int,
    rng: np.random.Generator,
    size_range: tuple[int, int],
    objects_range: tuple[int, int],
    object_size_range: tuple[int, int],
    empty_fraction: float,
    min_visible: float,
    jpeg_quality: int,
) -> int:
    """Draw and save one split; returns the next free annotation id."""
    image_dir = out / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    ann_id = first_ann_id
    for image_id in image_ids:
        width, height = (int(v) for v in rng.integers(size_range[0], size_range[1] + 1, size=2))
        num_objects = 0 if rng.random() < empty_fraction else int(rng.integers(objects_range[0], objects_range[1] + 1))
        objects = _place_objects(rng, height, width, num_objects, object_size_range, min_visible)
        file_name = f"{image_id:012d}.jpg"
        _draw_image(rng, height, width, objects).save(image_dir / file_name, quality=jpeg_quality)
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 1})
        for cat_id, vertices in objects:
            annotations.append(_annotation(ann_id, image_id, cat_id, vertices))
            ann_id += 1
    dataset = {
        "info": {
            "description": "Synthetic shapes in the COCO 2017 layout (tasks.detection.synthetic)",
            "version": "1.0",
            "year": 2017,
            "date_created": "2017-01-01",
        },
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in SHAPE_CATEGORIES],
    }
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(dataset))
    return ann_id


def make_shapes_coco(
    out: str | Path,
    num_train: int = 800,
    num_val: int = 200,
    seed: int = 0,
    image_size_range: tuple[int, int] = (256, 384),
    objects_range: tuple[int, int] = (1, 6),
    object_size_range: tuple[int, int] = (24, 160),
    empty_fraction: float = 0.08,
    min_visible: float = 0.5,
    jpeg_quality: int = 90,
) -> Path:
    """Write the synthetic shapes set under ``out`` in the COCO 2017 layout and return ``out``.

    ``image_size_range`` bounds width and height (drawn independently); ``object_size_range`` bounds the longer side
    of each shape's box in pixels; ``objects_range`` is the number of shapes tried per non-empty image (a shape
    that cannot be placed within the visibility rule after a few tries is left out).
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"num_train and num_val must be >= 0, got {num_train} and {num_val}")
    if not 0 < object_size_range[0] <= object_size_range[1]:
        raise ValueError(f"object_size_range must be 0 < low <= high, got {object_size_range}")
    if object_size_range[0] > image_size_range[0]:
        raise ValueError(f"object_size_range {object_size_range} does not fit image_size_range {image_size_range}")
    out = Path(out)
    seeds = np.random.SeedSequence(seed).spawn(3)
    total = num_train + num_val
    # Gapped, shuffled-then-sorted ids, unique across the splits, like COCO's.
    ids = np.random.default_rng(seeds[0]).choice(np.arange(1, 10 * total + 2), size=total, replace=False)
    train_ids, val_ids = sorted(ids[:num_train].tolist()), sorted(ids[num_train:].tolist())
    options = dict(
        size_range=image_size_range,
        objects_range=objects_range,
        object_size_range=object_size_range,
        empty_fraction=empty_fraction,
        min_visible=min_visible,
        jpeg_quality=jpeg_quality,
    )
    next_ann_id = _write_split(out, "train", train_ids, 1, np.random.default_rng(seeds[1]), **options)
    _write_split(out, "val", val_ids, next_ann_id, np.random.default_rng(seeds[2]), **options)
    return out
