"""COCO-format detection data: a validated dataset and a Lightning data module (batches by ``collate_lists``).

Targets follow torchvision's detection convention: boxes x1y1x2y2 in pixels of the returned image, labels 1..C
with 0 left for the background. Original COCO category ids (gapped, 1..90 for COCO) map to labels in sorted order.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from tasks.common.data import TaskDataModule, collate_lists, draw_seed
from tasks.common.errors import ConfigError, DatasetError
from tasks.common.files import check_data_root, check_inside
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, load_rgb, try_load_rgb
from tasks.detection.transforms import AUGMENT_MODES, AugmentMode, build_eval_transform, build_train_transform

__all__ = ["CocoDataModule", "CocoDetection", "load_coco"]

logger = logging.getLogger(__name__)

TransformFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Tensor, Tensor, Tensor]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def _check_entries(data: dict[str, Any], key: str, ann_file: Path, required: tuple[str, ...]) -> set[int]:
    """Check the entries of ``data[key]`` are objects with ``required`` fields and unique int ids; return the ids."""
    ids: set[int] = set()
    for index, entry in enumerate(data[key]):
        entry_id = entry.get("id") if isinstance(entry, dict) else None
        if not _is_int(entry_id):
            raise DatasetError(f"{ann_file}: {key}[{index}] has no integer 'id'")
        missing = [field for field in required if field not in entry]
        if missing:
            raise DatasetError(f"{ann_file}: {_SINGULAR[key]} {entry_id} lacks {missing}")
        if entry_id in ids:
            raise DatasetError(f"{ann_file}: {_SINGULAR[key]} id {entry_id} appears twice")
        ids.add(entry_id)
    return ids


def _check_annotation(ann: dict[str, Any], ann_file: Path, image_ids: set[int], cat_ids: set[int]) -> None:
    """One annotation: ids of an image and a category of the file, a box of four finite numbers, ``iscrowd`` 0 or 1
    and a finite ``area`` (COCOeval reads ``iscrowd`` as a flag and compares areas: a string "0" would make a crowd
    region). A box of no width or height passes: ``CocoDetection`` drops it with a warning."""
    where = f"{ann_file}: annotation {ann['id']}"
    for key, known in (("image_id", image_ids), ("category_id", cat_ids)):
        if not _is_int(ann[key]) or ann[key] not in known:
            raise DatasetError(f"{where} refers to unknown {key} {ann[key]!r}")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        raise DatasetError(f"{where} has bbox {bbox!r}, expected 4 finite numbers")
    if "iscrowd" in ann and not (_is_int(ann["iscrowd"]) and ann["iscrowd"] in (0, 1)):
        raise DatasetError(f"{where} has iscrowd {ann['iscrowd']!r}, expected 0 or 1")
    if "area" in ann and not _is_number(ann["area"]):
        raise DatasetError(f"{where} has area {ann['area']!r}, expected a finite number")


def _validate(data: Any, ann_file: Path) -> None:
    """Raise ``DatasetError`` naming the file and the offending id for anything pycocotools would trip over, or that
    would reach training as a NaN or infinity (Python's json reads the literals NaN and Infinity)."""
    if not isinstance(data, dict):
        raise DatasetError(f"{ann_file}: expected a JSON object at the top level, got {type(data).__name__}")
    missing = [key for key in ("images", "annotations", "categories") if not isinstance(data.get(key), list)]
    if missing:
        raise DatasetError(f"{ann_file}: missing or non-list top-level keys {missing}")
    image_ids = _check_entries(data, "images", ann_file, ("file_name", "width", "height"))
    if not image_ids:
        raise DatasetError(f"{ann_file}: 'images' is empty")
    for image in data["images"]:
        check_inside(image["file_name"], f"{ann_file}: image {image['id']}")
        if not all(_is_number(image[k]) and image[k] > 0 for k in ("width", "height")):
            raise DatasetError(
                f"{ann_file}: image {image['id']} has width x height {image['width']!r} x {image['height']!r}, "
                "expected positive numbers"
            )
    cat_ids = _check_entries(data, "categories", ann_file, ("name",))
    if not cat_ids:
        raise DatasetError(f"{ann_file}: 'categories' is empty")
    _check_entries(data, "annotations", ann_file, ("image_id", "category_id", "bbox"))
    for ann in data["annotations"]:
        _check_annotation(ann, ann_file, image_ids, cat_ids)


def load_coco(ann_file: str | Path) -> COCO:
    """Read, validate and index a COCO annotation file (quietly: pycocotools prints to stdout).

    Annotations without "iscrowd" get 0 and without "area" get the box area, so COCOeval can use the result.
    """
    ann_file = Path(ann_file)
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    try:
        with ann_file.open("rb") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{ann_file}, line {error.lineno} column {error.colno}: not a valid JSON file ({error.msg})"
        ) from error
    except (UnicodeDecodeError, RecursionError) as error:  # RecursionError: arrays or objects nested too deeply
        raise DatasetError(f"{ann_file}: not a valid JSON file ({error})") from error
    _validate(data, ann_file)
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """Images and boxes of one COCO annotation file.

    ``dataset[i]`` -> ``(image, target, i)``: image float32 (3, H, W) in [0, 1] after ``transform``; target
    {"boxes": float32 (N, 4) x1y1x2y2 pixels, "labels": int64 (N,) in 1..C, "image_id": int, "orig_size": (h, w)}.
    Every image is kept, those without annotations as negatives (N = 0). Crowd regions are left out of the
    targets; boxes are clipped to the image and those left with no width or height (zero or negative in the file, or
    outside the image) are dropped, with one warning naming their annotation ids (``dropped_box_ids``,
    ``num_dropped_boxes``). ``transform`` takes (image uint8 HxWx3, boxes (N, 4), labels (N,)) and returns tensors
    (see ``tasks.detection.transforms``); ``None`` only converts.
    With ``train=True`` an unreadable image, or one of more than ``max_pixels`` pixels, gives a warning naming it
    and ``dataset[i]`` is ``None`` (dropped by ``collate_lists``); otherwise it raises ``ImageLoadError`` (or
    ``DatasetError`` for a size that disagrees with the annotation file).
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        transform: TransformFn | None = None,
        train: bool = False,
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.transform = transform if transform is not None else build_eval_transform()
        self.train = train
        self.max_pixels = max_pixels
        self.coco = load_coco(self.ann_file)
        self.image_ids: list[int] = sorted(self.coco.imgs)
        self.cat_ids: list[int] = sorted(self.coco.cats)
        self.cat_id_to_label: dict[int, int] = {cat_id: label for label, cat_id in enumerate(self.cat_ids, start=1)}
        self.label_to_cat_id: dict[int, int] = {label: cat_id for cat_id, label in self.cat_id_to_label.items()}
        self.class_names: list[str] = [str(self.coco.cats[cat_id]["name"]) for cat_id in self.cat_ids]
        self.num_classes = len(self.cat_ids)
        self._targets, self.dropped_box_ids = self._build_targets()
        self.num_dropped_boxes = len(self.dropped_box_ids)
        if self.dropped_box_ids:
            shown = ", ".join(map(str, self.dropped_box_ids[:10])) + (", ..." if self.num_dropped_boxes > 10 else "")
            logger.warning(
                "dropped %d degenerate boxes in %s (no width or height inside the image): annotation ids %s",
                self.num_dropped_boxes,
                self.ann_file,
                shown,
            )
        # Counted in this process only: each DataLoader worker keeps its own copy (a Batch's ``skipped`` is the
        # per-batch count, which is what a training loop should log).
        self.num_skipped_images = 0

    def _build_targets(self) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]], list[int]]:
        """Clipped x1y1x2y2 boxes and labels per image id, and the annotation ids of the degenerate boxes dropped."""
        targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        dropped: list[int] = []
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            anns = [ann for ann in self.coco.imgToAnns.get(image_id, []) if not ann.get("iscrowd", 0)]
            boxes = np.array([ann["bbox"] for ann in anns], dtype=np.float64).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, info["width"])
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, info["height"])
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            dropped.extend(ann["id"] for ann, kept in zip(anns, keep, strict=True) if not kept)
            labels = np.array([self.cat_id_to_label[ann["category_id"]] for ann in anns], dtype=np.int64)
            targets[image_id] = (boxes[keep].astype(np.float32), labels[keep])
        return targets, dropped

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def _load_image(self, image_id: int) -> np.ndarray | None:
        path = self.image_path(image_id)
        info = self.coco.imgs[image_id]
        if self.train:
            image = try_load_rgb(path, max_pixels=self.max_pixels)
        else:
            image = load_rgb(path, max_pixels=self.max_pixels)
        if image is not None and image.shape[:2] != (info["height"], info["width"]):
            message = (
                f"{path} is {image.shape[1]}x{image.shape[0]} but {self.ann_file} says image {image_id} is "
                f"{info['width']}x{info['height']}"
            )
            if not self.train:
                raise DatasetError(message)
            warnings.warn(f"skipping {message}", stacklevel=3)
            image = None
        if image is None:
            self.num_skipped_images += 1
        return image

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any], int] | None:
        image_id = self.image_ids[index]
        image = self._load_image(image_id)
        if image is None:
            return None
        orig_size = (int(image.shape[0]), int(image.shape[1]))
        boxes, labels = self._targets[image_id]
        image_tensor, boxes_tensor, labels_tensor = self.transform(image, boxes, labels)
        target = {"boxes": boxes_tensor, "labels": labels_tensor, "image_id": int(image_id), "orig_size": orig_size}
        return image_tensor, target, index


_COCO_DEFAULTS = {
    "train_images": "train2017",
    "train_annotations": "annotations/instances_train2017.json",
    "val_images": "val2017",
    "val_annotations": "annotations/instances_val2017.json",
}


COCO_LAYOUT = (
    "the COCO 2017 layout: annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/ "
    "and val2017/ (or set data.train_images, ...; tools/make_synthetic.py coco --out DIR writes a small one)"
)


def _resolve(root: Path, argument: str, value: str | None) -> Path:
    path = Path(value if value is not None else _COCO_DEFAULTS[argument]).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.exists():
        origin = "the COCO 2017 default under root" if value is None else f"{argument}={value!r}"
        raise FileNotFoundError(f"{argument}: {path} does not exist (from {origin})")
    return path


class CocoDataModule(TaskDataModule):
    """COCO-format train/val data (COCO 2017 layout by default; each path can be overridden, relative paths are
    taken from ``root``); batches are ``Batch`` lists (``collate_lists``).

    Training images go through ``augment`` ("ssd": photometric distortion, zoom out, minimum-IoU crop, flip, resize;
    "flip": flip and resize; "none": resize) and come out ``image_size`` x ``image_size``. Validation images keep
    their size: the model resizes internally and maps boxes back, so val targets are in original pixels.
    The validation file is loaded and checked at construction (``num_classes`` and the class names come from it);
    the training file in ``setup("fit")``, so evaluation reads only the validation files. ``shared``: the settings
    of every task, ``TaskDataModule``'s (``val_batch_size``, ``mean``, ``std``, ``label_fraction``, ``label_seed``,
    ``max_bad_fraction``, ``min_seen_for_bad_fraction``, ``max_image_pixels``).
    """

    collate_fn = staticmethod(collate_lists)

    def __init__(
        self,
        root: str,
        train_images: str | None = None,
        train_annotations: str | None = None,
        val_images: str | None = None,
        val_annotations: str | None = None,
        image_size: int = 300,
        batch_size: int = 32,
        num_workers: int = 2,
        augment: AugmentMode = "ssd",
        zoom_out_max_scale: float = 4.0,
        zoom_out_p: float = 0.5,
        crop_min_scale: float = 0.3,
        flip_p: float = 0.5,
        photometric_p: float = 0.5,
        min_box_size: float = 1.0,
        **shared: Any,
    ) -> None:
        super().__init__(batch_size, num_workers, **shared)
        self.save_hyperparameters()
        if augment not in AUGMENT_MODES:
            raise ConfigError(f"data.augment must be one of {AUGMENT_MODES}, got {augment!r}")
        root_path = check_data_root(root, COCO_LAYOUT)
        self._root = root_path
        self._train_paths = {"train_images": train_images, "train_annotations": train_annotations}
        self.val_images = _resolve(root_path, "val_images", val_images)
        self.val_annotations = _resolve(root_path, "val_annotations", val_annotations)
        self._train_transform_args = dict(
            image_size=image_size,
            augment=augment,
            zoom_out_max_scale=zoom_out_max_scale,
            zoom_out_p=zoom_out_p,
            crop_min_scale=crop_min_scale,
            flip_p=flip_p,
            photometric_p=photometric_p,
            min_box_size=min_box_size,
        )
        self.val_dataset: CocoDetection = CocoDetection(
            self.val_images, self.val_annotations, build_eval_transform(), max_pixels=self.max_image_pixels
        )
        self.train_dataset: CocoDetection | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load the training file for ``fit`` (once); its augmentation is seeded from torch's generator."""
        if stage not in (None, "fit") or self.train_dataset is not None:
            return
        self.train_images = _resolve(self._root, "train_images", self._train_paths["train_images"])
        self.train_annotations = _resolve(self._root, "train_annotations", self._train_paths["train_annotations"])
        transform = build_train_transform(**self._train_transform_args, seed=draw_seed())
        dataset = CocoDetection(
            self.train_images, self.train_annotations, transform, train=True, max_pixels=self.max_image_pixels
        )
        self._check_same_categories(dataset)
        self.train_dataset = dataset

    def _check_same_categories(self, train_dataset: CocoDetection) -> None:
        train = {cat_id: cat["name"] for cat_id, cat in train_dataset.coco.cats.items()}
        val = {cat_id: cat["name"] for cat_id, cat in self.val_dataset.coco.cats.items()}
        if train != val:
            differing = sorted(set(train.items()) ^ set(val.items()))
            raise DatasetError(
                f"{self.train_annotations} and {self.val_annotations} have different categories; (id, name) pairs "
                f"in only one of them: {differing}"
            )

    @property
    def num_classes(self) -> int:
        return self.val_dataset.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.val_dataset.class_names

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        return self.val_dataset.label_to_cat_id

    def data_info(self) -> dict[str, Any]:
        """``num_classes``, ``class_names``, ``label_to_cat_id`` (contiguous label -> the file's category id), and
        the input normalisation ``mean`` and ``std`` (None: the backbone's own)."""
        return {
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "label_to_cat_id": dict(self.label_to_cat_id),
            "mean": self.mean,
            "std": self.std,
        }
