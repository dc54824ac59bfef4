"""Safe image decoding: every file becomes an RGB uint8 array, or an error that names it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tasks.common.errors import ImageLoadError

__all__ = ["load_rgb", "try_load_rgb"]


def load_rgb(path: str | Path, exif_transpose: bool = False) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array.

    Greyscale, palette, RGBA (alpha dropped, colour kept, as PIL's convert does), CMYK and 16-bit files all become
    RGB; 16-bit values map to 8 bits by a fixed scale (65535 -> 255), whatever the image's brightest pixel. COCO and
    Stanford Dogs boxes refer to the stored pixel grid, so the EXIF orientation is ignored unless ``exif_transpose``
    is set.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "no such file")
    try:
        with Image.open(path) as image:
            image.load()
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            if image.mode == "I" or image.mode.startswith("I;16"):
                array = np.asarray(image, dtype=np.float64) / 257.0  # 65535 / 257 = 255
                array = np.clip(np.round(array), 0, 255).astype(np.uint8)
                return np.repeat(array[..., None], 3, axis=2)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    # DecompressionBombError (an image over PIL's pixel limit) is not an OSError.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(path, f"{type(error).__name__}: {error}") from error


def try_load_rgb(path: str | Path) -> np.ndarray | None:
    """``load_rgb``, but a bad file gives a warning naming it and ``None`` (for training, where one bad file
    among thousands should not stop a run)."""
    try:
        return load_rgb(path)
    except ImageLoadError as error:
        warnings.warn(f"skipping {error}", stacklevel=2)
        return None
