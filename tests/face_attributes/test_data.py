"""Reading CelebA's lists: whitespace as the release writes it, the archive's sub-folders, any number of
attributes, and every malformed case refused naming the file and the line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.common.data import Batch, collate_stacked
from tasks.common.errors import ConfigError, DatasetError, ImageLoadError
from tasks.face_attributes.data import (
    FaceAttributeDataModule,
    read_attribute_list,
    read_celeba,
    read_partition_list,
)

from .conftest import NUM_TEST, NUM_TRAIN, write_celeba

# As the release writes it: a 1 padded to " 1", the names line ending with a space; plus a tab-separated row.
ATTRIBUTES = "3\nSmiling Male Eyeglasses \n000001.jpg  1 -1 -1\n000002.jpg -1  1  1\n000003.jpg\t1\t-1\t 1\n"
PARTITION = "000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n"
IMAGES = ("000001.jpg", "000002.jpg", "000003.jpg")


def test_rows_split_on_any_whitespace_and_become_zero_one_targets(tmp_path: Path) -> None:
    (tmp_path / "list_attr_celeba.txt").write_text(ATTRIBUTES)

    parsed = read_attribute_list(tmp_path / "list_attr_celeba.txt")

    assert parsed.names == ["Smiling", "Male", "Eyeglasses"]
    assert parsed.files == list(IMAGES)
    assert parsed.lines == [3, 4, 5]
    np.testing.assert_array_equal(parsed.targets, [[1, 0, 0], [0, 1, 1], [1, 0, 1]])


@pytest.mark.parametrize("names", [["Bald"], [f"Attribute_{i}" for i in range(45)]])
def test_the_header_decides_the_number_of_attributes(tmp_path: Path, names: list[str]) -> None:
    rows = [f"{i:06d}.jpg " + " ".join("1" if (i + j) % 3 == 0 else "-1" for j in range(len(names))) for i in (1, 2)]
    (tmp_path / "attrs.txt").write_text("\n".join(["2", " ".join(names), *rows]) + "\n")

    parsed = read_attribute_list(tmp_path / "attrs.txt")

    assert parsed.names == names and parsed.targets.shape == (2, len(names))


def test_the_partition_gives_each_file_its_split_and_line(tmp_path: Path) -> None:
    (tmp_path / "list_eval_partition.txt").write_text("000001.jpg 0\r\n000002.jpg  2\r\n\r\n")

    assert read_partition_list(tmp_path / "list_eval_partition.txt") == {"000001.jpg": (0, 1), "000002.jpg": (2, 2)}


def test_splits_follow_the_partition_and_val_split_picks_the_validating_one(tmp_path: Path) -> None:
    partition = "000001.jpg 0\n000002.jpg 2\n000003.jpg 1\n"
    root = write_celeba(tmp_path, ATTRIBUTES, partition, IMAGES)

    train, val, names = read_celeba(root)
    _, test, _ = read_celeba(root, val_split="test")

    assert names == ["Smiling", "Male", "Eyeglasses"]
    assert [p.name for p in train.paths] == ["000001.jpg"] and train.targets.tolist() == [[1, 0, 0]]
    assert [p.name for p in val.paths] == ["000003.jpg"] and val.targets.tolist() == [[1, 0, 1]]
    assert [p.name for p in test.paths] == ["000002.jpg"] and test.targets.tolist() == [[0, 1, 1]]


def test_the_official_archive_sub_folders_are_found(tmp_path: Path) -> None:
    root = write_celeba(
        tmp_path,
        ATTRIBUTES,
        PARTITION,
        IMAGES,
        attribute_file="Anno/list_attr_celeba.txt",
        partition_file="Eval/list_eval_partition.txt",
        image_folder="Img/img_align_celeba",
    )

    train, val, _ = read_celeba(root)

    assert len(train) == 2 and len(val) == 1
    assert all(path.parent == root / "Img" / "img_align_celeba" for path in train.paths + val.paths)


def test_a_missing_list_file_names_the_places_looked_in(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION, IMAGES)
    (root / "list_eval_partition.txt").unlink()

    with pytest.raises(DatasetError, match=r"partition list not found: .*list_eval_partition.txt or .*Eval"):
        read_celeba(root)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("three\nSmiling\n000001.jpg 1\n", 1, "image count"),
        ("2\nSmiling\n000001.jpg 1\n", 1, "says 2 images, the file lists 1"),
        ("1\n\n", 2, "attribute names"),
        ("1\nSmiling Male Smiling\n000001.jpg 1 1 1\n", 2, "Smiling"),
        ("2\nSmiling Male\n000001.jpg 1 -1\n000002.jpg 1\n", 4, "expected a file name and 2 values, got 1"),
        ("2\nSmiling Male\n000001.jpg 1 -1\n000002.jpg 1 -1 1\n", 4, "got 3 values"),
        ("1\nSmiling Male\n000001.jpg 1 0\n", 3, "Male of 000001.jpg is '0', expected 1 or -1"),
        ("1\nSmiling Male\n000001.jpg yes -1\n", 3, "Smiling of 000001.jpg is 'yes'"),
        ("2\nSmiling\n000001.jpg 1\n000001.jpg -1\n", 4, "already listed on line 3"),
        ("1\nSmiling\n../000001.jpg 1\n", 3, r"leaves the image folder \('..'\)"),
        ("1\nSmiling\n/etc/000001.jpg 1\n", 3, "absolute file name"),
    ],
)
def test_a_malformed_attribute_list_is_refused_naming_the_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text(text)

    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}, line {line}: .*{message}"):
        read_attribute_list(path)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("000001.jpg 0\n000002.jpg 3\n", 2),
        ("000001.jpg\n", 1),
        ("000001.jpg 0 1\n", 1),
        ("000001.jpg 0\n000001.jpg 1\n", 2),
        ("000001.jpg 0\n..\\000002.jpg 1\n", 2),
    ],
)
def test_a_malformed_partition_is_refused_naming_the_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "list_eval_partition.txt"
    path.write_text(text)

    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}, line {line}: "):
        read_partition_list(path)


@pytest.mark.parametrize("file_name", ["list_attr_celeba.txt", "list_eval_partition.txt"])
def test_a_list_that_names_no_image_is_refused(tmp_path: Path, file_name: str) -> None:
    path = tmp_path / file_name
    path.write_text("0\nSmiling\n" if file_name == "list_attr_celeba.txt" else "\n")
    reader = read_attribute_list if file_name == "list_attr_celeba.txt" else read_partition_list

    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: lists no images"):
        reader(path)


def test_an_attribute_list_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "list_attr_celeba.txt"
    path.write_bytes("1\nSmiling\n00000\xe9.jpg 1\n".encode("latin-1"))

    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: cannot read: UnicodeDecodeError"):
        read_attribute_list(path)


@pytest.mark.parametrize(("partition", "val_split"), [(PARTITION.replace(" 1\n", " 0\n"), "val"), (PARTITION, "test")])
def test_a_validation_split_without_images_is_refused_naming_the_partition(
    tmp_path: Path, partition: str, val_split: str
) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, partition, IMAGES)

    with pytest.raises(DatasetError, match=rf"list_eval_partition.txt: no image is in split \d \({val_split}\)"):
        read_celeba(root, val_split=val_split)


def test_a_partition_without_training_images_is_refused(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, "000001.jpg 1\n000002.jpg 2\n000003.jpg 1\n", IMAGES)

    with pytest.raises(DatasetError, match=r"list_eval_partition.txt: no image is in split 0 \(train\)"):
        read_celeba(root)


@pytest.mark.parametrize(
    ("misplaced", "what", "expected"),
    [
        ("attribute_file", "attribute list", "list_attr_celeba.txt"),
        ("image_folder", "image folder", "img_align_celeba"),
    ],
)
def test_a_missing_attribute_list_or_image_folder_is_named(
    tmp_path: Path, misplaced: str, what: str, expected: str
) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION, IMAGES, **{misplaced: "elsewhere"})

    with pytest.raises(DatasetError, match=rf"CelebA {what} not found: expected .*{expected} or "):
        read_celeba(root)


def test_an_image_in_the_attribute_list_only_is_named_with_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, "000001.jpg 0\n000003.jpg 1\n", IMAGES)

    with pytest.raises(DatasetError, match=r"list_attr_celeba.txt lists 1 image\(s\) that .*: 000002.jpg \(line 4\)"):
        read_celeba(root)


def test_an_image_in_the_partition_only_is_named_with_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION + "000009.jpg 2\n", IMAGES)

    with pytest.raises(DatasetError, match=r"list_eval_partition.txt lists 1 image\(s\) that .*000009.jpg \(line 4\)"):
        read_celeba(root)


def test_a_listed_image_missing_on_disk_is_named_with_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION, IMAGES[:2])

    with pytest.raises(DatasetError, match=r"1 image\(s\) missing from .*img_align_celeba: 000003.jpg \(line 5\)"):
        read_celeba(root)


def test_val_split_other_than_val_or_test_is_a_config_error(celeba_root: Path) -> None:
    with pytest.raises(ConfigError, match="data.val_split"):
        FaceAttributeDataModule(root=str(celeba_root), val_split="train")  # type: ignore[arg-type]


def test_data_info_names_the_attributes_as_classes_and_counts_the_splits(celeba_root: Path) -> None:
    data = FaceAttributeDataModule(root=str(celeba_root), image_size=32, val_split="test")

    info = data.data_info()

    names = (celeba_root / "list_attr_celeba.txt").read_text().splitlines()[1].split()
    assert info["attribute_names"] == info["class_names"] == names and info["num_classes"] == len(names)
    assert (info["train_size"], info["val_size"]) == (NUM_TRAIN, NUM_TEST)
    assert info["image_size"] == 32 and info["mean"] is None and info["std"] is None


def test_batches_hold_unnormalised_squares_and_float_zero_one_targets(celeba_root: Path) -> None:
    data = FaceAttributeDataModule(root=str(celeba_root), image_size=32, batch_size=4, num_workers=0)
    data.setup("fit")

    for loader in (data.train_dataloader(), data.val_dataloader()):
        batch = next(iter(loader))
        assert isinstance(batch, Batch) and len(batch) == 4
        assert batch.inputs.shape == (4, 3, 32, 32) and batch.inputs.dtype == torch.float32
        assert 0.0 <= batch.inputs.min() and batch.inputs.max() <= 1.0
        assert batch.targets.shape == (4, data.data_info()["num_classes"]) and batch.targets.dtype == torch.float32
        assert set(batch.targets.unique().tolist()) <= {0.0, 1.0}
    _, val, _ = read_celeba(celeba_root)
    np.testing.assert_array_equal(next(iter(data.val_dataloader())).targets.numpy(), val.targets[:4])


def test_an_unlabelled_image_target_is_nan_for_every_attribute_and_collates_with_labelled_ones(
    celeba_root: Path,
) -> None:
    data = FaceAttributeDataModule(root=str(celeba_root), image_size=32)
    data.setup("validate")

    target = data.unlabeled_target()

    assert target.shape == (data.data_info()["num_classes"],) and target.dtype == torch.float32
    assert torch.isnan(target).all()
    image, labels, _ = data.val_dataset[0]
    batch = collate_stacked([(image, labels, 0), (image, target, 1)])
    assert torch.isnan(batch.targets[1]).all() and not torch.isnan(batch.targets[0]).any()


def test_a_corrupt_training_image_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION, IMAGES)
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    data = FaceAttributeDataModule(root=str(root), image_size=16)
    data.setup("fit")

    with pytest.warns(UserWarning, match="000002.jpg"):
        assert data.train_dataset[1] is None


def test_an_image_over_max_image_pixels_is_skipped_in_training_and_an_error_in_evaluation(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ATTRIBUTES, PARTITION, IMAGES)
    data = FaceAttributeDataModule(root=str(root), image_size=16, max_image_pixels=1)
    data.setup("fit")

    with pytest.warns(UserWarning, match=re.escape(str(data.train_dataset.paths[0])) + r".*max_image_pixels=1\b"):
        assert data.train_dataset[0] is None
    with pytest.raises(ImageLoadError, match=re.escape(str(data.val_dataset.paths[0])) + r".*max_image_pixels=1\b"):
        data.val_dataset[0]
