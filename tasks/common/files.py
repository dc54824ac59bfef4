"""Finding the image files a user points a tool or a dataset at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

__all__ = ["IMAGE_SUFFIXES", "find_images", "collect_images"]


def find_images(directory: str | Path) -> list[Path]:
    """The image files under ``directory`` (by suffix, any case; searched recursively), sorted."""
    return sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files and directories (searched recursively, sorted) into image paths; a missing path is an error."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(find_images(item))
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"no such image or directory: {item}")
    if not paths:
        raise FileNotFoundError(f"no images found under {', '.join(map(str, inputs))}")
    return paths
