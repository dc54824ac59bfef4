"""A tiny synthetic LFW layout for the face-embedding tests (generated once per test session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from tasks.face_embedding.synthetic import make_synthetic_lfw

# Tiny: 4 training identities of 3 pictures, 6 LFW people in 3 folds of 2 + 2 pairs, 32-pixel pictures.
TRAIN_IDENTITIES = 4
TRAIN_PICTURES = 3
FOLDS = 3
PAIRS_PER_FOLD = 2


@pytest.fixture(scope="session")
def lfw_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only synthetic LFW set: train/, lfw/ and pairs.txt."""
    return make_synthetic_lfw(
        tmp_path_factory.mktemp("lfw"),
        seed=0,
        num_train_identities=TRAIN_IDENTITIES,
        images_per_train_identity=TRAIN_PICTURES,
        num_lfw_people=6,
        lfw_images_per_person=(1, 3),
        num_folds=FOLDS,
        pairs_per_fold=PAIRS_PER_FOLD,
        image_size=32,
    )


@pytest.fixture
def lfw_copy(lfw_root: Path, tmp_path: Path) -> Path:
    """A copy of ``lfw_root`` that a test may change."""
    return Path(shutil.copytree(lfw_root, tmp_path / "lfw_set"))


def calibrated(model: nn.Module, size: int = 32) -> nn.Module:
    """``model`` in eval mode with BatchNorm statistics of random images: at initialisation (running variance 1)
    MobileNet's activations shrink layer by layer to ~1e-12, below what L2 normalisation can divide by."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, size, size))
    return model.eval()
