"""Box behaviour of the detection augmentations: flip, SSD zoom-out and minimum-IoU crop, and full pipelines."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from tasks.common.data import seed_worker
from tasks.detection.transforms import (
    AUGMENT_MODES,
    MinIoURandomCrop,
    ZoomOut,
    build_eval_transform,
    build_train_transform,
)

BOX_PARAMS = dict(format="pascal_voc", label_fields=["labels"])


def image_with_rectangles(boxes: np.ndarray, height: int = 64, width: int = 64, colours=None) -> np.ndarray:
    """Black image with each box filled (white, or ``colours[i]``)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        image[y1:y2, x1:x2] = 255 if colours is None else colours[i]
    return image


def run(transform: A.BasicTransform, image: np.ndarray, boxes: np.ndarray, seed: int) -> dict:
    compose = A.Compose([transform], bbox_params=A.BboxParams(**BOX_PARAMS), seed=seed)
    out = compose(image=image, bboxes=boxes, labels=np.arange(len(boxes)))
    out["bboxes"] = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
    return out


def test_flip_mirrors_boxes_and_pixels():
    boxes = np.array([[10, 20, 30, 40]], dtype=np.float32)
    image = image_with_rectangles(boxes)
    out_image, out_boxes, out_labels = build_train_transform(64, "flip", flip_p=1.0)(image, boxes, np.array([5]))
    assert out_boxes.tolist() == [[34.0, 20.0, 54.0, 40.0]]
    assert out_labels.tolist() == [5]
    assert torch.equal(out_image, torch.from_numpy(image[:, ::-1].copy()).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("seed", range(5))
def test_zoom_out_box_still_covers_the_same_content(seed):
    boxes = np.array([[10, 20, 30, 44]], dtype=np.float32)
    out = run(ZoomOut(max_scale=3.0, p=1.0), image_with_rectangles(boxes), boxes, seed)
    x1, y1, x2, y2 = out["bboxes"][0].round().astype(int)
    white = np.argwhere(out["image"][..., 0] == 255)
    assert out["image"].shape[0] >= 64 and out["image"].shape[1] >= 64
    assert (y1, x1) == tuple(white.min(axis=0)) and (y2 - 1, x2 - 1) == tuple(white.max(axis=0))
    assert (x2 - x1, y2 - y1) == (20, 24)


def test_zoom_out_fills_the_canvas_with_the_mean_colour():
    out = run(ZoomOut(max_scale=4.0, fill_value=(1, 2, 3), p=1.0), np.zeros((32, 32, 3), np.uint8), np.zeros((0, 4)), 0)
    outside = out["image"][np.any(out["image"] != 0, axis=2)]
    assert len(outside) == out["image"].shape[0] * out["image"].shape[1] - 32 * 32
    assert (outside == [1, 2, 3]).all()


@pytest.mark.parametrize("seed", range(8))
def test_iou_crop_keeps_boxes_with_centre_inside_and_clips_them(seed):
    corners = np.arange(0, 64, 16, dtype=np.float32)
    boxes = np.array([[x, y, x + 12, y + 12] for x in corners for y in corners], dtype=np.float32)
    crop = MinIoURandomCrop(min_ious=(0.1,), min_scale=0.3)
    out = run(crop, np.zeros((64, 64, 3), np.uint8), boxes, seed)
    cx1, cy1, cx2, cy2 = crop.params["crop_coords"]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    inside = (centres[:, 0] > cx1) & (centres[:, 0] < cx2) & (centres[:, 1] > cy1) & (centres[:, 1] < cy2)
    expected = boxes[inside] - np.array([cx1, cy1, cx1, cy1], dtype=np.float32)
    expected = np.clip(expected, 0, [cx2 - cx1, cy2 - cy1] * 2)
    assert out["image"].shape[:2] == (cy2 - cy1, cx2 - cx1)
    assert list(out["labels"]) == np.flatnonzero(inside).tolist()
    np.testing.assert_allclose(out["bboxes"], expected, atol=1e-3)


def test_iou_crop_overlaps_a_box_by_at_least_the_drawn_minimum_or_keeps_the_image():
    boxes = np.array([[20, 20, 44, 44]], dtype=np.float32)
    crops = []
    for seed in range(10):
        crop = MinIoURandomCrop(min_ious=(0.5,), min_scale=0.3)
        run(crop, np.zeros((64, 64, 3), np.uint8), boxes, seed)
        crops.append(crop.params["crop_coords"])
    taken = [c for c in crops if c != (0, 0, 64, 64)]
    assert taken, "no crop found in any of the seeds"
    for cx1, cy1, cx2, cy2 in taken:
        inter = max(0, min(44, cx2) - max(20, cx1)) * max(0, min(44, cy2) - max(20, cy1))
        assert inter / (24 * 24 + (cx2 - cx1) * (cy2 - cy1) - inter) >= 0.5


@pytest.mark.parametrize(
    "transform",
    [ZoomOut(p=1.0), MinIoURandomCrop(), A.HorizontalFlip(p=1.0)],
    ids=["zoom-out", "iou-crop", "flip"],
)
def test_empty_box_list_survives_each_transform(transform):
    out = run(transform, np.zeros((48, 64, 3), np.uint8), np.zeros((0, 4), np.float32), seed=0)
    assert out["bboxes"].shape == (0, 4) and len(out["labels"]) == 0


@pytest.mark.parametrize("augment", AUGMENT_MODES)
def test_empty_box_list_survives_each_pipeline(augment):
    image, boxes, labels = build_train_transform(32, augment, seed=0)(
        np.zeros((48, 64, 3), np.uint8), np.zeros((0, 4)), np.zeros((0,))
    )
    assert image.shape == (3, 32, 32) and boxes.shape == (0, 4) and labels.shape == (0,)


def test_ssd_pipeline_boxes_stay_inside_the_image_and_non_degenerate():
    rng = np.random.default_rng(0)
    transform = build_train_transform(48, "ssd", seed=0)
    for _ in range(40):
        height, width = rng.integers(32, 96, size=2)
        corners = rng.uniform(-8, [width + 8, height + 8], size=(6, 2, 2))
        boxes = np.sort(corners, axis=1).reshape(6, 4).clip(0, [width, height, width, height])
        boxes = boxes[(boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)]
        image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        out_image, out_boxes, out_labels = transform(image, boxes, np.ones(len(boxes)))
        assert out_image.shape == (3, 48, 48) and out_image.dtype == torch.float32
        assert 0 <= out_image.min() and out_image.max() <= 1
        assert len(out_boxes) == len(out_labels) and out_labels.dtype == torch.int64
        assert ((out_boxes >= 0) & (out_boxes <= 48)).all()
        assert ((out_boxes[:, 2:] - out_boxes[:, :2]) > 0).all()


def test_ssd_pipeline_labels_stay_with_their_boxes():
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    boxes = np.array([[4, 4, 28, 28], [36, 4, 60, 28], [20, 36, 44, 60]], dtype=np.float32)
    image = image_with_rectangles(boxes, colours=colours)
    transform = build_train_transform(64, "ssd", photometric_p=0.0, seed=0)
    for _ in range(20):
        out_image, out_boxes, out_labels = transform(image, boxes, np.array([0, 1, 2]))
        for (x1, y1, x2, y2), label in zip(out_boxes.tolist(), out_labels.tolist(), strict=True):
            centre = out_image[:, int((y1 + y2) / 2), int((x1 + x2) / 2)]
            assert centre.argmax().item() == label and centre.max() > 0.5


def test_eval_transform_keeps_size_and_boxes():
    boxes = np.array([[1.5, 2.0, 30.0, 20.25]], dtype=np.float32)
    image, out_boxes, labels = build_eval_transform()(np.full((40, 50, 3), 255, np.uint8), boxes, np.array([2]))
    assert image.shape == (3, 40, 50) and image.max() == 1.0
    assert out_boxes.tolist() == boxes.tolist() and labels.tolist() == [2]


def test_unknown_augment_mode_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'heavy'"):
        build_train_transform(300, "heavy")


class RepeatedImage(torch.utils.data.Dataset):
    """The same image four times, through one shared train transform."""

    def __init__(self) -> None:
        self.transform = build_train_transform(32, "ssd")
        self.image = np.random.default_rng(0).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return self.transform(self.image, np.zeros((0, 4)), np.zeros((0,)))[0].sum().item()


def test_dataloader_workers_draw_different_augmentations():
    loader = torch.utils.data.DataLoader(RepeatedImage(), batch_size=1, num_workers=2, worker_init_fn=seed_worker)
    sums = [batch.item() for batch in loader]
    assert len(set(sums)) == 4  # without per-worker reseeding, workers 0 and 1 return identical pairs
