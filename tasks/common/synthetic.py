"""Drawing helpers the synthetic data generators share (tasks.detection.synthetic, tasks.classification.synthetic).

The generators promise the same files for the same seed: a change here that alters a random draw or an arithmetic
step changes every synthetic set, the demo's among them.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["regular_polygon", "star", "rotate", "blotches"]


def regular_polygon(num_vertices: int, phase: float = 0.0) -> np.ndarray:
    """(num_vertices, 2) vertices on the unit circle, the first at angle ``phase`` (radians; y points down)."""
    angles = phase + 2 * math.pi * np.arange(num_vertices) / num_vertices
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def star(num_points: int = 5, inner_ratio: float = 0.45) -> np.ndarray:
    """(2 * num_points, 2) vertices of a star of circumradius 1, a point at the top, inner vertices at
    ``inner_ratio``."""
    vertices = regular_polygon(2 * num_points, phase=-math.pi / 2)
    vertices[1::2] *= inner_ratio
    return vertices


def rotate(vertices: np.ndarray, angle: float) -> np.ndarray:
    """(N, 2) vertices rotated by ``angle`` radians about the origin."""
    cos, sin = math.cos(angle), math.sin(angle)
    return vertices @ np.array([[cos, sin], [-sin, cos]])


def blotches(rng: np.random.Generator, height: int, width: int, cell_size: int) -> np.ndarray:
    """(H, W, 3) float32 low-frequency noise: a grid of random colours, one per ``cell_size`` pixels (at least 2x2),
    upsampled bilinearly."""
    coarse = rng.integers(0, 256, size=(max(2, height // cell_size), max(2, width // cell_size), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.float32)
