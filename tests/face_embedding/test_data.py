"""The data module: identity folders for training, the verification images and pairs of LFW's layout, the fallback
to the LFW people with a warning, and the target of unlabelled images."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from tasks.common.errors import DatasetError, ImageLoadError
from tasks.face_embedding.data import FaceEmbeddingDataModule, read_pairs

from .conftest import FOLDS, PAIRS_PER_FOLD, TRAIN_IDENTITIES, TRAIN_PICTURES


def _data(root: Path, **kwargs) -> FaceEmbeddingDataModule:
    return FaceEmbeddingDataModule(str(root), image_size=32, batch_size=4, num_workers=0, **kwargs)


def test_training_identities_are_the_sorted_folders_of_train(lfw_root: Path) -> None:
    data = _data(lfw_root)
    data.setup("fit")

    info = data.data_info()
    assert info["num_classes"] == info["train_identities"] == TRAIN_IDENTITIES
    assert info["train_size"] == len(data.train_dataset) == TRAIN_IDENTITIES * TRAIN_PICTURES
    labels = sorted({label for _, label in data.train_dataset.samples})
    assert labels == list(range(TRAIN_IDENTITIES))
    first_folder = sorted(p.name for p in (lfw_root / "train").iterdir())[0]
    assert data.train_dataset.samples[0][0].parent.name == first_folder


def test_verification_items_are_the_distinct_pair_images_with_target_zero(lfw_root: Path) -> None:
    data = _data(lfw_root)
    data.setup("validate")

    info = data.data_info()
    image, target, index = data.val_dataset[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0.0 <= image.min() <= image.max() <= 1.0
    assert (target, index) == (0, 1)
    pairs = [[int(value) for value in row.split()] for row in info["pairs"]]  # first second same fold
    assert len(pairs) == 2 * FOLDS * PAIRS_PER_FOLD
    assert {i for first, second, _, _ in pairs for i in (first, second)} == set(range(len(data.val_dataset)))
    rows = read_pairs(lfw_root / "pairs.txt").pairs
    assert [(same, fold) for _, _, same, fold in pairs] == [(int(row.same), row.fold) for row in rows]
    assert data.val_dataset.samples[pairs[0][0]][0].name == f"{rows[0].first[0]}_{rows[0].first[1]:04d}.jpg"


def test_without_a_train_folder_the_lfw_people_train_with_a_warning(lfw_copy: Path) -> None:
    shutil.rmtree(lfw_copy / "train")
    data = _data(lfw_copy)

    with pytest.warns(UserWarning, match="memory of seen people"):
        info = data.data_info()
    assert info["train_identities"] == len(list((lfw_copy / "lfw").iterdir()))


def test_a_train_folder_gives_no_overlap_warning(lfw_root: Path, recwarn: pytest.WarningsRecorder) -> None:
    _data(lfw_root).data_info()

    assert not [w for w in recwarn if "memory of seen people" in str(w.message)]


def test_train_root_and_pairs_may_point_elsewhere(lfw_copy: Path) -> None:
    (lfw_copy / "train").rename(lfw_copy / "identities")
    (lfw_copy / "pairs.txt").rename(lfw_copy / "my_pairs.txt")

    info = _data(lfw_copy, train_root=str(lfw_copy / "identities"), pairs="my_pairs.txt").data_info()

    assert info["train_identities"] == TRAIN_IDENTITIES
    assert len(info["pairs"]) == 2 * FOLDS * PAIRS_PER_FOLD


def test_a_pairs_image_that_is_missing_is_named(lfw_copy: Path) -> None:
    victim = next((lfw_copy / "lfw").rglob("*.jpg"))
    victim.unlink()

    with pytest.raises(DatasetError, match=victim.name):
        _data(lfw_copy).data_info()


def test_an_image_over_max_image_pixels_is_skipped_in_training_and_an_error_in_verification(lfw_root: Path) -> None:
    data = _data(lfw_root, max_image_pixels=1)
    data.setup("fit")
    train_path, val_path = data.train_dataset.samples[0][0], data.val_dataset.samples[0][0]

    with pytest.warns(UserWarning, match=re.escape(str(train_path)) + r".*max_image_pixels=1\b"):
        assert data.train_dataset[0] is None
    with pytest.raises(ImageLoadError, match=re.escape(str(val_path)) + r".*max_image_pixels=1\b"):
        data.val_dataset[0]


def test_unlabelled_images_take_cross_entropys_ignored_target(lfw_root: Path) -> None:
    assert _data(lfw_root).unlabeled_target() == -100


def test_batches_stack_images_and_labels(lfw_root: Path) -> None:
    data = _data(lfw_root)
    data.setup("fit")

    batch = next(iter(data.train_dataloader()))

    assert batch.inputs.shape == (4, 3, 32, 32) and batch.targets.dtype == torch.int64
