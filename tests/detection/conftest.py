"""Tiny COCO-format data sets written to tmp_path: synthetic shapes and hand-written quirky ones."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from backbone import BACKBONES, BackboneSpec, FeatureBackbone, TapInfo
from tasks.detection.synthetic import make_shapes_coco

QUIRKY_CATEGORIES = [
    {"id": 15, "name": "zebra", "supercategory": "animal"},
    {"id": 3, "name": "cat", "supercategory": "animal"},
    {"id": 8, "name": "dog", "supercategory": "animal"},
]


def write_image(path: Path, width: int, height: int, mode: str = "RGB", seed: int = 0) -> None:
    """A random image saved in ``mode`` (format from the suffix)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path)


def write_annotations(path: Path, images: list[dict], annotations: list[dict], categories: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(data))
    return path


def box(ann_id: int, image_id: int, category_id: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": 0, **extra}


def make_quirky_coco(out: Path) -> tuple[Path, Path]:
    """Images in out/images and out/annotations.json with the awkward cases real files have; returns both paths.

    Image 10 (rgb.jpg, 64x48): a cat box, a crowd dog region, a zero-width box, a box partly outside (clipped to
    x 50..64, y 30..48) and one entirely outside (degenerate once clipped). Image 20 has no annotations.
    Images 30/40/50 are a greyscale JPEG, an RGBA PNG and a CMYK JPEG. Category ids 3, 8, 15 are gapped and listed
    out of order.
    """
    image_dir = out / "images"
    files = [
        (10, "rgb.jpg", 64, 48, "RGB"),
        (20, "empty.jpg", 80, 64, "RGB"),
        (30, "grey.jpg", 64, 64, "L"),
        (40, "rgba.png", 64, 64, "RGBA"),
        (50, "cmyk.jpg", 64, 64, "CMYK"),
    ]
    images = []
    for image_id, name, width, height, mode in files:
        write_image(image_dir / name, width, height, mode, seed=image_id)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    annotations = [
        box(1, 10, 3, [5, 5, 20, 10]),
        box(2, 10, 8, [0, 0, 64, 48], iscrowd=1),
        box(3, 10, 15, [30, 10, 0, 12]),
        box(4, 10, 8, [50, 30, 30, 30]),
        box(5, 10, 3, [100, 100, 10, 10]),
        box(6, 30, 15, [10, 10, 20, 20]),
        box(7, 40, 3, [10, 10, 20, 20]),
        box(8, 50, 8, [10, 10, 20, 20]),
    ]
    ann_file = write_annotations(out / "annotations.json", images, annotations, QUIRKY_CATEGORIES)
    return image_dir, ann_file


@pytest.fixture
def quirky_coco(tmp_path: Path) -> tuple[Path, Path]:
    return make_quirky_coco(tmp_path)


@pytest.fixture
def broken_images_coco(tmp_path: Path) -> tuple[Path, Path]:
    """Three images: good.jpg, corrupt.jpg (truncated bytes) and missing.jpg (listed, not on disk)."""
    image_dir = tmp_path / "images"
    write_image(image_dir / "good.jpg", 64, 64)
    write_image(image_dir / "corrupt.jpg", 64, 64)
    (image_dir / "corrupt.jpg").write_bytes((image_dir / "corrupt.jpg").read_bytes()[:40])
    images = [
        {"id": i, "file_name": name, "width": 64, "height": 64}
        for i, name in enumerate(["good.jpg", "corrupt.jpg", "missing.jpg"], start=1)
    ]
    annotations = [box(i, i, 3, [8, 8, 16, 16]) for i in (1, 2, 3)]
    return image_dir, write_annotations(tmp_path / "annotations.json", images, annotations, QUIRKY_CATEGORIES)


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic set in the COCO 2017 layout (8 train, 4 val images of 96-160 px)."""
    return make_shapes_coco(
        tmp_path_factory.mktemp("shapes"),
        num_train=8,
        num_val=4,
        seed=0,
        image_size_range=(96, 160),
        object_size_range=(16, 64),
    )


class TwoConvs(FeatureBackbone):
    """A backbone that is not MobileNetV1: taps "s16" (12 channels) and "s32" (20), no options, no layers_after."""

    mean = (0.25, 0.5, 0.75)
    std = (0.1, 0.2, 0.3)

    def __init__(self, out_features: Sequence[str] = ("s32",)) -> None:
        super().__init__()
        self.s16 = nn.Conv2d(3, 12, 16, stride=16)
        self.s32 = nn.Conv2d(12, 20, 3, stride=2, padding=1)
        self._set_taps([TapInfo("s16", 12, 16), TapInfo("s32", 20, 32)], out_features)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        s16 = self.s16(x)
        features = OrderedDict(s16=s16, s32=self.s32(s16))
        return OrderedDict((name, features[name]) for name in self.out_features)


@pytest.fixture
def two_convs(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(BACKBONES, "two_convs", BackboneSpec(TwoConvs, lambda model, path: model))
    return "two_convs"


@pytest.fixture
def peak_activation() -> Callable[[torch.nn.Module], float]:
    """The largest value a backbone's taps give once every BatchNorm adds 10: 6 where it clamps as ReLU6 does."""

    @torch.no_grad()
    def peak(backbone: torch.nn.Module) -> float:
        for module in backbone.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(10.0)
        return max(feature.max().item() for feature in backbone.eval()(torch.zeros(1, 3, 64, 64)).values())

    return peak
