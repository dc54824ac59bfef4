"""CocoDetection and CocoDataModule on tiny hand-written and synthetic COCO files."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from tasks.common.data import Batch, collate_lists
from tasks.common.errors import ConfigError, DatasetError, ImageLoadError
from tasks.detection.data import CocoDataModule, CocoDetection


def sample_for(dataset: CocoDetection, image_id: int) -> tuple[torch.Tensor, dict]:
    """(image, target) of ``image_id``, checking the item carries its dataset index."""
    index = dataset.image_ids.index(image_id)
    image, target, item_index = dataset[index]
    assert item_index == index
    return image, target


def train_datamodule(root: Path, **options) -> CocoDataModule:
    datamodule = CocoDataModule(str(root), num_workers=0, **options)
    datamodule.setup("fit")
    return datamodule


def test_category_ids_round_trip_through_labels(quirky_coco):
    dataset = CocoDetection(*quirky_coco)
    assert dataset.cat_ids == [3, 8, 15]
    assert dataset.cat_id_to_label == {3: 1, 8: 2, 15: 3}
    assert all(dataset.label_to_cat_id[dataset.cat_id_to_label[c]] == c for c in dataset.cat_ids)
    assert dataset.class_names == ["cat", "dog", "zebra"]


def test_num_classes_comes_from_the_annotation_file(quirky_coco):
    assert CocoDetection(*quirky_coco).num_classes == 3


def test_labels_are_one_based_and_follow_the_category_mapping(quirky_coco):
    _, target = sample_for(CocoDetection(*quirky_coco), 30)
    assert target["labels"].tolist() == [3]  # category 15 (zebra) is the third id
    assert target["labels"].dtype == torch.int64


def test_image_without_annotations_is_kept_as_a_negative(quirky_coco):
    dataset = CocoDetection(*quirky_coco)
    assert 20 in dataset.image_ids
    image, target = sample_for(dataset, 20)
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,)
    assert image.shape == (3, 64, 80)
    assert target["image_id"] == 20 and target["orig_size"] == (64, 80)


def test_crowd_regions_are_left_out_of_targets(quirky_coco):
    _, target = sample_for(CocoDetection(*quirky_coco), 10)
    assert [0.0, 0.0, 64.0, 48.0] not in target["boxes"].tolist()


def test_boxes_are_converted_to_corners_and_clipped_to_the_image(quirky_coco):
    _, target = sample_for(CocoDetection(*quirky_coco), 10)
    assert target["boxes"].tolist() == [[5.0, 5.0, 25.0, 15.0], [50.0, 30.0, 64.0, 48.0]]
    assert target["labels"].tolist() == [1, 2]


def test_degenerate_boxes_are_dropped_counted_and_logged_once(quirky_coco, caplog):
    with caplog.at_level(logging.INFO, logger="tasks.detection.data"):
        dataset = CocoDetection(*quirky_coco)
    assert dataset.num_dropped_boxes == 2  # the zero-width box and the box entirely outside
    messages = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert messages == [
        f"dropped 2 degenerate boxes in {quirky_coco[1]} (no width or height inside the image): annotation ids 3, 5"
    ]


def test_boxes_of_negative_size_are_dropped_and_named_but_crowd_regions_are_not(quirky_coco, tmp_path, caplog):
    def change(data: dict) -> None:
        data["annotations"][0].update(bbox=[30, 10, -5, 12])
        data["annotations"][5].update(bbox=[10, 10, 20, -20])
        data["annotations"].append({"id": 9, "image_id": 20, "category_id": 3, "bbox": [0, 0, 0, 0], "iscrowd": 1})

    bad = rewrite(quirky_coco[1], tmp_path / "negative.json", change)
    with caplog.at_level(logging.WARNING, logger="tasks.detection.data"):
        dataset = CocoDetection(quirky_coco[0], bad)
    assert dataset.dropped_box_ids == [1, 3, 5, 6]
    assert "dropped 4 degenerate boxes" in caplog.text and "annotation ids 1, 3, 5, 6" in caplog.text
    for boxes, _ in dataset._targets.values():
        assert np.isfinite(boxes).all() and (boxes[:, 2:] > boxes[:, :2]).all()


@pytest.mark.parametrize("image_id", [30, 40, 50], ids=["grey", "rgba", "cmyk"])
def test_grey_rgba_and_cmyk_files_become_the_rgb_they_were_made_from(quirky_coco, image_id):
    # The files are random RGB pixels converted to L, RGBA or CMYK (see make_quirky_coco): read back as RGB they
    # give those pixels again, exactly for the lossless PNG and within JPEG's error (7.7 levels on average for
    # this noise, against 80 or more for an inverted CMYK or a channel lost) for the others.
    image, _ = sample_for(CocoDetection(*quirky_coco), image_id)
    pixels = np.random.default_rng(image_id).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    if image_id == 30:
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))[..., None].repeat(3, axis=2)
    got = (image.permute(1, 2, 0) * 255).round().to(torch.int64).numpy()
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    error = np.abs(got - pixels.astype(np.int64)).mean()
    assert error == 0 if image_id == 40 else error < 12
    if image_id == 30:
        assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_corrupt_image_in_train_mode_warns_naming_it_and_is_skipped(broken_images_coco):
    dataset = CocoDetection(*broken_images_coco, train=True)
    with pytest.warns(UserWarning, match="corrupt.jpg"):
        assert dataset[1] is None
    assert dataset.num_skipped_images == 1


def test_missing_image_in_train_mode_warns_naming_it_and_is_skipped(broken_images_coco):
    dataset = CocoDetection(*broken_images_coco, train=True)
    with pytest.warns(UserWarning, match="missing.jpg"):
        assert dataset[2] is None


def test_collate_drops_skipped_samples_and_reports_how_many(broken_images_coco):
    dataset = CocoDetection(*broken_images_coco, train=True)
    with pytest.warns(UserWarning):
        batch = collate_lists([dataset[i] for i in range(len(dataset))])
    assert batch.skipped == 2
    assert len(batch) == len(batch.inputs) == len(batch.targets) == 1
    assert batch.targets[0]["image_id"] == 1 and batch.indices.tolist() == [0]


@pytest.mark.parametrize("index, name", [(1, "corrupt.jpg"), (2, "missing.jpg")])
def test_unreadable_image_in_eval_mode_raises_naming_it(broken_images_coco, index, name):
    dataset = CocoDetection(*broken_images_coco, train=False)
    with pytest.raises(ImageLoadError, match=name):
        dataset[index]


def rewrite(ann_file: Path, out: Path, change: Callable[[dict], None]) -> Path:
    data = json.loads(ann_file.read_text())
    change(data)
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d["annotations"][0].update(image_id=999), r"annotation 1 .*unknown image_id 999"),
        (lambda d: d["annotations"][0].update(category_id=4), r"annotation 1 .*unknown category_id 4"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), r"annotation 1 has bbox \[1, 2, 3\]"),
        (lambda d: d["annotations"][0].update(bbox=[1, 2, "3", 4]), r"annotation 1 has bbox"),
        (lambda d: d.pop("categories"), r"\['categories'\]"),
        (lambda d: d.pop("images"), r"\['images'\]"),
        (lambda d: d["images"].append(dict(d["images"][0])), r"image id 10 appears twice"),
        (lambda d: d["images"][0].update(file_name="../../etc/x.jpg"), r"image 10: file name .* leaves"),
        (lambda d: d["images"][0].update(file_name="/etc/passwd"), r"image 10: absolute file name '/etc/passwd'"),
        (lambda d: d["images"][0].update(file_name=7), r"image 10: file name 7 is not a non-empty string"),
        (lambda d: d["images"][0].update(file_name="a\0.jpg"), r"image 10: file name .* holds a NUL"),
        (lambda d: d.pop("annotations"), r"\['annotations'\]"),
        (lambda d: d["images"].clear(), r"'images' is empty"),
        (lambda d: d["images"][0].pop("file_name"), r"image 10 lacks \['file_name'\]"),
        (lambda d: d["images"][0].update(width="64"), r"image 10 has width x height '64' x 48"),
        (lambda d: d["images"][0].update(height=float("nan")), r"image 10 has width x height 64 x nan"),
        (lambda d: d["annotations"][0].pop("bbox"), r"annotation 1 lacks \['bbox'\]"),
        (lambda d: d["annotations"][0].pop("category_id"), r"annotation 1 lacks \['category_id'\]"),
        (lambda d: d["annotations"][0].pop("id"), r"annotations\[0\] has no integer 'id'"),
        (lambda d: d["categories"][0].update(id="15"), r"categories\[0\] has no integer 'id'"),
        (lambda d: d["annotations"].append(dict(d["annotations"][0])), r"annotation id 1 appears twice"),
        (lambda d: d["categories"].append(dict(d["categories"][0])), r"category id 15 appears twice"),
        (lambda d: d["annotations"][0].update(image_id="10"), r"annotation 1 .*unknown image_id '10'"),
        (
            lambda d: (d["categories"][0].update(id=1), d["annotations"][0].update(category_id=True)),
            r"annotation 1 .*unknown category_id True",
        ),
        (lambda d: d["annotations"][0].update(bbox=[5, 5, float("nan"), 10]), r"annotation 1 has bbox \[5, 5, nan"),
        (lambda d: d["annotations"][0].update(bbox=[5, 5, 20, float("inf")]), r"annotation 1 has bbox .*inf\]"),
        (lambda d: d["annotations"][0].update(area="200"), r"annotation 1 has area '200'"),
        (lambda d: d["annotations"][0].update(area=True), r"annotation 1 has area True"),
        (lambda d: d["annotations"][0].update(area=[200]), r"annotation 1 has area \[200\]"),
        (lambda d: d["annotations"][0].update(area=float("nan")), r"annotation 1 has area nan"),
        (lambda d: d["annotations"][0].update(iscrowd="0"), r"annotation 1 has iscrowd '0', expected 0 or 1"),
        (lambda d: d["annotations"][0].update(iscrowd=True), r"annotation 1 has iscrowd True"),
        (lambda d: d["annotations"][0].update(iscrowd=[0]), r"annotation 1 has iscrowd \[0\]"),
    ],
    ids=[
        "unknown-image",
        "unknown-category",
        "three-number-bbox",
        "string-in-bbox",
        "no-categories",
        "no-images",
        "duplicate-image",
        "file-name-with-dotdot",
        "absolute-file-name",
        "file-name-not-a-string",
        "file-name-with-nul",
        "no-annotations",
        "empty-images",
        "image-without-file-name",
        "string-width",
        "nan-height",
        "annotation-without-bbox",
        "annotation-without-category",
        "annotation-without-id",
        "string-category-id",
        "duplicate-annotation",
        "duplicate-category",
        "string-image-id",
        "bool-category-id",
        "nan-in-bbox",
        "infinite-bbox-height",
        "string-area",
        "bool-area",
        "list-area",
        "nan-area",
        "string-iscrowd",
        "bool-iscrowd",
        "list-iscrowd",
    ],
)
def test_malformed_annotation_file_error_names_file_and_id(quirky_coco, tmp_path, change, expected):
    image_dir, ann_file = quirky_coco
    bad = rewrite(ann_file, tmp_path / "bad.json", change)
    with pytest.raises(DatasetError, match=expected) as error:
        CocoDetection(image_dir, bad)
    assert str(bad) in str(error.value)


def test_annotation_file_that_is_not_json_is_an_error_naming_it_and_the_line(quirky_coco, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [],\n  "annotations": oops}')
    with pytest.raises(DatasetError, match="line 2 column 18: not a valid JSON") as error:
        CocoDetection(quirky_coco[0], bad)
    assert str(bad) in str(error.value)


def test_annotation_file_nested_too_deeply_is_an_error_naming_it(quirky_coco, tmp_path):
    bad = tmp_path / "deep.json"
    bad.write_text("[" * 100_000)
    with pytest.raises(DatasetError, match="not a valid JSON") as error:
        CocoDetection(quirky_coco[0], bad)
    assert str(bad) in str(error.value)


def test_image_whose_size_disagrees_with_the_file_raises_in_eval(quirky_coco, tmp_path):
    image_dir, ann_file = quirky_coco
    bad = rewrite(ann_file, tmp_path / "bad.json", lambda d: d["images"][0].update(width=65))
    with pytest.raises(DatasetError, match=r"rgb.jpg is 64x48 .* says image 10 is 65x48"):
        CocoDetection(image_dir, bad)[0]


def test_datamodule_reads_classes_from_the_train_file(shapes_root):
    module = CocoDataModule(str(shapes_root), image_size=64, batch_size=4, num_workers=0)
    assert module.num_classes == 4
    assert module.class_names == ["circle", "square", "triangle", "star"]
    assert module.label_to_cat_id == {1: 1, 2: 2, 3: 4, 4: 7}
    assert module.val_dataset.coco is not None


@pytest.mark.parametrize("augment", ["ssd", "flip", "none"])
def test_datamodule_train_batches_are_image_size_squares(shapes_root, augment):
    module = train_datamodule(shapes_root, image_size=64, batch_size=4, augment=augment)
    batch = next(iter(module.train_dataloader()))
    assert isinstance(batch, Batch)
    assert batch.skipped == 0 and len(batch) == len(batch.inputs) == len(batch.targets) == 4
    assert all(image.shape == (3, 64, 64) for image in batch.inputs)
    assert all(((t["boxes"] >= 0) & (t["boxes"] <= 64)).all() for t in batch.targets)


def test_datamodule_val_images_and_boxes_stay_in_original_pixels(shapes_root):
    module = CocoDataModule(str(shapes_root), image_size=64, batch_size=4, num_workers=0)
    batch = next(iter(module.val_dataloader()))
    assert batch.indices.tolist() == [0, 1, 2, 3]
    for image, target in zip(batch.inputs, batch.targets, strict=True):
        assert tuple(image.shape[1:]) == target["orig_size"]
        info = module.val_dataset.coco.imgs[target["image_id"]]
        assert target["orig_size"] == (info["height"], info["width"])


def test_datamodule_loaders_shuffle_train_only_and_batch_as_lists(shapes_root):
    module = train_datamodule(shapes_root, batch_size=4)
    train, val = module.train_dataloader(), module.val_dataloader()
    order = [i for batch in train for i in batch.indices.tolist()]
    assert order != sorted(order)
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    assert train.collate_fn is collate_lists and val.collate_fn is collate_lists


def ssd_epoch(root: Path, seed: int) -> list[torch.Tensor]:
    """One epoch's augmented images, in dataset order, of a run seeded with ``seed`` (as the runner seeds it)."""
    L.seed_everything(seed, verbose=False)
    module = train_datamodule(root, image_size=64, batch_size=4, augment="ssd")
    images = {i: x for batch in module.train_dataloader() for i, x in zip(batch.indices.tolist(), batch.inputs)}
    return [images[i] for i in sorted(images)]


def test_the_same_torch_seed_gives_the_same_training_augmentation(shapes_root):
    first, second, other = ssd_epoch(shapes_root, 0), ssd_epoch(shapes_root, 0), ssd_epoch(shapes_root, 1)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_datamodule_reports_classes_and_normalisation(shapes_root):
    info = CocoDataModule(str(shapes_root), num_workers=0, mean=[0.4, 0.5, 0.6], std=[0.2, 0.2, 0.2]).data_info()
    assert info == {
        "num_classes": 4,
        "class_names": ["circle", "square", "triangle", "star"],
        "label_to_cat_id": {1: 1, 2: 2, 3: 4, 4: 7},
        "mean": [0.4, 0.5, 0.6],
        "std": [0.2, 0.2, 0.2],
    }
    assert CocoDataModule(str(shapes_root), num_workers=0).data_info()["mean"] is None


def test_datamodule_rejects_a_std_of_zero_naming_the_key(shapes_root):
    with pytest.raises(ConfigError, match="data.std"):
        CocoDataModule(str(shapes_root), num_workers=0, std=[0.2, 0.0, 0.2])


def test_datamodule_skips_training_images_over_max_image_pixels_and_refuses_them_in_evaluation(shapes_root):
    datamodule = CocoDataModule(str(shapes_root), image_size=64, num_workers=0, max_image_pixels=1000)
    datamodule.setup("fit")
    train, val = datamodule.train_dataset, datamodule.val_dataset
    train_path, val_path = (dataset.image_path(dataset.image_ids[0]) for dataset in (train, val))

    with pytest.warns(UserWarning, match=re.escape(str(train_path)) + r".*data\.max_image_pixels=1000"):
        assert train[0] is None
    with pytest.raises(ImageLoadError, match=re.escape(str(val_path)) + r".*data\.max_image_pixels=1000"):
        val[0]


def test_datamodule_missing_path_names_path_and_argument(shapes_root):
    with pytest.raises(FileNotFoundError, match=r"val_annotations: .*nope\.json does not exist"):
        CocoDataModule(str(shapes_root), val_annotations="annotations/nope.json", num_workers=0)


def test_datamodule_missing_default_path_says_it_is_the_coco_default(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"val_images: .*val2017 .*COCO 2017 default"):
        CocoDataModule(str(tmp_path), num_workers=0)


def test_datamodule_needs_only_the_validation_files_until_training(shapes_root, tmp_path):
    (tmp_path / "annotations").mkdir()
    shutil.copy(shapes_root / "annotations" / "instances_val2017.json", tmp_path / "annotations")
    shutil.copytree(shapes_root / "val2017", tmp_path / "val2017")
    datamodule = CocoDataModule(str(tmp_path), num_workers=0)
    datamodule.setup("validate")
    assert datamodule.num_classes == 4 and len(datamodule.val_dataloader()) > 0
    with pytest.raises(FileNotFoundError, match=r"train_images: .*train2017 .*COCO 2017 default"):
        datamodule.setup("fit")


def test_datamodule_rejects_val_file_with_other_categories(shapes_root, tmp_path):
    val = rewrite(
        shapes_root / "annotations" / "instances_val2017.json",
        tmp_path / "val.json",
        lambda d: d["categories"][0].update(name="disc"),
    )
    datamodule = CocoDataModule(str(shapes_root), val_annotations=str(val), num_workers=0)
    with pytest.raises(DatasetError, match="different categories") as error:
        datamodule.setup("fit")
    assert "instances_train2017.json" in str(error.value) and str(val) in str(error.value)
