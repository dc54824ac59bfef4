"""Safe image decoding: every file becomes an RGB uint8 array, or an error that names it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from tasks.common.errors import ImageLoadError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "load_rgb", "try_load_rgb"]

# PIL's own default Image.MAX_IMAGE_PIXELS (1024**3 // 4 // 3: a 256 MiB 32-bit image), kept as a number of ours so
# that code changing PIL's global changes nothing here.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            path, f"{width}x{height} is {width * height} pixels, over the limit data.max_image_pixels={max_pixels}"
        )


def _to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of a decoded image. Deep greyscale maps to 8 bits by a fixed scale, whatever the image's
    brightest pixel: 16-bit ("I;16", "I;16B", and "I", as PIL opens some 16-bit files) by 65535 -> 255; float ("F")
    by 1.0 -> 255, NaN as 0. Values outside the range are clipped."""
    if image.mode == "I" or image.mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float64) / 257.0  # 65535 / 257 = 255
    elif image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0) * 255.0
    else:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    grey = np.clip(np.round(grey), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def load_rgb(
    path: str | Path, exif_transpose: bool = False, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 RGB array, or raise ImageLoadError naming it.

    The file's content decides its format, not its suffix. Greyscale ("L", "1", "LA"), palette (with or without
    transparency), RGBA (alpha dropped, colour kept, as PIL's convert does) and CMYK become RGB as PIL converts them;
    16-bit and float greyscale as ``_to_rgb`` says. A truncated file is an error, never a padded image (PIL's
    ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False: a RuntimeError says so if anything set it). COCO and
    Stanford Dogs boxes refer to the stored pixel grid, so the EXIF orientation is ignored unless ``exif_transpose``
    is set.

    An image of more than ``max_pixels`` pixels (None: no limit of ours) is refused from its header, before any
    decoding, so a decompression bomb takes no memory. PIL's own check still refuses anything over twice
    ``PIL.Image.MAX_IMAGE_PIXELS`` (179 M pixels by default), whatever ``max_pixels`` says.
    """
    path = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set (by this program or a library it imports): PIL would fill the "
            f"missing part of a cut file with grey, so no image is decoded, starting with {path}"
        )
    if not path.is_file():
        raise ImageLoadError(path, "no such file")
    try:
        with Image.open(path) as image:
            _check_pixels(path, image.size, max_pixels)
            image.load()
            if exif_transpose:
                image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except ImageLoadError:  # a ValueError too: ours, already naming the file
        raise
    # DecompressionBombError (an image over PIL's own pixel limit) is not an OSError.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ImageLoadError(path, f"{type(error).__name__}: {error}") from error


def try_load_rgb(path: str | Path, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray | None:
    """``load_rgb``, but a bad file gives a warning naming it and ``None`` (for training, where one bad file
    among thousands should not stop a run)."""
    try:
        return load_rgb(path, max_pixels=max_pixels)
    except ImageLoadError as error:
        warnings.warn(f"skipping {error}", stacklevel=2)
        return None
