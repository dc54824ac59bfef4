"""Reading Stanford Dogs and image folders: lists, labels, boxes, crops, and errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from tasks.classification.data import (
    ClassificationDataModule,
    ClassificationDataset,
    Sample,
    build_eval_transform,
    read_dogs_list,
    read_image_folder,
    read_stanford_dogs,
    read_voc_boxes,
    reduce_boxes,
)
from tasks.common.data import Batch, collate_stacked
from tasks.common.errors import ConfigError, DatasetError, ImageLoadError

from .conftest import NUM_BREEDS, TEST_PER_BREED, TRAIN_PER_BREED

VOC_TWO_DOGS = """<annotation>
\t<folder>02085620</folder>
\t<filename>n02085620_7</filename>
\t<source><database>ImageNet database</database></source>
\t<size><width>60</width><height>50</height><depth>3</depth></size>
\t<segment>0</segment>
\t<object><name>Chihuahua</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>11</xmin><ymin>6</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
\t<object><name>Chihuahua</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>
\t\t<bndbox><xmin>26</xmin><ymin>21</ymin><xmax>55</xmax><ymax>45</ymax></bndbox></object>
</annotation>
"""


def _as_array(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.copy())


def test_dogs_list_gives_files_annotations_and_one_based_labels(dogs_root: Path) -> None:
    files, annotations, labels = read_dogs_list(dogs_root / "train_list.mat")

    assert len(files) == len(annotations) == len(labels) == NUM_BREEDS * TRAIN_PER_BREED
    assert sorted(set(labels)) == list(range(1, NUM_BREEDS + 1))
    assert files[0].startswith("n02085620-Chihuahua/n02085620_") and files[0].endswith(".jpg")
    assert annotations[0] == files[0].removesuffix(".jpg")


def test_stanford_dogs_labels_are_zero_based_and_named_after_the_breed_folder(dogs_root: Path) -> None:
    train, test, names = read_stanford_dogs(dogs_root)

    assert (len(train), len(test)) == (NUM_BREEDS * TRAIN_PER_BREED, NUM_BREEDS * TEST_PER_BREED)
    assert names == ["Chihuahua", "Japanese_spaniel", "Maltese_dog", "Pekinese", "Shih-Tzu"]
    for sample in train + test:
        assert sample.path.is_file()
        assert sample.path.parent.name.split("-", 1)[1] == names[sample.label]
        assert sample.box is None


def test_voc_boxes_become_zero_based_pixels(tmp_path: Path) -> None:
    path = tmp_path / "n02085620_7"
    path.write_text(VOC_TWO_DOGS)

    boxes = read_voc_boxes(path)

    np.testing.assert_array_equal(boxes, [[10, 5, 30, 40], [25, 20, 55, 45]])


def test_box_crop_takes_the_union_or_the_first_box() -> None:
    boxes = np.array([[10, 5, 30, 40], [25, 20, 55, 45]], dtype=np.float32)

    assert reduce_boxes(boxes, "union") == (10, 5, 55, 45)
    assert reduce_boxes(boxes, "first") == (10, 5, 30, 40)


def test_dataset_crops_each_image_to_its_box(dogs_root: Path) -> None:
    train, _, _ = read_stanford_dogs(dogs_root, crop_to_box="union")
    sample = train[0]
    x1, y1, x2, y2 = sample.box
    expected = read_voc_boxes(dogs_root / "Annotation" / sample.path.parent.name / sample.path.stem)

    image, label, index = ClassificationDataset([sample], _as_array)[0]

    assert (x1, y1) == tuple(expected[:, :2].min(axis=0).astype(int))
    assert tuple(image.shape) == (y2 - y1, x2 - x1, 3)
    assert (label, index) == (sample.label, 0)


def test_a_missing_list_file_is_named(dogs_copy: Path) -> None:
    (dogs_copy / "test_list.mat").unlink()

    with pytest.raises(DatasetError, match="test_list.mat"):
        read_stanford_dogs(dogs_copy)


def test_a_listed_image_that_is_absent_is_named(dogs_copy: Path) -> None:
    files, _, _ = read_dogs_list(dogs_copy / "train_list.mat")
    (dogs_copy / "Images" / files[3]).unlink()

    with pytest.raises(DatasetError, match=files[3].split("/")[1]):
        read_stanford_dogs(dogs_copy)


def test_a_list_without_labels_is_refused_naming_the_field(tmp_path: Path) -> None:
    cell = np.empty((1, 1), dtype=object)
    cell[0, 0] = np.array(["a-b/a_1.jpg"])
    scipy.io.savemat(tmp_path / "train_list.mat", {"file_list": cell, "annotation_list": cell})

    with pytest.raises(DatasetError, match="labels"):
        read_dogs_list(tmp_path / "train_list.mat")


@pytest.mark.parametrize("name", ["../../outside.jpg", "/etc/passwd", "C:\\Windows\\x.jpg"])
def test_a_list_entry_leaving_the_dataset_root_is_refused(tmp_path: Path, name: str) -> None:
    files, annotations = np.empty((2, 1), dtype=object), np.empty((2, 1), dtype=object)
    files[0, 0], files[1, 0] = np.array(["a-b/a_1.jpg"]), np.array([name])
    annotations[0, 0], annotations[1, 0] = np.array(["a-b/a_1"]), np.array(["a-b/a_2"])
    scipy.io.savemat(
        tmp_path / "train_list.mat", {"file_list": files, "annotation_list": annotations, "labels": [[1], [1]]}
    )

    with pytest.raises(DatasetError, match="file_list entry 2"):
        read_dogs_list(tmp_path / "train_list.mat")


def _cells(*values: object) -> np.ndarray:
    """A MATLAB cell array (N, 1) as scipy writes it, each cell holding ``values[i]``."""
    cell = np.empty((len(values), 1), dtype=object)
    for index, value in enumerate(values):
        cell[index, 0] = np.array([value])
    return cell


def _write_dogs_list(path: Path, files: list[object], labels: object, annotations: list[str] | None = None) -> Path:
    annotations = annotations if annotations is not None else [str(file).removesuffix(".jpg") for file in files]
    scipy.io.savemat(path, {"file_list": _cells(*files), "annotation_list": _cells(*annotations), "labels": labels})
    return path


def test_a_list_that_is_not_a_matlab_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "train_list.mat"
    path.write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)))

    with pytest.raises(DatasetError, match=rf"{path}: not a readable MATLAB file"):
        read_dogs_list(path)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([[1], [0]], "label of entry 2 is 0.0"),
        ([[1], [1.5]], "label of entry 2 is 1.5"),
        ([[1], [np.nan]], "label of entry 2 is nan"),
        ([[1], [np.inf]], "label of entry 2 is inf"),
        (_cells("1", "2"), "field labels is not a numeric array"),
    ],
    ids=["zero", "fraction", "nan", "infinite", "strings"],
)
def test_a_list_with_labels_that_are_not_integers_from_one_is_refused(
    tmp_path: Path, labels: object, message: str
) -> None:
    path = _write_dogs_list(tmp_path / "train_list.mat", ["a-b/a_1.jpg", "a-b/a_2.jpg"], labels)

    with pytest.raises(DatasetError, match=rf"{path}: {message}"):
        read_dogs_list(path)


def test_a_list_entry_that_is_not_a_string_is_refused(tmp_path: Path) -> None:
    path = _write_dogs_list(tmp_path / "train_list.mat", ["a-b/a_1.jpg", 5], [[1], [1]], ["a-b/a_1", "a-b/a_2"])

    with pytest.raises(DatasetError, match="file_list entry 2 is .*5.*, not a string"):
        read_dogs_list(path)


def test_an_annotation_entry_leaving_the_dataset_root_is_refused(tmp_path: Path) -> None:
    path = _write_dogs_list(tmp_path / "train_list.mat", ["a-b/a_1.jpg"], [[1]], ["../../a_1"])

    with pytest.raises(DatasetError, match="annotation_list entry 1: file name '../../a_1' leaves"):
        read_dogs_list(path)


def test_an_empty_list_is_refused(tmp_path: Path) -> None:
    empty = np.empty((0, 1), dtype=object)
    scipy.io.savemat(tmp_path / "test_list.mat", {"file_list": empty, "annotation_list": empty, "labels": empty})

    with pytest.raises(DatasetError, match="test_list.mat: the list is empty"):
        read_dogs_list(tmp_path / "test_list.mat")


def test_a_label_with_no_file_is_refused_naming_it(tmp_path: Path) -> None:
    _write_dogs_list(tmp_path / "train_list.mat", ["n1-A/n1_1.jpg", "n3-C/n3_1.jpg"], [[1], [3]])
    _write_dogs_list(tmp_path / "test_list.mat", ["n1-A/n1_2.jpg"], [[1]])

    with pytest.raises(DatasetError, match="label 2 has no file"):
        read_stanford_dogs(tmp_path)


def _voc(*boxes: tuple[object, ...]) -> str:
    objects = "".join(
        "<object><bndbox>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        + "</bndbox></object>"
        for box in boxes
    )
    return f"<annotation>{objects}</annotation>"


ENTITY_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefg", "bcdefgh"))
    + "]><annotation>&h;</annotation>"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<annotation><object><bndbox>", "not a readable XML file"),
        (ENTITY_BOMB, "not a readable XML file"),
        (_voc((1, 1, 5)), "object 1 has bndbox/ymax None, expected a number"),
        (_voc((1, 1, 5, 5), (1, "nan", 5, 5)), r"object 2 has the box .*\[1.0, nan, 5.0, 5.0\]"),
        (_voc((1, 1, "inf", 5)), r"object 1 has the box .*\[1.0, 1.0, inf, 5.0\]"),
        (_voc((9, 1, 5, 5)), r"object 1 has the box .*\[9.0, 1.0, 5.0, 5.0\], expected .*xmax >= xmin"),
        (_voc((1, 9, 5, 5)), r"object 1 has the box .*ymax >= ymin"),
        ("<annotation></annotation>", "no <object>"),
    ],
    ids=["truncated", "entity-bomb", "missing-field", "nan", "infinite", "negative-width", "negative-height", "empty"],
)
def test_a_malformed_voc_annotation_is_refused_naming_the_file_and_object(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "n02085620_7"
    path.write_text(text)

    with pytest.raises(DatasetError, match=rf"{path}: .*{message}"):
        read_voc_boxes(path)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "dog").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "cat" / "1.jpg")

    with pytest.raises(DatasetError, match=r"train: 1 class folder\(s\) hold no image file .*: dog"):
        read_image_folder(tmp_path / "train")


def test_a_split_without_class_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "1.jpg")

    with pytest.raises(DatasetError, match=r"no class folders in .*train \(expected"):
        read_image_folder(tmp_path / "train")


def test_a_corrupt_training_image_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = ClassificationDataset([Sample(bad, 0)], _as_array, skip_unreadable=True)

    with pytest.warns(UserWarning, match="bad.jpg"):
        item = dataset[0]

    assert item is None
    batch = collate_stacked([item])
    assert (len(batch), batch.skipped) == (0, 1)


def test_a_corrupt_validation_image_is_an_image_load_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = ClassificationDataset([Sample(bad, 0)], _as_array)

    with pytest.raises(ImageLoadError, match="bad.jpg"):
        dataset[0]


def test_image_folder_classes_come_from_train_and_val_must_use_them(shapes_root: Path) -> None:
    train, names = read_image_folder(shapes_root / "train")
    val, _ = read_image_folder(shapes_root / "val", names)

    assert names == sorted(names) and len(names) == 3
    assert (len(train), len(val)) == (48, 24)
    assert {s.label for s in val} == {0, 1, 2}
    with pytest.raises(DatasetError, match="not one of the training classes"):
        read_image_folder(shapes_root / "val", names[:2])


def test_data_info_reports_classes_and_split_sizes(dogs_root: Path) -> None:
    datamodule = ClassificationDataModule(str(dogs_root), layout="stanford_dogs", image_size=32, num_workers=0)

    info = datamodule.data_info()

    assert info["num_classes"] == NUM_BREEDS and len(info["class_names"]) == NUM_BREEDS
    assert (info["train_size"], info["val_size"]) == (NUM_BREEDS * TRAIN_PER_BREED, NUM_BREEDS * TEST_PER_BREED)


def test_data_info_reports_the_normalisation_as_given_or_none(dogs_root: Path) -> None:
    given = ClassificationDataModule(str(dogs_root), layout="stanford_dogs", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    default = ClassificationDataModule(str(dogs_root), layout="stanford_dogs")

    assert (given.data_info()["mean"], given.data_info()["std"]) == ([0.4, 0.5, 0.6], [0.2, 0.3, 0.4])
    assert (default.data_info()["mean"], default.data_info()["std"]) == (None, None)


def test_a_mean_of_two_values_is_a_config_error_naming_the_key(dogs_root: Path) -> None:
    with pytest.raises(ConfigError, match="data.mean"):
        ClassificationDataModule(str(dogs_root), layout="stanford_dogs", mean=(0.5, 0.5))


def test_batches_are_unnormalised_squares_with_labels_and_dataset_indices(dogs_root: Path) -> None:
    datamodule = ClassificationDataModule(
        str(dogs_root), layout="stanford_dogs", image_size=32, batch_size=4, num_workers=0, crop_to_box="first"
    )
    datamodule.setup("fit")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no image is skipped
        batch = next(iter(datamodule.val_dataloader()))

    assert isinstance(batch, Batch)
    assert batch.inputs.shape == (4, 3, 32, 32) and batch.inputs.dtype == torch.float32
    assert 0.0 <= batch.inputs.min() and batch.inputs.max() <= 1.0
    assert batch.targets.dtype == torch.int64
    assert batch.targets.tolist() == [datamodule.val_dataset.samples[i].label for i in range(4)]
    assert batch.indices.tolist() == [0, 1, 2, 3] and batch.skipped == 0


def test_the_eval_transform_keeps_pixel_values_in_zero_to_one() -> None:
    array = np.zeros((40, 40, 3), dtype=np.uint8)
    array[:, 20:] = 255

    image = build_eval_transform(32, crop_fraction=1.0)(array)

    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image[:, :, 0].max() == 0.0 and image[:, :, -1].min() == 1.0


def training_epoch(root: Path, seed: int) -> list[torch.Tensor]:
    """One epoch's augmented images, in dataset order, of a run seeded with ``seed`` (as the runner seeds it)."""
    L.seed_everything(seed, verbose=False)
    datamodule = ClassificationDataModule(str(root), image_size=24, batch_size=8, num_workers=0)
    datamodule.setup("fit")
    images = {i: x for batch in datamodule.train_dataloader() for i, x in zip(batch.indices.tolist(), batch.inputs)}
    return [images[i] for i in sorted(images)]


def test_the_same_torch_seed_gives_the_same_training_augmentation(shapes_root: Path) -> None:
    first, second, other = (
        training_epoch(shapes_root, 0),
        training_epoch(shapes_root, 0),
        training_epoch(shapes_root, 1),
    )

    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_box_crops_need_the_stanford_dogs_layout(shapes_root: Path) -> None:
    with pytest.raises(ConfigError, match="crop_to_box"):
        ClassificationDataModule(str(shapes_root), layout="imagefolder", crop_to_box="union")


@pytest.fixture
def one_big_image_each(tmp_path: Path) -> Path:
    """An image folder whose train/ and val/ each hold big.png (64x64, 4096 pixels) and small.png (16x16)."""
    for split in ("train", "val"):
        for name, side in (("big", 64), ("small", 16)):
            path = tmp_path / split / "cat" / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (side, side), (200, 100, 50)).save(path)
    return tmp_path


def limited_data(root: Path, max_image_pixels: int | None) -> ClassificationDataModule:
    datamodule = ClassificationDataModule(
        str(root), image_size=16, batch_size=2, num_workers=0, max_image_pixels=max_image_pixels
    )
    datamodule.setup("fit")
    return datamodule


def test_an_image_over_max_image_pixels_is_skipped_in_training_with_a_warning_naming_it(
    one_big_image_each: Path,
) -> None:
    dataset = limited_data(one_big_image_each, max_image_pixels=1000).train_dataset
    big, small = (next(i for i, s in enumerate(dataset.samples) if s.path.stem == n) for n in ("big", "small"))

    with pytest.warns(UserWarning, match=r"big\.png.*64x64.*data\.max_image_pixels=1000"):
        assert dataset[big] is None
    assert dataset[small] is not None


def test_an_image_over_max_image_pixels_is_an_error_in_evaluation(one_big_image_each: Path) -> None:
    dataset = limited_data(one_big_image_each, max_image_pixels=1000).val_dataset
    big = next(i for i, s in enumerate(dataset.samples) if s.path.stem == "big")

    with pytest.raises(ImageLoadError, match=r"big\.png.*64x64.*data\.max_image_pixels=1000"):
        dataset[big]


def test_without_a_pixel_limit_every_image_is_read(one_big_image_each: Path) -> None:
    dataset = limited_data(one_big_image_each, max_image_pixels=None).val_dataset

    assert all(dataset[i] is not None for i in range(len(dataset)))


# A spawned worker starts a fresh interpreter (10 s of imports here): the limit must travel with the dataset.
@pytest.mark.parametrize("start_method", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_the_pixel_limit_holds_in_loader_worker_processes(one_big_image_each: Path, start_method: str) -> None:
    dataset = limited_data(one_big_image_each, max_image_pixels=1000).train_dataset
    small = next(i for i, s in enumerate(dataset.samples) if s.path.stem == "small")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=1, multiprocessing_context=start_method, collate_fn=collate_stacked
    )

    (batch,) = list(loader)

    assert (batch.indices.tolist(), batch.skipped) == ([small], 1)


def test_max_image_pixels_must_be_positive_or_null(one_big_image_each: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.max_image_pixels"):
        ClassificationDataModule(str(one_big_image_each), max_image_pixels=0)
