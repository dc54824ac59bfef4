"""A tiny synthetic CelebA for the face-attribute tests (generated once per test session), and a writer of
hand-made CelebA roots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from PIL import Image

from tasks.face_attributes.synthetic import make_synthetic_celeba

NUM_TRAIN, NUM_VAL, NUM_TEST = 24, 8, 6


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic CelebA: 24 train, 8 val and 6 test images of 40x48 pixels."""
    out = tmp_path_factory.mktemp("celeba")
    return make_synthetic_celeba(out, seed=0, num_train=NUM_TRAIN, num_val=NUM_VAL, num_test=NUM_TEST, size=(40, 48))


def write_celeba(
    root: Path,
    attribute_text: str,
    partition_text: str,
    images: Sequence[str] = (),
    attribute_file: str = "list_attr_celeba.txt",
    partition_file: str = "list_eval_partition.txt",
    image_folder: str = "img_align_celeba",
) -> Path:
    """A CelebA root with the given list texts and small images named ``images``; return ``root``."""
    for relative, text in ((attribute_file, attribute_text), (partition_file, partition_text)):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)
    (root / image_folder).mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(images):
        Image.new("RGB", (18, 22), (40 * index % 256, 90, 160)).save(root / image_folder / name)
    return root
