"""CocoDetection and CocoDataModule on tiny hand-written and synthetic COCO files."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

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
    assert messages == [f"dropped 2 degenerate boxes in {quirky_coco[1]}"]


@pytest.mark.parametrize("image_id", [30, 40, 50], ids=["grey", "rgba", "cmyk"])
def test_grey_rgba_and_cmyk_files_become_three_channel_floats(quirky_coco, image_id):
    image, _ = sample_for(CocoDetection(*quirky_coco), image_id)
    assert image.shape == (3, 64, 64)
    assert image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


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
    ],
)
def test_malformed_annotation_file_error_names_file_and_id(quirky_coco, tmp_path, change, expected):
    image_dir, ann_file = quirky_coco
    bad = rewrite(ann_file, tmp_path / "bad.json", change)
    with pytest.raises(DatasetError, match=expected) as error:
        CocoDetection(image_dir, bad)
    assert str(bad) in str(error.value)


def test_annotation_file_that_is_not_json_is_an_error_naming_it(quirky_coco, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{'images': oops")
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
    assert isinstance(train.sampler, torch.utils.data.RandomSampler)
    assert isinstance(val.sampler, torch.utils.data.SequentialSampler)
    assert train.collate_fn is collate_lists and val.collate_fn is collate_lists


def ssd_epoch(root: Path, torch_seed: int) -> list[torch.Tensor]:
    torch.manual_seed(torch_seed)
    module = train_datamodule(root, image_size=64, batch_size=4, augment="ssd")
    return [image for batch in module.train_dataloader() for image in batch.inputs]


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
