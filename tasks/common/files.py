"""Finding the image files a user points a tool or a dataset at."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from tasks.common.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

__all__ = ["IMAGE_SUFFIXES", "find_images", "collect_images", "check_inside"]


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


def check_inside(name: object, where: str, folder: str = "the image folder") -> str:
    """``name``, a file name from a dataset's list or annotation file, checked to stay inside ``folder``: a string,
    not empty, not absolute (POSIX or Windows, drive letters included) and without ``..``. Otherwise a DatasetError
    that starts with ``where`` (the file and line, or the file and entry)."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{where}: file name {name!r} is not a non-empty string")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise DatasetError(f"{where}: absolute file name {name!r}; names are relative to {folder}")
    if ".." in PureWindowsPath(name).parts:
        raise DatasetError(f"{where}: file name {name!r} leaves {folder} ('..')")
    return name
