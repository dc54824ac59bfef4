"""Distillation data: each training crop seen twice, by the student at its size and by the teacher at its own, the
training split's labels kept for a fraction of it, and a folder of unlabelled images beside it or alone.

The task's own data module makes the training crops at the larger of the two sizes; the student's view and the
teacher's are resized from that one crop (antialiased), so a 224-pixel teacher of a 128-pixel student sees a
224-pixel image of the same crop. Validation is the task's own, at the student's size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tasks.common.data import Batch, TaskDataModule, collate_stacked, make_loader
from tasks.common.errors import ConfigError, DatasetError
from tasks.common.files import collect_images
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, try_load_rgb

__all__ = ["DistillBatch", "UnlabeledImages", "TwoViews", "collate_two_views", "DistillationDataModule", "item_path"]


@dataclass
class DistillBatch(Batch):
    """A training batch for distillation: ``teacher_inputs`` (B, 3, T, T), the teacher's view of each crop, or
    ``teacher_outputs`` (B, D) read from the cache."""

    teacher_inputs: Tensor | None = None
    teacher_outputs: Tensor | None = None


def item_path(dataset: Dataset, index: int) -> Path:
    """The image file of item ``index`` of a task's dataset (the teacher cache's key)."""
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        sample = samples[index]
        return Path(getattr(sample, "path", sample[0] if isinstance(sample, tuple) else sample))
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return Path(paths[index])
    raise ConfigError(f"{type(dataset).__name__} does not say which file each item comes from: cannot cache a teacher")


class UnlabeledImages(Dataset):
    """The image files under a folder (searched recursively), without labels: item ``i`` is
    (``transform(image)``, ``target``, i), or None for an unreadable file or one of more than ``max_pixels`` pixels
    (a warning names it)."""

    def __init__(
        self, folder: str | Path, transform: Any, target: Any, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"distill.unlabeled: {folder} is not a folder")
        self.paths = collect_images([folder])
        self.transform = transform
        self.target = target
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Any, int] | None:
        image = try_load_rgb(self.paths[index], max_pixels=self.max_pixels)
        if image is None:
            return None
        return self.transform(image), self.target, index


def _resize(image: Tensor, size: int) -> Tensor:
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return F.interpolate(image[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


class TwoViews(Dataset):
    """The task's training items (and unlabelled images after them) as (student view, target, index, teacher view
    or cached teacher output). Labels outside ``labeled`` become ``unlabeled_target``.

    Items of ``labeled_set`` keep their index; unlabelled images follow at ``len(labeled_set) + i``.
    """

    def __init__(
        self,
        labeled_set: Dataset | None,
        unlabeled_set: Dataset | None,
        student_size: int,
        teacher_size: int,
        unlabeled_target: Any,
        keep_label: Sequence[bool] | None = None,
        cache: Mapping[str, Tensor] | None = None,
    ) -> None:
        self.labeled_set = labeled_set
        self.unlabeled_set = unlabeled_set
        self.student_size = student_size
        self.teacher_size = teacher_size
        self.unlabeled_target = unlabeled_target
        self.keep_label = keep_label
        self.cache = cache
        self._offset = len(labeled_set) if labeled_set is not None else 0
        # The DataLoader's worker seeding reseeds ``transform``: the labelled set's, shared by the unlabelled one.
        source = labeled_set if labeled_set is not None else unlabeled_set
        self.transform = getattr(source, "transform", None)

    def __len__(self) -> int:
        return self._offset + (len(self.unlabeled_set) if self.unlabeled_set is not None else 0)

    def path(self, index: int) -> Path:
        if index < self._offset:
            return item_path(self.labeled_set, index)
        return item_path(self.unlabeled_set, index - self._offset)

    def __getitem__(self, index: int) -> tuple[Tensor, Any, int, Tensor] | None:
        if index < self._offset:
            item = self.labeled_set[index]
            if item is not None and self.keep_label is not None and not self.keep_label[index]:
                item = (item[0], self.unlabeled_target, item[2])
        else:
            item = self.unlabeled_set[index - self._offset]
        if item is None:
            return None
        crop, target, _ = item
        teacher = self.cache[str(self.path(index))] if self.cache is not None else _resize(crop, self.teacher_size)
        return _resize(crop, self.student_size), target, index, teacher


def collate_two_views(samples: Sequence[tuple[Tensor, Any, int, Tensor] | None]) -> DistillBatch:
    """``collate_stacked`` of the student views, with the teacher's views (or cached outputs) stacked beside."""
    batch = collate_stacked([sample[:3] if sample is not None else None for sample in samples])
    kept = [sample[3] for sample in samples if sample is not None]
    extra = torch.stack(kept) if kept else None
    cached = bool(kept) and kept[0].ndim == 1
    return DistillBatch(
        batch.inputs,
        batch.targets,
        batch.indices,
        batch.skipped,
        teacher_inputs=None if cached else extra,
        teacher_outputs=extra if cached else None,
    )


class DistillationDataModule(L.LightningDataModule):
    """Training data for a student and its teacher, validation data of the student's task.

    Args:
        train_data: the task's data module at the larger of the student's and the teacher's sizes (its training
            split, augmentation and ``unlabeled_target()``).
        val_data: the task's data module at the student's size (validation, ``data_info``).
        student_size, teacher_size: the square sides of the two views.
        unlabeled: a folder of unlabelled images, or None.
        train_on: "both" or "unlabeled" (the folder alone).
    """

    def __init__(
        self,
        train_data: TaskDataModule,
        val_data: TaskDataModule,
        student_size: int,
        teacher_size: int,
        unlabeled: str | None = None,
        train_on: str = "both",
    ) -> None:
        super().__init__()
        if train_on == "unlabeled" and not unlabeled:
            raise ConfigError("distill.train_on: unlabeled needs distill.unlabeled: DIR")
        self.train_data = train_data
        self.val_data = val_data
        self.student_size = student_size
        self.teacher_size = teacher_size
        self.unlabeled = unlabeled
        self.train_on = train_on
        self.batch_size = val_data.batch_size
        self.train_dataset: TwoViews | None = None
        self.cache: dict[str, Tensor] | None = None

    def __getattr__(self, name: str) -> Any:
        # The student's hooks may ask the data module for what the task's own offers (class names, pairs...).
        if name.startswith("__") or name in ("train_data", "val_data"):
            raise AttributeError(name)
        return getattr(self.val_data, name)

    def data_info(self) -> dict[str, Any]:
        return self.val_data.data_info()

    def setup(self, stage: str | None = None) -> None:
        self.val_data.setup("validate")
        if stage not in (None, "fit") or self.train_dataset is not None:
            return
        self.train_data.setup("fit")
        labeled = self.train_data.train_dataset if self.train_on == "both" else None
        if labeled is None and self.train_on == "both":
            raise ConfigError("the task's data module built no training split")
        transform = getattr(self.train_data.train_dataset, "transform", None)
        target = self.train_data.unlabeled_target()
        unlabeled_set = None
        if self.unlabeled:
            # The task's own limit (data.max_image_pixels) holds for the unlabelled folder too.
            unlabeled_set = UnlabeledImages(self.unlabeled, transform, target, self.train_data.max_image_pixels)
        keep = None
        if labeled is not None and self.train_data.label_fraction < 1.0:
            keep = self.train_data.labeled_mask(len(labeled))
        self.train_dataset = TwoViews(
            labeled, unlabeled_set, self.student_size, self.teacher_size, target, keep, self.cache
        )

    def use_cache(self, cache: dict[str, Tensor]) -> None:
        """From now on the training items carry the cached teacher outputs instead of the teacher's view."""
        self.cache = cache
        if self.train_dataset is not None:
            self.train_dataset.cache = cache

    def train_dataloader(self) -> DataLoader:
        return make_loader(
            self.train_dataset,
            self.val_data.batch_size,
            train=True,
            num_workers=self.val_data.num_workers,
            collate_fn=collate_two_views,
            position=self.fit_position,
        )

    def val_dataloader(self) -> DataLoader:
        return self.val_data.val_dataloader()
