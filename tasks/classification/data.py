"""Classification data: ImageNet-style folders and Stanford Dogs in its official layout, with light augmentation.

Two layouts under ``root``:

- ``imagefolder``: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``; classes are the sorted folder names of train/.
- ``stanford_dogs``: ``Images/<wnid>-<Breed>/<wnid>_<n>.jpg``, ``Annotation/<wnid>-<Breed>/<wnid>_<n>`` (Pascal-VOC
  XML without extension) and ``train_list.mat`` / ``test_list.mat`` (fields ``file_list``, ``annotation_list`` and
  1-based ``labels``). Labels come from the .mat files; class ``k`` is named after the breed part of the folder of
  the files labelled ``k + 1`` (``n02086240-Shih-Tzu`` -> ``Shih-Tzu``). The test list is the validation split.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from tasks.common.data import AlbumentationsTransform, TaskDataModule, collate_stacked, draw_seed, image_to_tensor
from tasks.common.errors import ConfigError, DatasetError
from tasks.common.files import IMAGE_SUFFIXES, check_data_root, check_inside, find_images
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, load_rgb, try_load_rgb

__all__ = [
    "Sample",
    "ClassificationTransform",
    "ClassificationDataset",
    "ClassificationDataModule",
    "build_train_transform",
    "build_eval_transform",
    "read_image_folder",
    "read_stanford_dogs",
    "read_dogs_list",
    "read_voc_boxes",
    "reduce_boxes",
]

Layout = Literal["imagefolder", "stanford_dogs"]
BoxCrop = Literal["none", "union", "first"]
STANFORD_DOGS_CLASSES = 120
# What each layout holds under data.root, for the error that names a missing root.
LAYOUTS = {
    "imagefolder": "train/<class>/<image> and val/<class>/<image> (data.layout imagefolder)",
    "stanford_dogs": "Stanford Dogs' Images/<wnid>-<Breed>/, Annotation/, train_list.mat and test_list.mat "
    "(data.layout stanford_dogs; tools/make_synthetic.py dogs --out DIR writes a small one)",
}


@dataclass(frozen=True)
class Sample:
    """One labelled image. ``box`` (x1, y1, x2, y2) in 0-based pixels, end exclusive, is the region to crop to."""

    path: Path
    label: int
    box: tuple[int, int, int, int] | None = None


# ---------------------------------------------------------------------------------------------------------------
# Reading the layouts


def read_image_folder(
    split_dir: str | Path, class_names: Sequence[str] | None = None
) -> tuple[list[Sample], list[str]]:
    """Samples of ``split_dir/<class>/*`` (image suffixes only, searched recursively, sorted) and the class names.

    ``class_names`` fixes the label order (a validation split uses the training split's); by default the sorted
    sub-folder names. A folder that is not one of ``class_names``, a class folder without images, and a split
    without class folders are errors naming them.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DatasetError(f"image folder not found: {split_dir} (expected {split_dir}/<class>/<image>)")
    folders = sorted(entry.name for entry in os.scandir(split_dir) if entry.is_dir())
    if not folders:
        raise DatasetError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<image>)")
    if class_names is None:
        class_names = folders
    label_of = {name: label for label, name in enumerate(class_names)}
    samples: list[Sample] = []
    empty: list[str] = []
    for folder in folders:
        if folder not in label_of:
            raise DatasetError(f"{split_dir / folder}: class {folder!r} is not one of the training classes")
        images = find_images(split_dir / folder)
        if not images:
            empty.append(folder)
        samples.extend(Sample(path, label_of[folder]) for path in images)
    if empty:  # as torchvision's ImageFolder: a class without images is a mistake, not a class never to predict
        shown = ", ".join(empty[:5]) + (f", ... ({len(empty) - 5} more)" if len(empty) > 5 else "")
        suffixes = " ".join(IMAGE_SUFFIXES)
        raise DatasetError(f"{split_dir}: {len(empty)} class folder(s) hold no image file ({suffixes}): {shown}")
    return samples, list(class_names)


def _cell_strings(cell: np.ndarray, path: Path, field: str) -> list[str]:
    """A MATLAB cell array of strings as loadmat returns it: an (N, 1) object array of 1-element string arrays."""
    try:
        values = [np.asarray(item).ravel()[0] for item in np.asarray(cell).ravel()]
    except (IndexError, TypeError) as error:
        raise DatasetError(f"{path}: field {field} is not a cell array of strings") from error
    for index, value in enumerate(values):
        if not isinstance(value, str):  # a number would become a file name "5"
            raise DatasetError(f"{path}: {field} entry {index + 1} is {value!r}, not a string")
    return [str(value) for value in values]


def read_dogs_list(path: str | Path) -> tuple[list[str], list[str], list[int]]:
    """(file_list, annotation_list, 1-based labels) of a Stanford Dogs ``*_list.mat``, checked for consistency."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Stanford Dogs list file not found: {path}")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as error:  # noqa: BLE001 - scipy raises ValueError, TypeError, MatReadError... on bad files
        raise DatasetError(f"{path}: not a readable MATLAB file: {type(error).__name__}: {error}") from error
    missing = [field for field in ("file_list", "annotation_list", "labels") if field not in mat]
    if missing:
        fields = sorted(key for key in mat if not key.startswith("__"))
        raise DatasetError(f"{path}: missing field(s) {missing}; the file has {fields}")
    files = _cell_strings(mat["file_list"], path, "file_list")
    annotations = _cell_strings(mat["annotation_list"], path, "annotation_list")
    for field, names in (("file_list", files), ("annotation_list", annotations)):
        for index, name in enumerate(names):
            check_inside(name, f"{path}: {field} entry {index + 1}", "the dataset root")
    try:
        raw_labels = np.asarray(mat["labels"], dtype=np.float64).ravel()
    except (TypeError, ValueError) as error:
        raise DatasetError(f"{path}: field labels is not a numeric array ({error})") from error
    if not (len(files) == len(annotations) == len(raw_labels)):
        raise DatasetError(
            f"{path}: {len(files)} files, {len(annotations)} annotations and {len(raw_labels)} labels differ in number"
        )
    if not len(files):
        raise DatasetError(f"{path}: the list is empty")
    bad = np.flatnonzero(~np.isfinite(raw_labels) | (raw_labels < 1) | (raw_labels != np.round(raw_labels)))
    if len(bad):
        raise DatasetError(f"{path}: label of entry {bad[0] + 1} is {raw_labels[bad[0]]}; labels are integers from 1")
    return files, annotations, [int(label) for label in raw_labels]


def _voc_box(obj: ET.Element, path: Path, number: int) -> list[float]:
    """The 1-based inclusive (xmin, ymin, xmax, ymax) of the ``number``-th <object>: finite, max >= min."""
    values = []
    for key in ("xmin", "ymin", "xmax", "ymax"):
        text = obj.findtext(f"bndbox/{key}")
        try:
            values.append(float(text or ""))
        except ValueError:
            raise DatasetError(f"{path}: object {number} has bndbox/{key} {text!r}, expected a number") from None
    xmin, ymin, xmax, ymax = values
    if not np.isfinite(values).all() or xmax < xmin or ymax < ymin:
        raise DatasetError(
            f"{path}: object {number} has the box xmin, ymin, xmax, ymax = {values}, expected finite numbers with "
            "xmax >= xmin and ymax >= ymin"
        )
    return values


def read_voc_boxes(path: str | Path) -> np.ndarray:
    """The object boxes of a Pascal-VOC XML file as (N, 4) x1, y1, x2, y2 in 0-based pixels, end exclusive.

    VOC stores 1-based inclusive corners: ``xmin`` 1 is the first column, so x1 = xmin - 1 and x2 = xmax.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:  # expat refuses entity expansion bombs too ("amplification factor")
        raise DatasetError(f"{path}: not a readable XML file: {error}") from error
    boxes = [_voc_box(obj, path, number) for number, obj in enumerate(root.iter("object"), start=1)]
    if not boxes:
        raise DatasetError(f"{path}: no <object> with a <bndbox>")
    array = np.asarray(boxes, dtype=np.float32)
    array[:, :2] -= 1.0
    return array


def reduce_boxes(boxes: np.ndarray, mode: Literal["union", "first"]) -> tuple[int, int, int, int]:
    """One crop region from an image's boxes: their union (every dog in view) or the first one listed."""
    if mode == "first":
        x1, y1, x2, y2 = boxes[0]
    else:
        x1, y1 = boxes[:, :2].min(axis=0)
        x2, y2 = boxes[:, 2:].max(axis=0)
    return int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))


def _dog_class_names(lists: Sequence[tuple[Path, list[str], list[int]]]) -> list[str]:
    """Breed names by label: the part after the wnid of the folder holding the files of that label."""
    folders: dict[int, set[str]] = {}
    for _, files, labels in lists:
        for file, label in zip(files, labels, strict=True):
            folders.setdefault(label, set()).add(file.split("/")[0])
    num_classes = max(folders, default=0)
    names: list[str] = []
    for label in range(1, num_classes + 1):
        found = sorted(folders.get(label, ()))
        if len(found) != 1:
            sources = ", ".join(str(path) for path, _, _ in lists)
            what = "no file" if not found else f"files in several folders {found}"
            raise DatasetError(f"{sources}: label {label} has {what}; each label must name one breed folder")
        folder = found[0]
        names.append(folder.split("-", 1)[1] if "-" in folder else folder)
    return names


def read_stanford_dogs(root: str | Path, crop_to_box: BoxCrop = "none") -> tuple[list[Sample], list[Sample], list[str]]:
    """(train samples, test samples, breed names) of Stanford Dogs under ``root``; labels 0-based.

    Every listed image must exist (an error names the first missing ones). With ``crop_to_box`` "union" or "first",
    each sample's annotation is read and its box kept for cropping.
    """
    root = Path(root)
    lists = []
    for name in ("train_list.mat", "test_list.mat"):
        files, annotations, labels = read_dogs_list(root / name)
        lists.append((root / name, files, annotations, labels))
    class_names = _dog_class_names([(path, files, labels) for path, files, _, labels in lists])
    splits: list[list[Sample]] = []
    for list_path, files, annotations, labels in lists:
        paths = [root / "Images" / file for file in files]
        absent = [str(path) for path in paths if not path.is_file()]
        if absent:
            shown = ", ".join(absent[:5]) + (f", ... ({len(absent) - 5} more)" if len(absent) > 5 else "")
            raise DatasetError(f"{list_path} names {len(absent)} image(s) that do not exist: {shown}")
        boxes: list[tuple[int, int, int, int] | None] = [None] * len(paths)
        if crop_to_box != "none":
            boxes = [reduce_boxes(read_voc_boxes(root / "Annotation" / a), crop_to_box) for a in annotations]
        splits.append([Sample(p, label - 1, box) for p, label, box in zip(paths, labels, boxes, strict=True)])
    return splits[0], splits[1], class_names


# ---------------------------------------------------------------------------------------------------------------
# Transforms and datasets


class ClassificationTransform(AlbumentationsTransform):
    """An albumentations pipeline: (H, W, 3) uint8 RGB -> float32 (3, size, size) in [0, 1] (the model normalises)."""

    def __call__(self, image: np.ndarray) -> Tensor:
        return image_to_tensor(self.compose(image=image)["image"])


def build_train_transform(
    image_size: int,
    augment: Literal["light", "none"] = "light",
    crop_min_scale: float = 0.25,
    color_jitter: float = 0.0,
    eval_crop_fraction: float = 0.875,
    seed: int | None = None,
) -> ClassificationTransform:
    """Training pipeline. "light" (the paper's advice for small models: fewer small crops than Inception's 8%):
    a random crop of ``crop_min_scale``..1 of the area and aspect 3/4..4/3 resized to ``image_size``, a horizontal
    flip, and an optional colour jitter of strength ``color_jitter``. "none" is the evaluation pipeline. ``seed``
    starts the random stream (the data module draws it from torch's generator)."""
    if augment == "none":
        return build_eval_transform(image_size, eval_crop_fraction)
    if augment != "light":
        raise ValueError(f"augment must be 'light' or 'none', got {augment!r}")
    if not 0.0 < crop_min_scale <= 1.0:
        raise ValueError(f"crop_min_scale must be in (0, 1], got {crop_min_scale}")
    steps: list[A.BasicTransform] = [
        A.RandomResizedCrop(size=(image_size, image_size), scale=(crop_min_scale, 1.0), area_for_downscale="image"),
        A.HorizontalFlip(p=0.5),
    ]
    if color_jitter > 0:
        s = color_jitter
        steps.append(A.ColorJitter(brightness=s, contrast=s, saturation=s, hue=min(0.5, s / 4), p=0.8))
    return ClassificationTransform(A.Compose(steps, seed=seed))


def build_eval_transform(image_size: int, crop_fraction: float = 0.875) -> ClassificationTransform:
    """Evaluation pipeline: shorter side to ``image_size / crop_fraction``, centre crop ``image_size``."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"eval_crop_fraction must be in (0, 1], got {crop_fraction}")
    resize = int(round(image_size / crop_fraction))
    steps = [
        A.SmallestMaxSize(max_size=resize, area_for_downscale="image"),
        A.CenterCrop(image_size, image_size, pad_if_needed=True),
    ]
    return ClassificationTransform(A.Compose(steps))


def _crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1 = max(0, box[0]), max(0, box[1])
    x2, y2 = min(width, box[2]), min(height, box[3])
    if x2 - x1 < 2 or y2 - y1 < 2:  # a box outside the stored pixels: keep the whole image
        return image
    return image[y1:y2, x1:x2]


class ClassificationDataset(Dataset):
    """Decoded, cropped and transformed samples: item ``i`` is (image (3, S, S), label, i), or None when
    ``skip_unreadable`` and the file cannot be decoded or has more than ``max_pixels`` pixels (a warning names it;
    ``collate_stacked`` drops it). Without ``skip_unreadable`` (validation) such a file raises ImageLoadError.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[np.ndarray], Tensor],
        skip_unreadable: bool = False,
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int] | None:
        sample = self.samples[index]
        if self.skip_unreadable:
            image = try_load_rgb(sample.path, max_pixels=self.max_pixels)
        else:
            image = load_rgb(sample.path, max_pixels=self.max_pixels)
        if image is None:
            return None
        if sample.box is not None:
            image = _crop(image, sample.box)
        return self.transform(image), sample.label, index


# ---------------------------------------------------------------------------------------------------------------
# The data module


class ClassificationDataModule(TaskDataModule):
    """Training and validation data of a classification run (the ``data:`` config section); batches are stacked
    ``Batch`` es (``collate_stacked``) of float32 (B, 3, S, S) images in [0, 1] and int64 labels.

    Args:
        root: the dataset folder.
        layout: "imagefolder" (``train/`` and ``val/`` with one folder per class) or "stanford_dogs" (the official
            layout; the test list is the validation split).
        image_size: the square training and evaluation input side.
        batch_size: images per step and device.
        num_workers: DataLoader worker processes.
        augment: "light" (random crop of ``crop_min_scale``..1 of the area, horizontal flip) or "none".
        crop_min_scale: the smallest random crop, as a fraction of the image area.
        color_jitter: brightness / contrast / saturation jitter strength (0 = none, as the paper's light recipe).
        eval_crop_fraction: evaluation resizes the shorter side to ``image_size / eval_crop_fraction`` and crops the
            centre (0.875: 256 -> 224).
        crop_to_box: Stanford Dogs only: crop every image to its annotated dog before augmentation: "union" of all
            boxes of the image (every dog in view), "first" box listed, or "none".
        shared: the settings of every task, ``TaskDataModule``'s: ``val_batch_size``, ``mean``, ``std``,
            ``label_fraction``, ``label_seed``, ``max_bad_fraction``, ``min_seen_for_bad_fraction``,
            ``max_image_pixels``.
    """

    collate_fn = staticmethod(collate_stacked)

    def __init__(
        self,
        root: str,
        layout: Layout = "imagefolder",
        image_size: int = 224,
        batch_size: int = 64,
        num_workers: int = 4,
        augment: Literal["light", "none"] = "light",
        crop_min_scale: float = 0.25,
        color_jitter: float = 0.0,
        eval_crop_fraction: float = 0.875,
        crop_to_box: BoxCrop = "none",
        **shared: Any,
    ) -> None:
        super().__init__(batch_size, num_workers, **shared)
        if layout not in ("imagefolder", "stanford_dogs"):
            raise ConfigError(f"data.layout must be 'imagefolder' or 'stanford_dogs', got {layout!r}")
        if crop_to_box not in ("none", "union", "first"):
            raise ConfigError(f"data.crop_to_box must be 'none', 'union' or 'first', got {crop_to_box!r}")
        if crop_to_box != "none" and layout != "stanford_dogs":
            raise ConfigError(f"data.crop_to_box={crop_to_box!r} needs boxes: only layout stanford_dogs has them")
        self.root = Path(root)
        self.layout = layout
        self.image_size = image_size
        self.augment = augment
        self.crop_min_scale = crop_min_scale
        self.color_jitter = color_jitter
        self.eval_crop_fraction = eval_crop_fraction
        self.crop_to_box = crop_to_box

    @cached_property
    def _index(self) -> tuple[list[Sample], list[Sample], list[str]]:
        check_data_root(self.root, LAYOUTS[self.layout])
        if self.layout == "stanford_dogs":
            return read_stanford_dogs(self.root, self.crop_to_box)
        train, class_names = read_image_folder(self.root / "train")
        val, _ = read_image_folder(self.root / "val", class_names)
        return train, val, class_names

    @classmethod
    def known_num_classes(cls, data_config: dict[str, Any]) -> tuple[int | None, str]:
        """The class folders under ``root`` (Stanford Dogs' ``Images/``, an image folder's ``train/``) when they
        exist; else Stanford Dogs' 120 breeds, or nothing for an image folder."""
        root = Path(data_config.get("root", ""))
        layout = data_config.get("layout", "imagefolder")
        folder = root / ("Images" if layout == "stanford_dogs" else "train")
        count = sum(entry.is_dir() for entry in os.scandir(folder)) if folder.is_dir() else 0
        if count:
            return count, f"the class folders in {folder}"
        if layout == "stanford_dogs":
            return STANFORD_DOGS_CLASSES, f"Stanford Dogs' breeds, data.layout stanford_dogs; no {folder} to count"
        return None, f"no class folders in {folder} to count"

    def data_info(self) -> dict[str, Any]:
        """Classes, split sizes, the evaluation preprocessing (``image_size``, ``eval_crop_fraction``) and the input
        normalisation ``mean`` and ``std`` (None: the backbone's own)."""
        train, val, class_names = self._index
        return {
            "num_classes": len(class_names),
            "class_names": class_names,
            "train_size": len(train),
            "val_size": len(val),
            "image_size": self.image_size,
            "eval_crop_fraction": self.eval_crop_fraction,
            "mean": self.mean,
            "std": self.std,
        }

    def unlabeled_target(self) -> int:
        """The target of a training image without a label (distillation): cross-entropy's ignore index."""
        return -100

    def setup(self, stage: str | None = None) -> None:
        """Build the training split for ``fit`` (its augmentation seeded from torch's generator) and the validation
        split for every stage, once each."""
        train, val, _ = self._index
        if stage in (None, "fit") and self.train_dataset is None:
            transform = build_train_transform(
                self.image_size,
                self.augment,
                self.crop_min_scale,
                self.color_jitter,
                self.eval_crop_fraction,
                seed=draw_seed(),
            )
            self.train_dataset = ClassificationDataset(
                train, transform, skip_unreadable=True, max_pixels=self.max_image_pixels
            )
        if self.val_dataset is None:
            self.val_dataset = ClassificationDataset(
                val, build_eval_transform(self.image_size, self.eval_crop_fraction), max_pixels=self.max_image_pixels
            )
