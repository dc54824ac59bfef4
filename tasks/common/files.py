"""Finding the image files a user points a tool or a dataset at."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from tasks.common.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

__all__ = [
    "IMAGE_SUFFIXES",
    "GENERATED_MARK",
    "check_data_root",
    "find_images",
    "collect_images",
    "check_inside",
    "claim_generated_dir",
    "generated_settings",
    "mark_generated_dir",
]

# The file tools/make_synthetic.py leaves in what it wrote: the kind and settings, so that a later call may replace
# its own output and nothing else.
GENERATED_MARK = ".written-by-make_synthetic.json"


def check_data_root(root: str | Path, layout: str, key: str = "data.root") -> Path:
    """``data.root`` (or the setting ``key``) as a Path when it is a folder, else a DatasetError, the same in every
    task, naming the folder and the ``layout`` expected in it (e.g. "train/<class>/<image> and val/<class>/<image>")."""
    path = Path(root).expanduser()
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise DatasetError(f"{key} {path} {state}: expected a folder holding {layout}")
    return path


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
    not empty, without a NUL, not absolute (POSIX or Windows, drive letters included) and without ``..``. Otherwise a
    DatasetError that starts with ``where`` (the file and line, or the file and entry)."""
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(f"{where}: file name {name!r} is not a non-empty string")
    if "\0" in name:  # no file system allows it, and open() raises ValueError rather than OSError on it
        raise DatasetError(f"{where}: file name {name!r} holds a NUL character")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise DatasetError(f"{where}: absolute file name {name!r}; names are relative to {folder}")
    if ".." in PureWindowsPath(name).parts:
        raise DatasetError(f"{where}: file name {name!r} leaves {folder} ('..')")
    return name


def generated_settings(out: str | Path) -> dict[str, Any] | None:
    """The settings tools/make_synthetic.py recorded in ``out``, or None where it left no readable mark."""
    mark = Path(out) / GENERATED_MARK
    try:
        return json.loads(mark.read_text()) if mark.is_file() else None
    except (OSError, ValueError):
        return None


def claim_generated_dir(out: str | Path) -> dict[str, Any] | None:
    """Make ``out`` ready for a generated dataset. A missing or empty folder is used as it is; a folder holding an
    earlier output of tools/make_synthetic.py (its ``GENERATED_MARK``) is emptied, so that no old file survives, and
    that output's settings are returned; any other folder holding files is refused with a DatasetError, untouched
    (it may be a real dataset)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} is a file, not a folder: choose another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return None
    mark = out / GENERATED_MARK
    if not mark.is_file():
        raise DatasetError(
            f"{out} holds files that tools/make_synthetic.py did not write (it may be a real dataset): nothing was "
            "changed; choose an empty or new --out"
        )
    try:
        earlier = json.loads(mark.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"{mark}: unreadable ({error}); remove {out} yourself to regenerate it") from error
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return earlier


def mark_generated_dir(out: str | Path, settings: Mapping[str, Any]) -> None:
    """Leave ``GENERATED_MARK`` in ``out``: what wrote it, with which settings."""
    (Path(out) / GENERATED_MARK).write_text(json.dumps(dict(settings), indent=1) + "\n")
