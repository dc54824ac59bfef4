"""Detection augmentation: albumentations pipelines with SSD's zoom-out and minimum-IoU crop.

Every pipeline is a ``DetectionTransform``: ``(image HxWx3 uint8, boxes (N, 4) x1y1x2y2 pixels, labels (N,))`` in,
``(image float32 (3, H', W') in [0, 1], boxes float32 (M, 4) in pixels of the new image, labels int64 (M,))`` out.
Boxes that leave the image are clipped; boxes narrower or shorter than a pixel after any step are dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import albumentations as A
import numpy as np
import torch
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.bbox_utils import denormalize_bboxes, normalize_bboxes
from torch import Tensor

from tasks.common.data import AlbumentationsTransform, image_to_tensor

__all__ = [
    "AUGMENT_MODES",
    "IMAGENET_MEAN_RGB",
    "DetectionTransform",
    "MinIoURandomCrop",
    "ZoomOut",
    "build_eval_transform",
    "build_train_transform",
]

AugmentMode = Literal["ssd", "flip", "none"]
AUGMENT_MODES: tuple[str, ...] = ("ssd", "flip", "none")

# Fill for the zoom-out canvas: the mean colour, so the padding becomes ~0 after the model normalises.
IMAGENET_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)


class ZoomOut(A.DualTransform):
    """SSD's "expand": place the image at a random spot of a canvas up to ``max_scale`` times larger (each side),
    filled with ``fill_value``, so that objects become smaller. Boxes keep covering the same content pixels."""

    def __init__(
        self,
        max_scale: float = 4.0,
        fill_value: tuple[float, float, float] = IMAGENET_MEAN_RGB,
        p: float = 0.5,
    ) -> None:
        super().__init__(p=p)
        if max_scale < 1.0:
            raise ValueError(f"ZoomOut max_scale must be >= 1, got {max_scale}")
        self.max_scale = max_scale
        self.fill_value = tuple(fill_value)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        scale = self.py_random.uniform(1.0, self.max_scale)
        canvas_height, canvas_width = int(round(height * scale)), int(round(width * scale))
        left = self.py_random.randint(0, canvas_width - width)
        top = self.py_random.randint(0, canvas_height - height)
        return {"canvas_shape": (canvas_height, canvas_width), "offset": (left, top)}

    def apply(
        self, img: np.ndarray, canvas_shape: tuple[int, int], offset: tuple[int, int], **params: Any
    ) -> np.ndarray:
        left, top = offset
        fill = np.asarray(self.fill_value[: img.shape[2]] if img.ndim == 3 else self.fill_value[0])
        canvas = np.empty((*canvas_shape, *img.shape[2:]), dtype=img.dtype)
        canvas[...] = fill.astype(img.dtype)
        canvas[top : top + img.shape[0], left : left + img.shape[1]] = img
        return canvas

    def apply_to_bboxes(
        self, bboxes: np.ndarray, canvas_shape: tuple[int, int], offset: tuple[int, int], **params: Any
    ) -> np.ndarray:
        if not len(bboxes):
            return bboxes
        pixels = denormalize_bboxes(bboxes, params["shape"][:2])
        pixels[:, [0, 2]] += offset[0]
        pixels[:, [1, 3]] += offset[1]
        return normalize_bboxes(pixels, canvas_shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_scale", "fill_value")


class MinIoURandomCrop(BaseCrop):  # private: BaseCrop is not in albumentations' __all__; its own crops derive from it
    """SSD's patch sampler (Liu et al. 2016, sec. 2.2 "Data augmentation").

    Draw a minimum IoU from ``min_ious`` (``None`` keeps the whole image), then try up to ``max_trials`` crops with
    sides ``min_scale``..1 of the image's and aspect ratio (w/h) in ``aspect_range``, until one overlaps some box with
    IoU >= the minimum (as in the Caffe SSD and torchvision samplers) and contains at least one box centre. If no
    trial succeeds, another minimum is drawn (as torchvision's RandomIoUCrop does), up to ``max_draws`` times before
    keeping the image whole. Boxes whose centre falls outside the crop are dropped; the rest are clipped to it.
    Images without boxes take the first crop of a valid shape.
    """

    def __init__(
        self,
        min_ious: tuple[float | None, ...] = (None, 0.1, 0.3, 0.5, 0.7, 0.9),
        min_scale: float = 0.3,
        aspect_range: tuple[float, float] = (0.5, 2.0),
        max_trials: int = 50,
        max_draws: int = 10,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not min_ious:
            raise ValueError("MinIoURandomCrop needs at least one entry in min_ious")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"MinIoURandomCrop min_scale must be in (0, 1], got {min_scale}")
        if not 0.0 < aspect_range[0] <= aspect_range[1]:
            raise ValueError(f"MinIoURandomCrop aspect_range must be 0 < low <= high, got {aspect_range}")
        self.min_ious = tuple(min_ious)
        self.min_scale = min_scale
        self.aspect_range = tuple(aspect_range)
        self.max_trials = max_trials
        self.max_draws = max_draws

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        bboxes = data.get("bboxes")
        boxes = denormalize_bboxes(np.asarray(bboxes)[:, :4], (height, width)) if len(bboxes) else np.zeros((0, 4))
        for _ in range(self.max_draws):
            min_iou = self.py_random.choice(self.min_ious)
            if min_iou is None:
                break
            for _ in range(self.max_trials):
                crop = self._sample_crop(height, width)
                if crop is not None and _crop_accepts(crop, boxes, min_iou):
                    return {"crop_coords": crop}
        return {"crop_coords": (0, 0, width, height)}

    def _sample_crop(self, height: int, width: int) -> tuple[int, int, int, int] | None:
        crop_width = int(width * self.py_random.uniform(self.min_scale, 1.0))
        crop_height = int(height * self.py_random.uniform(self.min_scale, 1.0))
        if crop_width < 1 or crop_height < 1:
            return None
        if not self.aspect_range[0] <= crop_width / crop_height <= self.aspect_range[1]:
            return None
        left = self.py_random.randint(0, width - crop_width)
        top = self.py_random.randint(0, height - crop_height)
        return (left, top, left + crop_width, top + crop_height)

    def apply_to_bboxes(self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        if not len(bboxes):
            return bboxes
        height, width = params["shape"][:2]
        boxes = denormalize_bboxes(bboxes[:, :4], (height, width))
        bboxes = bboxes[_centres_inside(boxes, crop_coords)]
        cropped = super().apply_to_bboxes(bboxes, crop_coords=crop_coords, **params)
        cropped[:, :4] = np.clip(cropped[:, :4], 0.0, 1.0)
        return cropped

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "min_scale", "aspect_range", "max_trials", "max_draws")


def _centres_inside(boxes: np.ndarray, crop: tuple[int, int, int, int]) -> np.ndarray:
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > crop[0]) & (cx < crop[2]) & (cy > crop[1]) & (cy < crop[3])


def _crop_accepts(crop: tuple[int, int, int, int], boxes: np.ndarray, min_iou: float) -> bool:
    if not len(boxes):
        return True
    if not _centres_inside(boxes, crop).any():
        return False
    inter_w = np.clip(np.minimum(boxes[:, 2], crop[2]) - np.maximum(boxes[:, 0], crop[0]), 0, None)
    inter_h = np.clip(np.minimum(boxes[:, 3], crop[3]) - np.maximum(boxes[:, 1], crop[1]), 0, None)
    inter = inter_w * inter_h
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    crop_area = (crop[2] - crop[0]) * (crop[3] - crop[1])
    iou = inter / np.maximum(box_area + crop_area - inter, 1e-9)
    return bool(iou.max() >= min_iou)


class DetectionTransform(AlbumentationsTransform):
    """Run the ``Compose`` (or nothing) on (image, boxes, labels) and hand back tensors.

    Call: ``(image (H, W, 3) uint8, boxes (N, 4) x1y1x2y2 pixels, labels (N,))`` ->
    ``(image float32 (3, H', W') in [0, 1], boxes float32 (M, 4), labels int64 (M,))``.
    """

    def __call__(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if self.compose is not None:
            out = self.compose(image=image, bboxes=boxes, labels=labels)
            image = out["image"]
            boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
            labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        return image_to_tensor(image), torch.from_numpy(boxes), torch.from_numpy(labels)


def _bbox_params(min_visibility: float, min_size: float) -> A.BboxParams:
    # min_visibility is 0 by default: MinIoURandomCrop already applies SSD's centre-inside rule, which is what
    # decides whether a cut object keeps its label.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels"],
        min_visibility=min_visibility,
        min_width=min_size,
        min_height=min_size,
        min_area=min_size * min_size,
        clip=True,
        filter_invalid_bboxes=True,
    )


def build_train_transform(
    image_size: int,
    augment: AugmentMode = "ssd",
    zoom_out_max_scale: float = 4.0,
    zoom_out_p: float = 0.5,
    crop_min_scale: float = 0.3,
    flip_p: float = 0.5,
    photometric_p: float = 0.5,
    min_visibility: float = 0.0,
    min_box_size: float = 1.0,
    seed: int | None = None,
) -> DetectionTransform:
    """Training pipeline, ending in an ``image_size`` x ``image_size`` resize.

    ``augment``: "ssd" = photometric distortion, zoom out, minimum-IoU crop, horizontal flip, resize (the SSD recipe,
    in its order); "flip" = horizontal flip and resize; "none" = resize only. ``seed`` starts the random stream
    (the data module draws it from torch's generator; None draws from the OS, unrepeatable).
    """
    if augment not in AUGMENT_MODES:
        raise ValueError(f"augment must be one of {AUGMENT_MODES}, got {augment!r}")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    steps: list[A.BasicTransform] = []
    if augment == "ssd":
        # torchvision's RandomPhotometricDistort ranges (SSD: brightness +-32/255, contrast and saturation 0.5-1.5,
        # hue +-18 degrees).
        steps.append(A.ColorJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05, p=photometric_p))
        steps.append(ZoomOut(max_scale=zoom_out_max_scale, p=zoom_out_p))
        steps.append(MinIoURandomCrop(min_scale=crop_min_scale))
    if augment in ("ssd", "flip"):
        steps.append(A.HorizontalFlip(p=flip_p))
    steps.append(A.Resize(image_size, image_size))
    compose = A.Compose(steps, bbox_params=_bbox_params(min_visibility, min_box_size), seed=seed)
    return DetectionTransform(compose)


def build_eval_transform() -> DetectionTransform:
    """Evaluation pipeline: no resize (the model resizes and maps boxes back), only the conversion to tensors.
    Boxes pass through untouched: ``CocoDetection`` has already clipped them and dropped degenerate ones."""
    return DetectionTransform(None)
