"""A folder of unlabelled face images (``tools/make_synthetic.py folder``): what a student learns from when nobody
labelled its images, drawn like the synthetic CelebA's faces but with no attribute list beside them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tasks.face_attributes.synthetic import draw_attributes, draw_face

__all__ = ["make_unlabeled_faces"]


def make_unlabeled_faces(out: str | Path, seed: int = 0, count: int = 2400, size: tuple[int, int] = (96, 112)) -> Path:
    """Write ``count`` face images of ``size`` (width, height) as ``out/face_NNNNNN.jpg``; return ``out``."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for number in range(1, count + 1):
        image = draw_face(draw_attributes(rng), rng, size)
        Image.fromarray(image).save(out / f"face_{number:06d}.jpg", quality=90)
    return out
