"""The data pieces every task shares: the batch type, collate functions, loaders, worker seeding, the transform base
and the data-module base.

A task's dataset returns ``(input, target, index)`` for item ``index``, or ``None`` for a training image that cannot
be read (the dataset warns, naming the file); the collate functions drop the ``None`` items and count them, so one bad
file among thousands does not stop a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import lightning as L
import numpy as np
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset, get_worker_info

from tasks.common.errors import ConfigError

__all__ = [
    "Item",
    "Batch",
    "collate_stacked",
    "collate_lists",
    "seed_worker",
    "make_loader",
    "draw_seed",
    "image_to_tensor",
    "AlbumentationsTransform",
    "TaskDataModule",
]

# A dataset item: (input, target, dataset index).
Item = tuple[Tensor, Any, int]
Collate = Callable[[Sequence[Item | None]], "Batch"]


@dataclass
class Batch:
    """A collated batch: samples whose image could not be read were dropped and are counted in ``skipped``.

    Lightning moves a Batch to the device field by field (it handles dataclasses); ``pin_memory`` lets the
    DataLoader pin it on CUDA machines.
    """

    inputs: Tensor | list[Tensor]  # (B, 3, H, W) stacked, or B tensors (3, H_i, W_i) in [0, 1]
    targets: Tensor | list[dict[str, Any]]  # (B,) int64 labels, or one target dict per image (detection)
    indices: Tensor  # (B,) int64 dataset indices of the kept samples
    skipped: int

    def __len__(self) -> int:
        """The number of kept samples."""
        return len(self.indices)

    def pin_memory(self) -> Batch:
        """Page-locked copies of every tensor (the DataLoader calls this when ``pin_memory=True``; without it a
        dataclass would pass through unpinned)."""
        return apply_to_collection(self, Tensor, Tensor.pin_memory)


def _kept(samples: Sequence[Item | None]) -> tuple[tuple, tuple, Tensor, int]:
    kept = [sample for sample in samples if sample is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return (), (), torch.empty(0, dtype=torch.long), skipped
    inputs, targets, indices = zip(*kept, strict=True)
    return inputs, targets, torch.tensor(indices, dtype=torch.long), skipped


def collate_stacked(samples: Sequence[Item | None]) -> Batch:
    """Inputs of one size stacked into (B, 3, H, W) and targets into a (B,) tensor (int labels give int64);
    ``None`` samples dropped and counted. A batch with nothing readable has ``inputs`` (0, 3, 0, 0)."""
    inputs, targets, indices, skipped = _kept(samples)
    if not inputs:
        return Batch(torch.empty(0, 3, 0, 0), torch.empty(0, dtype=torch.long), indices, skipped)
    stacked_targets = torch.stack(targets) if isinstance(targets[0], Tensor) else torch.as_tensor(targets)
    return Batch(torch.stack(inputs), stacked_targets, indices, skipped)


def collate_lists(samples: Sequence[Item | None]) -> Batch:
    """Inputs and targets as lists (detection: images differ in size until the model resizes them); ``None``
    samples dropped and counted."""
    inputs, targets, indices, skipped = _kept(samples)
    return Batch(list(inputs), list(targets), indices, skipped)


def draw_seed() -> int:
    """A seed for a training pipeline, drawn from torch's default generator: the runner seeds that generator, so a
    run's augmentation is reproducible under the config's ``seed``."""
    return int(torch.randint(0, 2**31 - 1, ()))


def image_to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 -> float32 (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class AlbumentationsTransform:
    """The base of every task's pipeline: an albumentations ``Compose`` (``None``: conversion only) and its random
    stream. Subclasses define ``__call__`` for their inputs (an image; an image with boxes and labels).

    A training pipeline is seeded with ``draw_seed()`` when the data module sets up; each DataLoader worker then
    reseeds its copy (``seed_worker``).
    """

    def __init__(self, compose: A.Compose | None = None) -> None:
        self.compose = compose

    def set_random_seed(self, seed: int | None) -> None:
        if self.compose is not None:
            self.compose.set_random_seed(seed)

    def reseed_for_worker(self, worker_seed: int) -> None:
        """Workers start with identical copies of the generators and would draw the same augmentations: reseed
        from torch's worker seed, which differs per worker and per epoch and follows the runner's seed."""
        self.set_random_seed(worker_seed % 2**32)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.compose!r})"


def seed_worker(worker_id: int) -> None:
    """The DataLoader ``worker_init_fn`` of every task: torch has seeded ``random``, numpy and torch in the worker;
    this gives the dataset's ``transform`` its own stream too."""
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if isinstance(transform, AlbumentationsTransform):
        transform.reseed_for_worker(info.seed)


class EpochShuffle(RandomSampler):
    """The training shuffle: a permutation that depends on the run's seed and the epoch alone (``set_epoch``, which
    Lightning calls before each epoch, as for a DistributedSampler), not on how much of torch's global random stream
    earlier work consumed, so that a resumed run visits the samples in the order the uninterrupted run would have.
    A RandomSampler to Lightning, which therefore shuffles under DDP too (with its DistributedSampler)."""

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        yield from torch.randperm(len(self.data_source), generator=generator).tolist()


def run_seed() -> int:
    """The seed ``lightning.seed_everything`` was given (the runner calls it with the config's ``seed``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", "0") or 0)


def make_loader(dataset: Dataset, batch_size: int, *, train: bool, num_workers: int, collate_fn: Collate) -> DataLoader:
    """A training (shuffled) or evaluation (in order) DataLoader.

    Training drops a last short batch, unless it is the whole set: it gives BatchNorm noisy statistics, and a batch
    of one image breaks BatchNorm on SSD's 1x1 maps. Evaluation keeps every sample.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffle(dataset, run_seed()) if train else None,
        # The loader's own stream for its workers' base seed: creating an iterator takes nothing from torch's
        # global stream, which the model's dropout draws from (and a resumed run restores).
        generator=torch.Generator().manual_seed(run_seed()) if train else None,
        drop_last=train and len(dataset) > batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def _channel_values(values: Sequence[float] | None, key: str, positive: bool = False) -> list[float] | None:
    if values is None:
        return None
    if isinstance(values, str) or len(values) != 3:
        raise ConfigError(f"data.{key} must hold 3 values (R, G, B), got {values!r}")
    if positive and min(values) <= 0:
        raise ConfigError(f"data.{key} must be positive, got {values!r}")
    return [float(value) for value in values]


class TaskDataModule(L.LightningDataModule):
    """The base of every task's data module: loaders, batch sizes and the normalisation the model should use.

    Subclasses set ``collate_fn`` (``staticmethod(collate_stacked)`` or ``staticmethod(collate_lists)``), build
    ``train_dataset`` (in ``setup("fit")``, its pipeline seeded with ``draw_seed()``) and ``val_dataset``, and
    report ``data_info()``.

    ``mean`` and ``std`` are the RGB normalisation of inputs in [0, 1], applied by the model, not the data; None
    means the backbone's own (the config builder fills it in). They are only checked here and reported in
    ``data_info()``.

    Training skips an unreadable image with a warning naming it, and stops with a DatasetError once more than
    ``max_bad_fraction`` of the training images seen so far (summed over processes) were unreadable, counted from
    ``min_seen_for_bad_fraction`` images on; evaluation never skips.

    ``label_fraction`` < 1 keeps the labels of a subset of the training split, drawn with ``label_seed`` (not the
    run's seed, so runs of several seeds share it): the training loader serves that subset alone, and distillation
    gives the other images to the teacher as unlabelled ones (``labeled_mask``).
    """

    collate_fn: Collate

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        val_batch_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        label_fraction: float = 1.0,
        label_seed: int = 0,
        max_bad_fraction: float = 0.01,
        min_seen_for_bad_fraction: int = 200,
    ) -> None:
        super().__init__()
        if not 0.0 < label_fraction <= 1.0:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {label_fraction}")
        if not 0.0 <= max_bad_fraction <= 1.0 or min_seen_for_bad_fraction < 0:
            raise ConfigError(
                "data.max_bad_fraction must be in [0, 1] and data.min_seen_for_bad_fraction >= 0, got "
                f"{max_bad_fraction} and {min_seen_for_bad_fraction}"
            )
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise ConfigError(
                f"data.batch_size and data.val_batch_size must be >= 1, got {batch_size}, {val_batch_size}"
            )
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.mean = _channel_values(mean, "mean")
        self.std = _channel_values(std, "std", positive=True)
        self.label_fraction = label_fraction
        self.label_seed = label_seed
        self.max_bad_fraction = max_bad_fraction
        self.min_seen_for_bad_fraction = min_seen_for_bad_fraction
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None

    def labeled_mask(self, count: int) -> list[bool]:
        """Which of ``count`` training items keep their labels: all, or a subset of ``label_fraction`` of them
        (at least one) drawn with ``label_seed``, the same whichever tool asks (tools/train.py trains on it alone,
        tools/distill.py gives the others to the teacher as unlabelled images)."""
        if self.label_fraction >= 1.0:
            return [True] * count
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.label_seed))
        keep = torch.zeros(count, dtype=torch.bool)
        keep[order[: max(1, round(self.label_fraction * count))]] = True
        return keep.tolist()

    def labeled_train_dataset(self) -> Dataset | None:
        """The training split as tools/train.py sees it: the labelled subset when ``label_fraction`` < 1."""
        if self.train_dataset is None or self.label_fraction >= 1.0:
            return self.train_dataset
        mask = self.labeled_mask(len(self.train_dataset))
        return Subset(self.train_dataset, [index for index, kept in enumerate(mask) if kept])

    def data_info(self) -> dict[str, Any]:
        """What the LightningModule must know of the data (class names, ids, input settings, ``mean`` and ``std``):
        saved in checkpoints, so prediction needs no dataset. Values must be plain YAML/JSON types."""
        raise NotImplementedError

    def _loader(self, dataset: Dataset | None, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            stage = "fit" if train else "validate"
            raise RuntimeError(f"{type(self).__name__}: call setup({stage!r}) before asking for its loaders")
        return make_loader(dataset, batch_size, train=train, num_workers=self.num_workers, collate_fn=self.collate_fn)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.labeled_train_dataset(), self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, train=False)
