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
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, get_worker_info

from tasks.common.errors import ConfigError
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS

__all__ = [
    "Item",
    "Batch",
    "collate_stacked",
    "collate_lists",
    "seed_worker",
    "make_loader",
    "EpochShuffle",
    "EvalShard",
    "SampleKey",
    "SeededSamples",
    "ResumableLoader",
    "sample_seed",
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

    A training loader seeds the pipeline before each sample from (run seed, epoch, index) (``SeededSamples``);
    other loaders' workers reseed their copies once (``seed_worker``).
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


class SampleKey(int):
    """A training sample's dataset index that also carries the epoch it is drawn in, so that the dataset (in whichever
    worker process reads it) can seed the sample's augmentation from (run seed, epoch, index) alone."""

    epoch: int

    def __new__(cls, index: int, epoch: int) -> SampleKey:
        key = super().__new__(cls, index)
        key.epoch = epoch
        return key

    def __reduce__(self) -> tuple[Any, tuple[int, int]]:
        return SampleKey, (int(self), self.epoch)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of sample ``index`` in ``epoch`` of a run seeded with ``seed``: the same in any worker,
    after any resume, whatever other samples were drawn before."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


def _transforms(node: Any, depth: int = 0) -> list[AlbumentationsTransform]:
    """The AlbumentationsTransforms a dataset draws from, found through its attributes and the datasets it wraps
    (a Subset, distillation's labelled and unlabelled sets)."""
    if isinstance(node, AlbumentationsTransform):
        return [node]
    if depth > 3:
        return []
    if isinstance(node, (list, tuple)):
        children = list(node)
    elif isinstance(node, Dataset):
        children = list(vars(node).values())
    else:
        return []
    found: list[AlbumentationsTransform] = []
    for child in children:
        if isinstance(child, (AlbumentationsTransform, Dataset, list, tuple)):
            found.extend(item for item in _transforms(child, depth + 1) if item not in found)
    return found


class SeededSamples(Dataset):
    """A training dataset whose every sample is augmented from its own seed, ``sample_seed(seed, epoch, index)``, read
    from the SampleKey the sampler gives: a run and its resumed continuation, with any number of workers, draw the
    same augmentations."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self._streams: list[AlbumentationsTransform] | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int) -> Any:
        if self._streams is None:
            self._streams = _transforms(self.dataset)
        if isinstance(key, SampleKey):
            for transform in self._streams:
                transform.set_random_seed(sample_seed(self.seed, key.epoch, int(key)))
        return self.dataset[int(key)]


def _process_group() -> tuple[int, int] | None:
    """(processes, this one's rank) of the initialised process group (DDP), None without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return None


class EpochShuffle(DistributedSampler):
    """The training order: a permutation that depends on the run's seed and the epoch alone (``set_epoch``, which
    Lightning calls before each epoch), not on how much of torch's global random stream earlier work consumed, so
    that a resumed run visits the samples in the order the uninterrupted run would have.

    Under DDP (a process group is initialised when the loader is built) each process takes its share, as a
    DistributedSampler does; being one, Lightning keeps it instead of injecting its own. It yields SampleKeys (the
    epoch rides along for per-sample augmentation seeds), and ``resume_at`` skips the samples of an epoch that a
    mid-epoch checkpoint had already trained on.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        replicas, rank = _process_group() or (1, 0)
        super().__init__(data_source, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
        self.data_source = data_source
        self._resume: tuple[int, int] | None = None

    def resume_at(self, epoch: int, samples: int) -> None:
        """Skip the first ``samples`` of this process's share of ``epoch`` the next time that epoch is iterated."""
        self._resume = (epoch, samples)

    def __iter__(self) -> Iterator[int]:
        order = list(super().__iter__())
        if self._resume is not None and self._resume[0] == self.epoch:
            order = order[self._resume[1] :]
            self._resume = None
        return iter([SampleKey(index, self.epoch) for index in order])


class EvalShard(DistributedSampler):
    """An evaluation process's share of the samples, in order: every ``num_replicas``-th index from its rank, without
    the repeated samples a DistributedSampler pads the last shards with (Lightning injects one of those into an
    evaluation loader under DDP unless the loader already has a DistributedSampler, as it does with this one), so
    that a loss logged per batch and summed over processes counts each sample once.

    Shards differ by at most one sample, so processes run different numbers of batches: nothing in validation needs
    every process at each step, only at the epoch's end. A process that would get none (fewer samples than
    processes) gets the last sample again: without a batch Lightning skips its validation loop, and the others would
    wait for it at the epoch's end. (The gathered per-sample results keep one copy of that sample; a loss logged per
    batch counts it twice.)
    """

    def __init__(self, data_source: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(data_source, num_replicas=num_replicas, rank=rank, shuffle=False)
        size = len(data_source)  # type: ignore[arg-type]
        self.indices = list(range(rank, size, num_replicas)) or ([size - 1] if size else [])
        self.num_samples = len(self.indices)
        self.total_size = size

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


class ResumableLoader(DataLoader):
    """The training DataLoader: Lightning stores its ``state_dict`` in every checkpoint and hands it back on resume,
    so that a run resumed from a mid-epoch checkpoint continues that epoch with the next unseen batch.

    ``position`` returns (epoch, batches of it trained on so far); the data module reads it from its trainer.
    """

    def __init__(self, *args: Any, position: Callable[[], tuple[int, int]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = position

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position() if self.position is not None else (0, 0)
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if isinstance(self.sampler, EpochShuffle) and self.batch_size is not None:
            self.sampler.set_epoch(int(state["epoch"]))
            self.sampler.resume_at(int(state["epoch"]), int(state["batches"]) * self.batch_size)


def run_seed() -> int:
    """The seed ``lightning.seed_everything`` was given (the runner calls it with the config's ``seed``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", "0") or 0)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int,
    collate_fn: Collate,
    position: Callable[[], tuple[int, int]] | None = None,
) -> DataLoader:
    """A training (shuffled, per-sample seeded, resumable mid-epoch) or evaluation (in order) DataLoader.

    Training drops a last short batch, unless it is the whole set: it gives BatchNorm noisy statistics, and a batch
    of one image breaks BatchNorm on SSD's 1x1 maps. Evaluation keeps every sample, and under DDP (a process group
    is initialised when the loader is built) gives each process its share without repeats (``EvalShard``).
    ``position`` (training): the (epoch, batches trained on) a checkpoint records, see ``ResumableLoader``.
    """
    if not train:
        group = _process_group()
        shard = EvalShard(dataset, *group) if group is not None else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            sampler=shard,
            # Its own stream for the workers' base seed, so that when the first validation happens (after a resume
            # that skipped the sanity check) takes nothing from torch's global stream that training draws from.
            generator=torch.Generator().manual_seed(run_seed()),
            num_workers=num_workers,
            collate_fn=collate_fn,
            worker_init_fn=seed_worker,
            persistent_workers=num_workers > 0,
            pin_memory=torch.cuda.is_available(),
        )
    seeded = SeededSamples(dataset, run_seed())
    sampler = EpochShuffle(seeded, run_seed())
    if position is not None:
        # Lightning creates the first iterator before it sets the epoch (and a worker prefetches from it at once):
        # a run resumed in a later epoch must start in that epoch.
        sampler.set_epoch(position()[0])
    return ResumableLoader(
        seeded,
        batch_size=batch_size,
        sampler=sampler,
        # The loader's own stream for its workers' base seed: creating an iterator takes nothing from torch's
        # global stream, which the model's dropout draws from (and a resumed run restores).
        generator=torch.Generator().manual_seed(run_seed()),
        drop_last=len(dataset) > batch_size,
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
        position=position,
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

    ``max_image_pixels`` (width x height; None: no limit) refuses an image before decoding it, from its header: an
    unreadable image like any other (skipped in training, an error in evaluation). The default is PIL's own
    decompression-bomb limit; PIL itself refuses anything over twice its ``Image.MAX_IMAGE_PIXELS`` in any case.
    Subclasses hand it to their datasets (``load_rgb(..., max_pixels=...)``), which carry it into worker processes.

    A subclass declares its own settings and ``batch_size`` / ``num_workers`` (their defaults differ by task), and
    passes the shared settings above through ``**shared`` to this constructor: the config checker
    (``tasks.common.config.signature_keys``) reads the keys and types of both.
    """

    collate_fn: Collate

    def __init__(
        self,
        batch_size: int,
        num_workers: int,
        *,
        val_batch_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        label_fraction: float = 1.0,
        label_seed: int = 0,
        max_bad_fraction: float = 0.01,
        min_seen_for_bad_fraction: int = 200,
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
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
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ConfigError(f"data.max_image_pixels must be >= 1 or null (no limit), got {max_image_pixels}")
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.num_workers = num_workers
        self.mean = _channel_values(mean, "mean")
        self.std = _channel_values(std, "std", positive=True)
        self.label_fraction = label_fraction
        self.label_seed = label_seed
        self.max_bad_fraction = max_bad_fraction
        self.min_seen_for_bad_fraction = min_seen_for_bad_fraction
        self.max_image_pixels = max_image_pixels
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

    @classmethod
    def known_num_classes(cls, data_config: dict[str, Any]) -> tuple[int | None, str]:
        """(the number of classes of the ``data:`` section ``data_config``, why), where it is known without reading
        the dataset (tools/profile.py counts a config's classifier with it); (None, why not) where it is not."""
        return None, "not known without reading the dataset"

    def data_info(self) -> dict[str, Any]:
        """What the LightningModule must know of the data (class names, ids, input settings, ``mean`` and ``std``):
        saved in checkpoints, so prediction needs no dataset. Values must be plain YAML/JSON types."""
        raise NotImplementedError

    def _loader(self, dataset: Dataset | None, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            stage = "fit" if train else "validate"
            raise RuntimeError(f"{type(self).__name__}: call setup({stage!r}) before asking for its loaders")
        position = self.fit_position if train else None
        return make_loader(
            dataset,
            batch_size,
            train=train,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            position=position,
        )

    def fit_position(self) -> tuple[int, int]:
        """(epoch, batches of it trained on so far) of the trainer fitting with this data, for checkpoints."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0
        loop = trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.labeled_train_dataset(), self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, self.val_batch_size, train=False)
