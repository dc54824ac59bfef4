"""The shared data pieces: Batch and the collate functions, loaders, worker seeding and seeded augmentation."""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import mock

import albumentations as A
import numpy as np
import PIL.Image
import pytest
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.plugins.precision import HalfPrecision
from torch import Tensor
from torch.utils.data import Dataset, SequentialSampler

from tasks.common.data import (
    AlbumentationsTransform,
    Batch,
    EpochShuffle,
    TaskDataModule,
    collate_lists,
    collate_stacked,
    draw_seed,
    image_to_tensor,
    make_loader,
    seed_worker,
)
from tasks.common.errors import ConfigError, DatasetError, ImageLoadError
from tasks.common.images import load_rgb, try_load_rgb
from tasks.registry import TASKS


def image(value: float, height: int = 4, width: int = 4) -> Tensor:
    return torch.full((3, height, width), value)


def detection_target(image_id: int) -> dict:
    return {"boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]), "labels": torch.tensor([1]), "image_id": image_id}


# ---------------------------------------------------------------------------------------------------------------
# Collate and Batch


def test_collate_stacked_stacks_the_kept_samples_and_counts_the_dropped_ones() -> None:
    batch = collate_stacked([(image(0.1), 3, 10), None, (image(0.2), 5, 12), None])

    assert isinstance(batch, Batch) and len(batch) == 2 and batch.skipped == 2
    assert batch.inputs.shape == (2, 3, 4, 4)
    assert batch.inputs[:, 0, 0, 0].tolist() == pytest.approx([0.1, 0.2])
    assert batch.targets.tolist() == [3, 5] and batch.targets.dtype == torch.int64
    assert batch.indices.tolist() == [10, 12] and batch.indices.dtype == torch.int64


def test_collate_lists_keeps_images_of_different_sizes_and_target_dicts() -> None:
    batch = collate_lists(
        [None, (image(0.1, 4, 6), detection_target(7), 0), (image(0.2, 5, 3), detection_target(9), 2)]
    )

    assert len(batch) == 2 and batch.skipped == 1
    assert [tuple(x.shape) for x in batch.inputs] == [(3, 4, 6), (3, 5, 3)]
    assert [t["image_id"] for t in batch.targets] == [7, 9]
    assert batch.indices.tolist() == [0, 2]


@pytest.mark.parametrize("collate", [collate_stacked, collate_lists], ids=["stacked", "lists"])
def test_a_batch_of_only_unreadable_images_is_empty_and_counts_them_all(collate) -> None:
    batch = collate([None, None, None])

    assert len(batch) == 0 and batch.skipped == 3
    assert len(batch.inputs) == 0 and len(batch.targets) == 0
    assert batch.indices.shape == (0,) and batch.indices.dtype == torch.int64


def test_lightning_moves_every_tensor_of_a_batch_to_the_device() -> None:
    batch = collate_lists([(image(0.5), detection_target(1), 4), None])

    moved = move_data_to_device(batch, torch.device("meta"))

    assert isinstance(moved, Batch) and moved.skipped == 1
    assert moved.inputs[0].device.type == "meta" and moved.indices.device.type == "meta"
    assert moved.targets[0]["boxes"].device.type == "meta" and moved.targets[0]["image_id"] == 1
    assert batch.inputs[0].device.type == "cpu"  # the original is left alone


def test_lightning_converts_the_float_tensors_of_a_batch_to_the_precision_dtype() -> None:
    batch = collate_stacked([(image(0.5), 2, 0), (image(0.25), 1, 1)])

    converted = HalfPrecision("bf16-true").convert_input(batch)

    assert isinstance(converted, Batch)
    assert converted.inputs.dtype == torch.bfloat16
    assert converted.targets.dtype == torch.int64 and converted.indices.dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_the_dataloader_pins_a_batch() -> None:
    batch = collate_lists([(image(0.5), detection_target(1), 0)])

    pinned = torch.utils.data._utils.pin_memory.pin_memory(batch)

    assert isinstance(pinned, Batch)
    assert pinned.inputs[0].is_pinned() and pinned.targets[0]["boxes"].is_pinned() and pinned.indices.is_pinned()


# ---------------------------------------------------------------------------------------------------------------
# make_loader


class Numbers(Dataset):
    """Item i is (a 1x1 image of value i, label i, i)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return torch.full((3, 1, 1), float(index)), index, index


def indices_seen(loader) -> list[int]:
    return sorted(i for batch in loader for i in batch.indices.tolist())


@pytest.mark.parametrize("size, expected", [(3, 3), (4, 4), (5, 4), (9, 8)])
def test_training_drops_a_last_short_batch_unless_it_is_everything(size: int, expected: int) -> None:
    loader = make_loader(Numbers(size), 4, train=True, num_workers=0, collate_fn=collate_stacked)

    assert len(indices_seen(loader)) == expected


@pytest.mark.parametrize("size", [3, 5])
def test_evaluation_keeps_every_sample(size: int) -> None:
    loader = make_loader(Numbers(size), 4, train=False, num_workers=0, collate_fn=collate_stacked)

    assert indices_seen(loader) == list(range(size))


def test_training_loaders_shuffle_and_evaluation_loaders_keep_the_order() -> None:
    train = make_loader(Numbers(8), 4, train=True, num_workers=0, collate_fn=collate_stacked)
    val = make_loader(Numbers(8), 4, train=False, num_workers=0, collate_fn=collate_stacked)

    order = [i for batch in train for i in batch.indices.tolist()]
    assert sorted(order) == list(range(8)) and order != list(range(8))
    assert isinstance(val.sampler, SequentialSampler) and indices_seen(val) == list(range(8))


def test_loaders_with_workers_seed_them_and_keep_them_alive() -> None:
    loader = make_loader(Numbers(8), 4, train=True, num_workers=2, collate_fn=collate_lists)

    assert loader.worker_init_fn is seed_worker and loader.persistent_workers
    assert loader.collate_fn is collate_lists


# ---------------------------------------------------------------------------------------------------------------
# Seeded augmentation and worker streams


class Jitter(AlbumentationsTransform):
    """A random crop, flip and colour jitter of an (H, W, 3) image, as a tensor."""

    def __init__(self, seed: int | None) -> None:
        steps = [A.RandomResizedCrop(size=(8, 8), scale=(0.2, 1.0)), A.HorizontalFlip(), A.ColorJitter(p=1.0)]
        super().__init__(A.Compose(steps, seed=seed))

    def __call__(self, array: np.ndarray) -> Tensor:
        return image_to_tensor(self.compose(image=array)["image"])


class RepeatedImage(Dataset):
    """One random 16x16 image ``size`` times, through ``transform``: any difference between items is augmentation."""

    def __init__(self, transform: AlbumentationsTransform, size: int = 4) -> None:
        self.transform = transform
        self.size = size
        self.array = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return self.transform(self.array), 0, index


def augmented_epoch(torch_seed: int, num_workers: int) -> list[Tensor]:
    """Build the pipeline and the loader as a data module does, under ``torch_seed`` given as the runner gives the
    config's seed (torch's generator and PL_GLOBAL_SEED, as lightning.seed_everything sets them); one epoch's images
    by index."""
    with mock.patch.dict(os.environ, {"PL_GLOBAL_SEED": str(torch_seed)}):
        torch.manual_seed(torch_seed)
        dataset = RepeatedImage(Jitter(seed=draw_seed()))
        loader = make_loader(dataset, 2, train=True, num_workers=num_workers, collate_fn=collate_stacked)
        images: dict[int, Tensor] = {}
        for batch in loader:
            images.update(zip(batch.indices.tolist(), batch.inputs, strict=True))
    return [images[i] for i in sorted(images)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_same_torch_seed_gives_the_same_augmented_samples(num_workers: int) -> None:
    first, second = augmented_epoch(3, num_workers), augmented_epoch(3, num_workers)

    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_another_torch_seed_gives_other_augmented_samples(num_workers: int) -> None:
    first, other = augmented_epoch(3, num_workers), augmented_epoch(4, num_workers)

    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_each_worker_draws_its_own_augmentations() -> None:
    torch.manual_seed(0)
    dataset = RepeatedImage(Jitter(seed=0), size=4)
    # In order, one image per batch: worker 0 reads items 0 and 2, worker 1 items 1 and 3. Without reseeding, both
    # workers start from copies of the same generator and item 1 repeats item 0.
    loader = make_loader(dataset, 1, train=False, num_workers=2, collate_fn=collate_stacked)

    images = [batch.inputs[0] for batch in loader]

    assert len(images) == 4
    assert all(not torch.equal(images[i], images[j]) for i in range(4) for j in range(i + 1, 4))


def test_seed_worker_leaves_a_dataset_without_an_albumentations_transform_alone() -> None:
    loader = make_loader(Numbers(4), 2, train=False, num_workers=2, collate_fn=collate_stacked)

    assert indices_seen(loader) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------------------------
# TaskDataModule


class TinyDataModule(TaskDataModule):
    collate_fn = staticmethod(collate_stacked)

    def data_info(self) -> dict:
        return {"mean": self.mean, "std": self.std}


def test_data_module_loaders_use_its_batch_sizes_and_collate() -> None:
    datamodule = TinyDataModule(batch_size=3, num_workers=0, val_batch_size=5)
    datamodule.train_dataset, datamodule.val_dataset = Numbers(7), Numbers(7)

    train, val = datamodule.train_dataloader(), datamodule.val_dataloader()

    assert (train.batch_size, val.batch_size) == (3, 5)
    assert train.collate_fn is collate_stacked and val.collate_fn is collate_stacked
    assert isinstance(next(iter(val)), Batch)


def test_data_module_without_datasets_asks_for_setup() -> None:
    with pytest.raises(RuntimeError, match=r"setup\('fit'\)"):
        TinyDataModule(batch_size=2, num_workers=0).train_dataloader()


def test_normalisation_is_reported_as_given_or_none() -> None:
    assert TinyDataModule(2, 0).data_info() == {"mean": None, "std": None}
    info = TinyDataModule(2, 0, mean=(0.485, 0.456, 0.406), std=[0.229, 0.224, 0.225]).data_info()
    assert info == {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.mark.parametrize(
    "mean, std, key",
    [((0.5, 0.5), None, "data.mean"), (None, (0.5, 0.5, 0.5, 0.5), "data.std"), (None, (0.5, 0.0, 0.5), "data.std")],
    ids=["two-means", "four-stds", "zero-std"],
)
def test_bad_normalisation_is_a_config_error_naming_the_key(mean, std, key) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        TinyDataModule(2, 0, mean=mean, std=std)


# ---------------------------------------------------------------------------------------------------------------
# Image files


def test_an_image_over_pils_pixel_limit_is_an_image_load_error_and_skipped_in_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.png"
    PIL.Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(path)
    # Above twice the limit PIL raises DecompressionBombError, which is not an OSError: 4096 pixels against 2 * 1000.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)

    with pytest.raises(ImageLoadError, match=r"huge\.png.*DecompressionBombError"):
        load_rgb(path)
    with pytest.warns(UserWarning, match=r"huge\.png"):
        assert try_load_rgb(path) is None


class UnreadableImages(Dataset):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        return image_to_tensor(load_rgb(self.folder / f"absent{index}.jpg")), 0, index


def test_an_unreadable_evaluation_image_keeps_its_error_type_through_worker_processes(tmp_path: Path) -> None:
    loader = make_loader(UnreadableImages(tmp_path), 1, train=False, num_workers=1, collate_fn=collate_stacked)

    with pytest.raises(ImageLoadError, match=r"absent0\.jpg"):
        next(iter(loader))


def test_the_training_shuffle_depends_on_seed_and_epoch_alone() -> None:
    dataset = list(range(50))
    sampler = EpochShuffle(dataset, seed=7)
    first = list(sampler)
    torch.rand(1000)  # whatever else drew from torch's global stream in between

    assert list(sampler) == first and sorted(first) == dataset
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(EpochShuffle(dataset, seed=8)) != first
    assert [key.epoch for key in sampler] == [1] * len(dataset)  # each index carries its epoch


def test_the_training_shuffle_resumes_past_the_samples_a_checkpoint_had_seen() -> None:
    dataset = list(range(50))
    sampler = EpochShuffle(dataset, seed=7)
    sampler.set_epoch(2)
    whole = list(sampler)

    sampler.resume_at(2, 20)
    assert list(sampler) == whole[20:]
    assert list(sampler) == whole  # only the epoch it resumed in is cut
    sampler.resume_at(1, 20)
    assert list(sampler) == whole  # a skip recorded for another epoch does not apply


def _jittered_by_index(num_workers: int, skip_batches: int = 0) -> dict[tuple[int, int], Tensor]:
    """{(epoch, index): augmented image} over two epochs of a run seeded 3, the second entered past
    ``skip_batches`` batches as a resumed run's would be."""
    images: dict[tuple[int, int], Tensor] = {}
    with mock.patch.dict(os.environ, {"PL_GLOBAL_SEED": "3"}):
        loader = make_loader(
            RepeatedImage(Jitter(seed=None), size=6), 2, train=True, num_workers=num_workers, collate_fn=collate_stacked
        )
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            if epoch == 1 and skip_batches:
                loader.load_state_dict({"epoch": 1, "batches": skip_batches})
            for batch in loader:
                images.update(((epoch, i), x) for i, x in zip(batch.indices.tolist(), batch.inputs, strict=True))
    return images


def test_each_sample_is_augmented_from_its_own_seed_whatever_the_workers_or_a_resume() -> None:
    alone = _jittered_by_index(num_workers=0)
    workers = _jittered_by_index(num_workers=2)
    resumed = _jittered_by_index(num_workers=2, skip_batches=1)

    assert alone.keys() == workers.keys() and all(torch.equal(alone[key], workers[key]) for key in alone)
    assert len(resumed) == 6 + 4 and all(torch.equal(alone[key], value) for key, value in resumed.items())
    assert not torch.equal(alone[(0, 0)], alone[(1, 0)])  # another epoch, another augmentation


@pytest.mark.parametrize("task", ["classification", "detection", "face_attributes", "face_embedding"])
def test_a_missing_data_root_reads_the_same_in_every_task_and_says_what_was_expected(task: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    expected = rf"^data\.root {re.escape(str(missing))} does not exist: expected a folder holding \S"
    with pytest.raises(DatasetError, match=expected):
        TASKS[task].datamodule(root=str(missing)).data_info()
