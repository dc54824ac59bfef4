"""The synthetic Stanford Dogs: the official layout, .mat fields and VOC annotations; breeds that differ in form."""

from __future__ import annotations

import hashlib
import inspect
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import PIL
import scipy.io
from PIL import Image

from tasks.classification.synthetic import (
    BREED_LOOKS,
    DOG_BREEDS,
    draw_image,
    make_synthetic_dogs,
    make_synthetic_imagefolder,
)

from .conftest import NUM_BREEDS, TEST_PER_BREED, TRAIN_PER_BREED


def test_defaults_give_ten_breeds_with_thirty_training_images_each() -> None:
    defaults = {k: p.default for k, p in inspect.signature(make_synthetic_dogs).parameters.items()}

    assert defaults["num_breeds"] >= 10 and defaults["num_train"] >= 30 and defaults["num_val"] > 0


def test_breeds_differ_in_shape_or_pattern_not_only_colour() -> None:
    forms = [(shape, pattern) for shape, pattern, _, _ in BREED_LOOKS]

    assert len(set(forms)) == len(forms) == len(DOG_BREEDS)


def test_mat_lists_have_the_real_fields_and_types(dogs_root: Path) -> None:
    for name, count in (
        ("train_list.mat", NUM_BREEDS * TRAIN_PER_BREED),
        ("test_list.mat", NUM_BREEDS * TEST_PER_BREED),
        ("file_list.mat", NUM_BREEDS * (TRAIN_PER_BREED + TEST_PER_BREED)),
    ):
        mat = scipy.io.loadmat(dogs_root / name)

        for field in ("file_list", "annotation_list"):
            assert mat[field].dtype == object and mat[field].shape == (count, 1)
            assert mat[field][0, 0].dtype.kind == "U"
        assert mat["labels"].dtype == np.float64 and mat["labels"].shape == (count, 1)
        assert mat["labels"].min() == 1 and mat["labels"].max() == NUM_BREEDS


def test_annotations_are_pascal_voc_with_boxes_inside_the_image(dogs_root: Path) -> None:
    mat = scipy.io.loadmat(dogs_root / "train_list.mat")
    for cell in mat["annotation_list"].ravel():
        relative = str(cell[0])
        root = ET.parse(dogs_root / "Annotation" / relative).getroot()
        image = Image.open(dogs_root / "Images" / f"{relative}.jpg")

        assert [child.tag for child in root][:6] == ["folder", "filename", "source", "size", "segment", "object"]
        assert root.findtext("filename") == relative.split("/")[1]
        assert (int(root.findtext("size/width")), int(root.findtext("size/height"))) == image.size
        for obj in root.iter("object"):
            assert [child.tag for child in obj] == ["name", "pose", "truncated", "difficult", "bndbox"]
            assert obj.findtext("name") == relative.split("/")[0].split("-", 1)[1]
            xmin, ymin, xmax, ymax = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= xmin < xmax <= image.width and 1 <= ymin < ymax <= image.height


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    first = make_synthetic_imagefolder(tmp_path / "a", seed=3, num_train=2, num_val=1, num_classes=2)
    second = make_synthetic_imagefolder(tmp_path / "b", seed=3, num_train=2, num_val=1, num_classes=2)

    files = sorted(p.relative_to(first) for p in first.rglob("*.jpg"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.jpg")) and len(files) == 6
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


# sha256 of the pixels and boxes of one picture of every look, recorded before the drawing helpers moved to
# tasks.common.synthetic (Pillow 13.0.0, numpy 2.4.6). A change is a new demo set.
RECORDED_PICTURES = "e2c1f0243b7cb002dce56e018e9d681fa5bdd81adcd100b47eac824104c8abec"


def test_a_seed_still_draws_the_recorded_pictures() -> None:
    rng = np.random.default_rng(5)
    digest = hashlib.sha256()
    for look in BREED_LOOKS:
        image, boxes = draw_image(look, rng, (48, 64), second_p=0.5)
        digest.update(image.tobytes())
        digest.update(repr(boxes).encode())

    assert digest.hexdigest() == RECORDED_PICTURES, f"drawn with Pillow {PIL.__version__}, numpy {np.__version__}"
