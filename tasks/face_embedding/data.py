"""Face-identity data: identity folders for training, LFW's layout and pairs file for verification.

Under ``root``:

- ``train/<Name>/*.jpg``: one folder per training identity, as CASIA-WebFace and VGGFace2 are distributed (labels:
  the sorted folder names that hold images). ``train_root`` may point elsewhere; without ``train/`` the LFW folder
  itself is used, with a warning: training and evaluation then share people.
- ``lfw/<Name>/<Name>_NNNN.jpg``: LFW's images (4-digit number, 1-based).
- ``pairs.txt``: LFW's pairs. Line 1 is "folds pairs-per-fold" (``10\\t300`` in View 2's file: each fold is 300
  same-person rows then 300 different-person rows) or a single count (View 1's ``pairsDevTest.txt``: that many
  same-person rows, then as many different-person rows). Rows are "Name n1 n2" (the same person) or
  "Name1 n1 Name2 n2" (two people), separated by tabs or spaces; names hold underscores, hyphens and other marks,
  so a row's kind is told by its number of fields.

The validation set is the distinct images the pairs name, in order of first mention; an item is
(image, 0, index) and the pairs reach the module as index pairs through ``data_info()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.data import Dataset

from tasks.common.data import AlbumentationsTransform, TaskDataModule, collate_stacked, draw_seed, image_to_tensor
from tasks.common.errors import ConfigError, DatasetError
from tasks.common.files import check_data_root, check_inside, find_images
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, load_rgb, try_load_rgb
from tasks.face_embedding.verification import split_into_folds

__all__ = [
    "UNLABELED_TARGET",
    "Pair",
    "PairsFile",
    "read_pairs",
    "lfw_image_path",
    "VerificationSet",
    "index_pairs",
    "read_identity_folders",
    "FaceTransform",
    "build_train_transform",
    "build_eval_transform",
    "FaceDataset",
    "FaceEmbeddingDataModule",
]

# The target of an image without an identity (cross-entropy's default ignore_index): the distillation tool adds
# such images, which only its teacher's embeddings supervise.
UNLABELED_TARGET = -100
# The folds a single list of pairs (View 1) is cut into, as View 2 has.
DEFAULT_FOLDS = 10


@dataclass(frozen=True)
class Pair:
    """One row of a pairs file: two images (name, 1-based number), whether they show the same person, the fold
    (0-based; 0 for every row of a single-count file) and the row's line number."""

    first: tuple[str, int]
    second: tuple[str, int]
    same: bool
    fold: int
    line: int


@dataclass(frozen=True)
class PairsFile:
    """A parsed pairs file: its rows and its header (``num_folds`` 1 for a single-count file)."""

    path: Path
    pairs: list[Pair]
    num_folds: int
    pairs_per_fold: int

    @property
    def has_folds(self) -> bool:
        """Whether the header gave the folds (View 2's "10 300"), rather than one list of pairs."""
        return self.num_folds > 1


def _positive_int(text: str, path: Path, line: int, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # str.isdigit alone passes "²", which int() refuses
        raise DatasetError(f"{path}:{line}: {what} must be a positive integer, got {text!r}")
    return int(text)


def read_pairs(path: str | Path) -> PairsFile:
    """Parse an LFW pairs file (both header shapes; tabs or spaces). Blank lines are skipped.

    Raises DatasetError naming the file and line of the first malformed line, or the row count when it disagrees
    with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"pairs file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot read: {type(error).__name__}: {error}") from error
    lines = [(number, line.split()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, fields) for number, fields in lines if fields]
    if not lines:
        raise DatasetError(f"{path}: empty; expected a header line 'folds pairs' or 'count', then pair rows")
    header_line, header = lines[0]
    if len(header) not in (1, 2):
        raise DatasetError(
            f"{path}:{header_line}: the header must be 'folds pairs-per-fold' or a single count, "
            f"got {' '.join(header)!r}"
        )
    values = [_positive_int(field, path, header_line, "a header value") for field in header]
    num_folds, per_fold = (1, values[0]) if len(values) == 1 else values
    rows_per_fold = 2 * per_fold
    pairs = []
    for position, (number, fields) in enumerate(lines[1:]):
        fold = min(position // rows_per_fold, num_folds - 1)
        for name in fields[:: 2 if len(fields) == 4 else 3]:  # the person names: folders of lfw/
            check_inside(name, f"{path}:{number}", "the lfw folder")
        if len(fields) == 3:
            name, first, second = fields
            image_numbers = (_positive_int(first, path, number, "n1"), _positive_int(second, path, number, "n2"))
            pairs.append(Pair((name, image_numbers[0]), (name, image_numbers[1]), True, fold, number))
        elif len(fields) == 4:
            first_name, first, second_name, second = fields
            pairs.append(
                Pair(
                    (first_name, _positive_int(first, path, number, "n1")),
                    (second_name, _positive_int(second, path, number, "n2")),
                    False,
                    fold,
                    number,
                )
            )
        else:
            raise DatasetError(
                f"{path}:{number}: expected 3 fields (name n1 n2) or 4 (name1 n1 name2 n2), got {len(fields)}: "
                f"{' '.join(fields)!r}"
            )
    expected = num_folds * rows_per_fold
    if len(pairs) != expected:
        shape = f"{num_folds} folds of {per_fold} + {per_fold} pairs" if num_folds > 1 else f"{per_fold} + {per_fold}"
        raise DatasetError(f"{path}: the header promises {shape} = {expected} rows, the file has {len(pairs)}")
    return PairsFile(path, pairs, num_folds, per_fold)


def lfw_image_path(lfw_dir: str | Path, name: str, number: int) -> Path:
    """LFW's file of image ``number`` (1-based) of ``name``: ``<Name>/<Name>_NNNN.jpg``."""
    return Path(lfw_dir) / name / f"{name}_{number:04d}.jpg"


@dataclass(frozen=True)
class VerificationSet:
    """The images a pairs file names (distinct, in order of first mention) and its pairs as indices into them."""

    images: list[Path]
    first: np.ndarray  # (P,) int64
    second: np.ndarray  # (P,) int64
    same: np.ndarray  # (P,) bool
    folds: np.ndarray  # (P,) int64, 0-based
    protocol: str  # where the folds come from, for the report


def index_pairs(pairs_file: PairsFile, lfw_dir: str | Path, num_folds: int = DEFAULT_FOLDS) -> VerificationSet:
    """The pairs of ``pairs_file`` as indices into the distinct images under ``lfw_dir``.

    A single-count file's list is cut into ``num_folds`` folds (``split_into_folds``). Raises DatasetError naming
    the first missing image and the line that names it.
    """
    index: dict[tuple[str, int], int] = {}
    images: list[Path] = []
    pairs_indices = []
    for pair in pairs_file.pairs:
        ends = []
        for key in (pair.first, pair.second):
            if key not in index:
                path = lfw_image_path(lfw_dir, *key)
                if not path.is_file():
                    raise DatasetError(f"{pairs_file.path}:{pair.line}: image {path} not found")
                index[key] = len(images)
                images.append(path)
            ends.append(index[key])
        pairs_indices.append(ends)
    table = np.asarray(pairs_indices, dtype=np.int64).reshape(-1, 2)
    same = np.asarray([pair.same for pair in pairs_file.pairs], dtype=bool)
    if pairs_file.has_folds:
        folds = np.asarray([pair.fold for pair in pairs_file.pairs], dtype=np.int64)
        protocol = f"{pairs_file.num_folds}-fold cross-validation over the folds of {pairs_file.path.name}"
    else:
        folds = split_into_folds(same, num_folds)
        protocol = (
            f"{pairs_file.path.name} holds one list of {len(same)} pairs: split into {len(np.unique(folds))} folds "
            "in file order (LFW's standard protocol uses View 2's 10 folds)"
        )
    return VerificationSet(images, table[:, 0], table[:, 1], same, folds, protocol)


def read_identity_folders(root: str | Path) -> tuple[list[tuple[Path, int]], list[str]]:
    """((image, label) samples, identity names) of ``root/<Name>/*``: labels follow the sorted names of the
    folders that hold images (searched recursively)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"identity folder not found: {root} (expected {root}/<Name>/<image>)")
    samples: list[tuple[Path, int]] = []
    names: list[str] = []
    for folder in sorted(entry.name for entry in os.scandir(root) if entry.is_dir()):
        images = find_images(root / folder)
        if images:
            samples.extend((path, len(names)) for path in images)
            names.append(folder)
    if not samples:
        raise DatasetError(f"no images under {root} (expected {root}/<Name>/<image>)")
    return samples, names


# ---------------------------------------------------------------------------------------------------------------
# Transforms and datasets


def _central_square(image: np.ndarray, fraction: float) -> np.ndarray:
    """The central square of side ``fraction`` times the shorter side (LFW's face sits in the middle)."""
    height, width = image.shape[:2]
    side = max(1, int(round(min(height, width) * fraction)))
    top, left = (height - side) // 2, (width - side) // 2
    return image[top : top + side, left : left + side]


class FaceTransform(AlbumentationsTransform):
    """(H, W, 3) uint8 RGB -> float32 (3, S, S) in [0, 1]: the central square of ``crop_fraction`` of the shorter
    side, then the albumentations pipeline (the model normalises)."""

    def __init__(self, compose: A.Compose, crop_fraction: float = 1.0) -> None:
        super().__init__(compose)
        if not 0.0 < crop_fraction <= 1.0:
            raise ConfigError(f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        self.crop_fraction = crop_fraction

    def __call__(self, image: np.ndarray) -> Tensor:
        return image_to_tensor(self.compose(image=_central_square(image, self.crop_fraction))["image"])


def build_train_transform(
    image_size: int, crop_fraction: float = 1.0, crop_min_scale: float = 0.6, seed: int | None = None
) -> FaceTransform:
    """Light augmentation: a random crop of ``crop_min_scale``..1 of the face square's area (aspect 0.85..1.18)
    resized to ``image_size``, and a horizontal flip."""
    if not 0.0 < crop_min_scale <= 1.0:
        raise ConfigError(f"data.crop_min_scale must be in (0, 1], got {crop_min_scale}")
    steps = [
        A.RandomResizedCrop(size=(image_size, image_size), scale=(crop_min_scale, 1.0), ratio=(0.85, 1.18)),
        A.HorizontalFlip(p=0.5),
    ]
    return FaceTransform(A.Compose(steps, seed=seed), crop_fraction)


def build_eval_transform(image_size: int, crop_fraction: float = 1.0) -> FaceTransform:
    """The face square resized to ``image_size``."""
    return FaceTransform(A.Compose([A.Resize(image_size, image_size)]), crop_fraction)


class FaceDataset(Dataset):
    """Item ``i``: (image (3, S, S), label, i); None when ``skip_unreadable`` and the file cannot be decoded or has
    more than ``max_pixels`` pixels (a warning names it). Without ``skip_unreadable`` (verification) such a file
    raises ImageLoadError."""

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: FaceTransform,
        skip_unreadable: bool = False,
        max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int] | None:
        path, label = self.samples[index]
        if self.skip_unreadable:
            image = try_load_rgb(path, max_pixels=self.max_pixels)
        else:
            image = load_rgb(path, max_pixels=self.max_pixels)
        if image is None:
            return None
        return self.transform(image), label, index


# ---------------------------------------------------------------------------------------------------------------
# The data module


_LAYOUT = "train/<Name>/<image> (identities to train on), lfw/<Name>/<image> and pairs.txt"


class FaceEmbeddingDataModule(TaskDataModule):
    """Identity folders to train on and LFW pairs to verify (the ``data:`` config section); batches are stacked
    ``Batch`` es of float32 (B, 3, S, S) images in [0, 1] and int64 identity labels (0 for verification images).

    Args:
        root: the dataset folder, holding ``lfw/``, ``pairs.txt`` and usually ``train/``.
        train_root: the identity folders to train on; default ``root/train``, or ``root/lfw`` (with a warning that
            the evaluation then measures memory of seen people, not verification) when that does not exist.
        pairs: the pairs file; default ``root/pairs.txt``; a relative path is taken from ``root``.
        image_size: the square input side.
        batch_size: images per step and device.
        num_workers: DataLoader worker processes.
        augment: "light" (random crop of ``crop_min_scale``..1 of the area, horizontal flip) or "none".
        crop_min_scale: the smallest random crop, as a fraction of the face square's area.
        crop_fraction: every image is first cut to its central square of this fraction of the shorter side (LFW's
            250x250 pictures hold the face in about the middle 150 pixels: 0.6); 1 keeps the whole square.
        flip_eval: verification embeds each image and its mirror image and averages the two.
        shared: the settings of every task, ``TaskDataModule``'s: ``val_batch_size``, ``mean``, ``std``,
            ``label_fraction``, ``label_seed``, ``max_bad_fraction``, ``min_seen_for_bad_fraction``,
            ``max_image_pixels``.
    """

    collate_fn = staticmethod(collate_stacked)

    def __init__(
        self,
        root: str,
        train_root: str | None = None,
        pairs: str | None = None,
        image_size: int = 160,
        batch_size: int = 64,
        num_workers: int = 4,
        augment: Literal["light", "none"] = "light",
        crop_min_scale: float = 0.6,
        crop_fraction: float = 1.0,
        flip_eval: bool = False,
        **shared: Any,
    ) -> None:
        super().__init__(batch_size, num_workers, **shared)
        if augment not in ("light", "none"):
            raise ConfigError(f"data.augment must be 'light' or 'none', got {augment!r}")
        if not 0.0 < crop_fraction <= 1.0:
            raise ConfigError(f"data.crop_fraction must be in (0, 1], got {crop_fraction}")
        self.root = Path(root)
        self.train_root = Path(train_root) if train_root is not None else None
        self.pairs_path = self.root / pairs if pairs is not None else self.root / "pairs.txt"
        self.image_size = image_size
        self.augment = augment
        self.crop_min_scale = crop_min_scale
        self.crop_fraction = crop_fraction
        self.flip_eval = flip_eval

    @staticmethod
    def unlabeled_target() -> int:
        """The target of a training image without an identity: the loss ignores it (only a teacher's embedding
        supervises it)."""
        return UNLABELED_TARGET

    def _resolved_train_root(self) -> Path:
        if self.train_root is not None:
            return self.train_root
        if (self.root / "train").is_dir():
            return self.root / "train"
        lfw = self.root / "lfw"
        rank_zero_warn(
            f"{self.root / 'train'} not found: training on the LFW people of {lfw}, the ones the pairs evaluate, "
            "so the LFW accuracy measures memory of seen people, not verification of new ones; set data.train_root "
            "to identity folders (CASIA-WebFace, VGGFace2) for a real evaluation"
        )
        return lfw

    @cached_property
    def _training(self) -> tuple[list[tuple[Path, int]], list[str]]:
        check_data_root(self.root, _LAYOUT)
        return read_identity_folders(self._resolved_train_root())

    @cached_property
    def verification(self) -> VerificationSet:
        """The LFW images and pairs (indices into the images) that validation embeds and compares."""
        check_data_root(self.root, _LAYOUT)
        return index_pairs(read_pairs(self.pairs_path), self.root / "lfw")

    def data_info(self) -> dict[str, Any]:
        """The training identities (their number: the classifier's width), the split sizes, the verification pairs,
        the preprocessing and the input normalisation.

        ``pairs`` holds one string "first second same fold" per pair, in file order: the indices of its two
        verification images, 1 for the same person or 0, and its 0-based fold (a row each in the checkpoint's
        hyper-parameters, rather than a block of five lines as a list of integers would take).
        """
        samples, names = self._training
        verification = self.verification
        rows = zip(verification.first, verification.second, verification.same, verification.folds)
        return {
            "num_classes": len(names),
            "train_identities": len(names),
            "train_size": len(samples),
            "val_size": len(verification.images),
            "pairs": [f"{first} {second} {int(same)} {fold}" for first, second, same, fold in rows],
            "protocol": verification.protocol,
            "image_size": self.image_size,
            "crop_fraction": self.crop_fraction,
            "flip_eval": self.flip_eval,
            "mean": self.mean,
            "std": self.std,
        }

    def setup(self, stage: str | None = None) -> None:
        """Build the training set for ``fit`` (its augmentation seeded from torch's generator) and the verification
        images for every stage, once each."""
        if stage in (None, "fit") and self.train_dataset is None:
            if self.augment == "light":
                transform = build_train_transform(
                    self.image_size, self.crop_fraction, self.crop_min_scale, seed=draw_seed()
                )
            else:
                transform = build_eval_transform(self.image_size, self.crop_fraction)
            self.train_dataset = FaceDataset(
                self._training[0], transform, skip_unreadable=True, max_pixels=self.max_image_pixels
            )
        if self.val_dataset is None:
            images = [(path, 0) for path in self.verification.images]
            transform = build_eval_transform(self.image_size, self.crop_fraction)
            self.val_dataset = FaceDataset(images, transform, max_pixels=self.max_image_pixels)
