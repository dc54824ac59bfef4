"""Tiny synthetic data sets for the classification tests (generated once per test session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.classification.synthetic import make_synthetic_dogs, make_synthetic_imagefolder

# Five breeds, so that "n02086240-Shih-Tzu" (a hyphen inside the breed) is among them.
NUM_BREEDS = 5
TRAIN_PER_BREED = 3
TEST_PER_BREED = 2


@pytest.fixture(scope="session")
def dogs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic Stanford Dogs: 5 breeds, 3 train and 2 test images each, 48-64 px."""
    out = tmp_path_factory.mktemp("dogs")
    return make_synthetic_dogs(
        out, seed=0, num_train=TRAIN_PER_BREED, num_val=TEST_PER_BREED, num_breeds=NUM_BREEDS, size_range=(48, 64)
    )


@pytest.fixture
def dogs_copy(dogs_root: Path, tmp_path: Path) -> Path:
    """A copy of ``dogs_root`` that a test may damage."""
    return Path(shutil.copytree(dogs_root, tmp_path / "dogs"))


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic image folder: 3 classes, 16 train and 8 val images each, 40-56 px."""
    out = tmp_path_factory.mktemp("shapes")
    return make_synthetic_imagefolder(out, seed=0, num_train=16, num_val=8, num_classes=3, size_range=(40, 56))
