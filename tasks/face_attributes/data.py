"""Face attribute data: CelebA in its release layout, every list checked at the boundary, with light augmentation.

Under ``root`` (the official archive's sub-folders are accepted too)::

    img_align_celeba/000001.jpg ...        or Img/img_align_celeba/
    list_attr_celeba.txt                   or Anno/list_attr_celeba.txt
    list_eval_partition.txt                or Eval/list_eval_partition.txt

``list_attr_celeba.txt``: the image count, the attribute names, then per image its file name and one 1 / -1 per
attribute. Columns are separated by one or two spaces (a 1 is padded to " 1", a -1 is not) and some copies end the
names line with a space, so every line is split on any whitespace, never at fixed columns. ``list_eval_partition.txt``:
file name and 0 (train), 1 (val) or 2 (test). Targets are float32 (A,) of 0 / 1; an image without labels (added by
a distillation run) has a target of NaN, which the loss leaves out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from tasks.common.data import AlbumentationsTransform, TaskDataModule, collate_stacked, draw_seed, image_to_tensor
from tasks.common.errors import ConfigError, DatasetError
from tasks.common.files import check_data_root, check_inside
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, load_rgb, try_load_rgb

__all__ = [
    "ATTRIBUTE_FILE",
    "PARTITION_FILE",
    "IMAGE_FOLDER",
    "CelebaLayout",
    "AttributeList",
    "FaceAttributeSplit",
    "find_celeba_layout",
    "read_attribute_list",
    "read_partition_list",
    "read_celeba",
    "FaceAttributeTransform",
    "build_train_transform",
    "build_eval_transform",
    "FaceAttributeDataset",
    "FaceAttributeDataModule",
]

ATTRIBUTE_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IMAGE_FOLDER = "img_align_celeba"
# Where each piece may sit under the root: the flat layout, then the official archive's.
_ATTRIBUTE_PLACES = (ATTRIBUTE_FILE, f"Anno/{ATTRIBUTE_FILE}")
_PARTITION_PLACES = (PARTITION_FILE, f"Eval/{PARTITION_FILE}")
_IMAGE_PLACES = (IMAGE_FOLDER, f"Img/{IMAGE_FOLDER}")
_VALUES = {"1": 1, "+1": 1, "-1": 0}
_SPLITS = {"train": 0, "val": 1, "test": 2}
_SPLIT_NAMES = {code: name for name, code in _SPLITS.items()}
ValSplit = Literal["val", "test"]


# ---------------------------------------------------------------------------------------------------------------
# Reading the layout


@dataclass(frozen=True)
class CelebaLayout:
    """The three pieces of a CelebA root."""

    images: Path
    attributes: Path
    partition: Path


@dataclass(frozen=True)
class AttributeList:
    """A parsed ``list_attr_celeba.txt``: ``targets[i]`` (0 / 1 per attribute) belongs to ``files[i]``, listed on
    line ``lines[i]`` (1-based) of ``path``."""

    path: Path
    names: list[str]
    files: list[str]
    lines: list[int]
    targets: np.ndarray  # (N, A) uint8


@dataclass(frozen=True)
class FaceAttributeSplit:
    """The images of one split and their (N, A) uint8 targets."""

    paths: list[Path]
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _first_existing(root: Path, places: Sequence[str], want_dir: bool, what: str) -> Path:
    for place in places:
        path = root / place
        if path.is_dir() if want_dir else path.is_file():
            return path
    tried = " or ".join(str(root / place) for place in places)
    raise DatasetError(f"CelebA {what} not found: expected {tried}")


def find_celeba_layout(root: str | Path) -> CelebaLayout:
    """The image folder and list files under ``root``, flat or in the official archive's sub-folders."""
    layout = f"CelebA's {IMAGE_FOLDER}/, {ATTRIBUTE_FILE} and {PARTITION_FILE} (flat, or in Img/, Anno/, Eval/)"
    root = check_data_root(root, layout)
    return CelebaLayout(
        images=_first_existing(root, _IMAGE_PLACES, True, "image folder"),
        attributes=_first_existing(root, _ATTRIBUTE_PLACES, False, "attribute list"),
        partition=_first_existing(root, _PARTITION_PLACES, False, "partition list"),
    )


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is not part of line 1
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read: {type(error).__name__}: {error}") from error


def _numbered_rows(lines: Sequence[str], first: int = 1) -> list[tuple[int, str]]:
    """(1-based line number, text) of the lines that are not blank, ``lines[0]`` being line ``first``."""
    return [(number, line) for number, line in enumerate(lines, start=first) if line.strip()]


def read_attribute_list(path: str | Path) -> AttributeList:
    """Parse and check ``list_attr_celeba.txt``; a DatasetError names the file and line of anything malformed (a
    count that disagrees with the rows, a row of the wrong length, a value other than 1 / -1, a repeated name)."""
    path = Path(path)
    lines = _read_lines(path)
    count_text = lines[0].strip() if lines else ""
    try:
        count = int(count_text)
    except ValueError:
        raise DatasetError(f"{path}, line 1: expected the image count, got {count_text!r}") from None
    names = lines[1].split() if len(lines) > 1 else []
    if not names:
        raise DatasetError(f"{path}, line 2: expected the attribute names")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DatasetError(f"{path}, line 2: attribute name(s) {repeated} appear more than once")
    files: list[str] = []
    numbers: list[int] = []
    rows: list[list[int]] = []
    seen: dict[str, int] = {}
    for number, line in _numbered_rows(lines[2:], first=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise DatasetError(
                f"{path}, line {number}: expected a file name and {len(names)} values, got {len(fields) - 1} values"
            )
        name = fields[0]
        check_inside(name, f"{path}, line {number}")
        if name in seen:
            raise DatasetError(f"{path}, line {number}: {name} is already listed on line {seen[name]}")
        try:
            rows.append([_VALUES[value] for value in fields[1:]])
        except KeyError:
            bad = next(i for i, value in enumerate(fields[1:]) if value not in _VALUES)
            raise DatasetError(
                f"{path}, line {number}: {names[bad]} of {name} is {fields[1 + bad]!r}, expected 1 or -1"
            ) from None
        seen[name] = number
        files.append(name)
        numbers.append(number)
    if count != len(files):
        raise DatasetError(f"{path}, line 1: the count says {count} images, the file lists {len(files)}")
    if not files:
        raise DatasetError(f"{path}: lists no images")
    targets = np.asarray(rows, dtype=np.uint8).reshape(len(files), len(names))
    return AttributeList(path, names, files, numbers, targets)


def read_partition_list(path: str | Path) -> dict[str, tuple[int, int]]:
    """{file name: (split 0 / 1 / 2, line number)} of ``list_eval_partition.txt``, checked line by line."""
    path = Path(path)
    partition: dict[str, tuple[int, int]] = {}
    for number, line in _numbered_rows(_read_lines(path)):
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DatasetError(
                f"{path}, line {number}: expected a file name and 0 (train), 1 (val) or 2 (test), got {line.strip()!r}"
            )
        name = fields[0]
        check_inside(name, f"{path}, line {number}")
        if name in partition:
            raise DatasetError(f"{path}, line {number}: {name} is already listed on line {partition[name][1]}")
        partition[name] = (int(fields[1]), number)
    if not partition:
        raise DatasetError(f"{path}: lists no images")
    return partition


def _named_with_lines(entries: Sequence[tuple[str, int]], limit: int = 5) -> str:
    shown = ", ".join(f"{name} (line {line})" for name, line in entries[:limit])
    return shown + (f", ... ({len(entries) - limit} more)" if len(entries) > limit else "")


def _check_same_images(attributes: AttributeList, partition: dict[str, tuple[int, int]], partition_path: Path) -> None:
    """Both lists must name the same images: the first ones found in only one are named with their lines."""
    only_attributes = [(name, line) for name, line in zip(attributes.files, attributes.lines) if name not in partition]
    if only_attributes:
        raise DatasetError(
            f"{attributes.path} lists {len(only_attributes)} image(s) that {partition_path} does not: "
            f"{_named_with_lines(only_attributes)}"
        )
    listed = set(attributes.files)
    only_partition = [(name, line) for name, (_, line) in partition.items() if name not in listed]
    if only_partition:
        raise DatasetError(
            f"{partition_path} lists {len(only_partition)} image(s) that {attributes.path} does not: "
            f"{_named_with_lines(only_partition)}"
        )


def _check_images_exist(attributes: AttributeList, image_dir: Path) -> None:
    """Every listed image must be a file: one listing of the folder, then a look at each name not in it."""
    present = {entry.name for entry in os.scandir(image_dir) if entry.is_file()}
    missing = [
        (name, line)
        for name, line in zip(attributes.files, attributes.lines)
        if name not in present and not (image_dir / name).is_file()
    ]
    if missing:
        raise DatasetError(
            f"{attributes.path} lists {len(missing)} image(s) missing from {image_dir}: {_named_with_lines(missing)}"
        )


def read_celeba(
    root: str | Path, val_split: ValSplit = "val"
) -> tuple[FaceAttributeSplit, FaceAttributeSplit, list[str]]:
    """(training split, validation split (the partition's ``val_split``), attribute names) of CelebA under
    ``root``; both lists must name the same images, and every one of them must be on disk."""
    if val_split not in ("val", "test"):
        raise ConfigError(f"data.val_split must be 'val' or 'test', got {val_split!r}")
    layout = find_celeba_layout(root)
    attributes = read_attribute_list(layout.attributes)
    partition = read_partition_list(layout.partition)
    _check_same_images(attributes, partition, layout.partition)
    _check_images_exist(attributes, layout.images)
    splits = np.asarray([partition[name][0] for name in attributes.files], dtype=np.int64)

    def split(code: int) -> FaceAttributeSplit:
        rows = np.flatnonzero(splits == code)
        if not len(rows):  # an empty split would train or validate on nothing, and say nothing
            raise DatasetError(f"{layout.partition}: no image is in split {code} ({_SPLIT_NAMES[code]})")
        return FaceAttributeSplit([layout.images / attributes.files[i] for i in rows], attributes.targets[rows])

    return split(_SPLITS["train"]), split(_SPLITS[val_split]), attributes.names


# ---------------------------------------------------------------------------------------------------------------
# Transforms and datasets


class FaceAttributeTransform(AlbumentationsTransform):
    """An albumentations pipeline: (H, W, 3) uint8 RGB -> float32 (3, size, size) in [0, 1] (the model normalises)."""

    def __call__(self, image: np.ndarray) -> Tensor:
        return image_to_tensor(self.compose(image=image)["image"])


def build_train_transform(
    image_size: int,
    augment: Literal["light", "none"] = "light",
    crop_min_scale: float = 0.5,
    eval_crop_fraction: float = 1.0,
    seed: int | None = None,
) -> FaceAttributeTransform:
    """Training pipeline. "light": a random crop of ``crop_min_scale``..1 of the area, aspect 3/4..4/3, resized to
    ``image_size``, and a horizontal flip (no CelebA attribute is left or right). "none" is the evaluation
    pipeline. ``seed`` starts the random stream (the data module draws it from torch's generator)."""
    if augment == "none":
        return build_eval_transform(image_size, eval_crop_fraction)
    if augment != "light":
        raise ConfigError(f"data.augment must be 'light' or 'none', got {augment!r}")
    if not 0.0 < crop_min_scale <= 1.0:
        raise ConfigError(f"data.crop_min_scale must be in (0, 1], got {crop_min_scale}")
    steps = [
        A.RandomResizedCrop(size=(image_size, image_size), scale=(crop_min_scale, 1.0), area_for_downscale="image"),
        A.HorizontalFlip(p=0.5),
    ]
    return FaceAttributeTransform(A.Compose(steps, seed=seed))


def build_eval_transform(image_size: int, crop_fraction: float = 1.0) -> FaceAttributeTransform:
    """Evaluation pipeline: shorter side to ``image_size / crop_fraction``, centre crop ``image_size``. The default
    1.0 keeps the whole width of an aligned face (178x218 -> its central 178x178), hair and chin included."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ConfigError(f"data.eval_crop_fraction must be in (0, 1], got {crop_fraction}")
    steps = [
        A.SmallestMaxSize(max_size=int(round(image_size / crop_fraction)), area_for_downscale="image"),
        A.CenterCrop(image_size, image_size, pad_if_needed=True),
    ]
    return FaceAttributeTransform(A.Compose(steps))


class FaceAttributeDataset(Dataset):
    """Item ``i`` is (image (3, S, S), targets float32 (A,) of 0 / 1 (NaN: unlabelled), i), or None when
    ``skip_unreadable`` and the file cannot be decoded or has more than ``max_pixels`` pixels (a warning names it;
    ``collate_stacked`` drops it). Without ``skip_unreadable`` (validation) such a file raises ImageLoadError."""

    def __init__(
        self,
        paths: Sequence[Path],
        targets: np.ndarray,
        transform: Callable[[np.ndarray], Tensor],
        skip_unreadable: bool = False,
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"{len(paths)} images but {len(targets)} target rows")
        self.paths = list(paths)
        self.targets = torch.as_tensor(np.asarray(targets, dtype=np.float32))
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int] | None:
        path = self.paths[index]
        if self.skip_unreadable:
            image = try_load_rgb(path, max_pixels=self.max_pixels)
        else:
            image = load_rgb(path, max_pixels=self.max_pixels)
        if image is None:
            return None
        return self.transform(image), self.targets[index], index


# ---------------------------------------------------------------------------------------------------------------
# The data module


class FaceAttributeDataModule(TaskDataModule):
    """Training and validation data of a face-attribute run (the ``data:`` config section); batches are stacked
    ``Batch`` es (``collate_stacked``) of float32 (B, 3, S, S) images in [0, 1] and float32 (B, A) targets of 0 / 1.

    Args:
        root: the CelebA folder (flat, or the official archive's Img/, Anno/ and Eval/).
        val_split: the partition that validates: "val" (1) or "test" (2).
        image_size: the square training and evaluation input side.
        batch_size: images per step and device.
        num_workers: DataLoader worker processes.
        augment: "light" (random crop of ``crop_min_scale``..1 of the area, horizontal flip) or "none".
        crop_min_scale: the smallest random crop, as a fraction of the image area (larger than classification's:
            a small crop loses the hat, the hair or the chin an attribute is about).
        eval_crop_fraction: evaluation resizes the shorter side to ``image_size / eval_crop_fraction`` and crops the
            centre (1.0: the whole width of the face).
        shared: the settings of every task, ``TaskDataModule``'s: ``val_batch_size``, ``mean``, ``std``,
            ``label_fraction``, ``label_seed``, ``max_bad_fraction``, ``min_seen_for_bad_fraction``,
            ``max_image_pixels``.
    """

    collate_fn = staticmethod(collate_stacked)

    def __init__(
        self,
        root: str,
        val_split: ValSplit = "val",
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int = 4,
        augment: Literal["light", "none"] = "light",
        crop_min_scale: float = 0.5,
        eval_crop_fraction: float = 1.0,
        **shared: Any,
    ) -> None:
        super().__init__(batch_size, num_workers, **shared)
        if val_split not in ("val", "test"):
            raise ConfigError(f"data.val_split must be 'val' or 'test', got {val_split!r}")
        if image_size < 1:
            raise ConfigError(f"data.image_size must be >= 1, got {image_size}")
        self.root = Path(root)
        self.val_split = val_split
        self.image_size = image_size
        self.augment = augment
        self.crop_min_scale = crop_min_scale
        self.eval_crop_fraction = eval_crop_fraction
        # Checked now, so that a bad value stops the run before the lists are read.
        build_train_transform(image_size, augment, crop_min_scale, eval_crop_fraction)

    @cached_property
    def _index(self) -> tuple[FaceAttributeSplit, FaceAttributeSplit, list[str]]:
        return read_celeba(self.root, self.val_split)

    @property
    def attribute_names(self) -> list[str]:
        return list(self._index[2])

    def data_info(self) -> dict[str, Any]:
        """Attributes (``class_names`` too, which checkpoints are compared by), split sizes, the evaluation
        preprocessing and the input normalisation ``mean`` and ``std`` (None: the backbone's own)."""
        train, val, names = self._index
        return {
            "num_classes": len(names),
            "attribute_names": list(names),
            "class_names": list(names),
            "train_size": len(train),
            "val_size": len(val),
            "image_size": self.image_size,
            "eval_crop_fraction": self.eval_crop_fraction,
            "mean": self.mean,
            "std": self.std,
        }

    def unlabeled_target(self) -> Tensor:
        """The target of an image without labels: (A,) float32 NaN, which the training loss leaves out."""
        return torch.full((len(self.attribute_names),), float("nan"))

    def train_transform(self) -> FaceAttributeTransform:
        """A new training pipeline, its random stream drawn from torch's generator (``draw_seed``)."""
        return build_train_transform(
            self.image_size, self.augment, self.crop_min_scale, self.eval_crop_fraction, seed=draw_seed()
        )

    def eval_transform(self) -> FaceAttributeTransform:
        return build_eval_transform(self.image_size, self.eval_crop_fraction)

    def setup(self, stage: str | None = None) -> None:
        """Build the training split for ``fit`` and the validation split for every stage, once each."""
        train, val, _ = self._index
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = FaceAttributeDataset(
                train.paths, train.targets, self.train_transform(), True, max_pixels=self.max_image_pixels
            )
        if self.val_dataset is None:
            self.val_dataset = FaceAttributeDataset(
                val.paths, val.targets, self.eval_transform(), max_pixels=self.max_image_pixels
            )
