"""The synthetic LFW set: LFW's file layout and pairs file, people never shared between training and evaluation or
between folds, names with LFW's marks, and the same files from the same seed."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tasks.face_embedding.data import lfw_image_path, read_pairs
from tasks.face_embedding.synthetic import draw_face, make_synthetic_lfw, person_names, random_look

from .conftest import FOLDS, PAIRS_PER_FOLD, TRAIN_IDENTITIES, TRAIN_PICTURES


def test_pictures_follow_lfws_names_in_one_folder_per_person(lfw_root: Path) -> None:
    for split in ("train", "lfw"):
        for path in (lfw_root / split).rglob("*"):
            if path.is_file():
                assert re.fullmatch(re.escape(path.parent.name) + r"_\d{4}\.jpg", path.name), path
    train = sorted((lfw_root / "train").iterdir())
    assert len(train) == TRAIN_IDENTITIES
    assert all(len(list(folder.iterdir())) == TRAIN_PICTURES for folder in train)


def test_training_and_lfw_people_are_different_people(lfw_root: Path) -> None:
    train = {path.name for path in (lfw_root / "train").iterdir()}
    lfw = {path.name for path in (lfw_root / "lfw").iterdir()}

    assert train and lfw and not train & lfw


def test_pairs_have_view2s_shape_and_each_person_sits_in_one_fold(lfw_root: Path) -> None:
    parsed = read_pairs(lfw_root / "pairs.txt")

    assert (parsed.num_folds, parsed.pairs_per_fold) == (FOLDS, PAIRS_PER_FOLD)
    folds_of: dict[str, set[int]] = {}
    for fold in range(FOLDS):
        rows = [pair for pair in parsed.pairs if pair.fold == fold]
        assert [pair.same for pair in rows] == [True] * PAIRS_PER_FOLD + [False] * PAIRS_PER_FOLD
        assert len({(pair.first, pair.second) for pair in rows}) == len(rows)
        for pair in rows:
            assert lfw_image_path(lfw_root / "lfw", *pair.first).is_file()
            assert lfw_image_path(lfw_root / "lfw", *pair.second).is_file()
            folds_of.setdefault(pair.first[0], set()).add(fold)
            folds_of.setdefault(pair.second[0], set()).add(fold)
    assert all(len(folds) == 1 for folds in folds_of.values())


def test_names_carry_lfws_underscores_and_hyphens() -> None:
    names = person_names(300, np.random.default_rng(0))

    assert len(set(names)) == 300
    assert any("-" in name for name in names) and any(name.count("_") >= 2 for name in names)
    assert all(re.fullmatch(r"[A-Za-z_-]+", name) for name in names)


def test_a_persons_pictures_differ_from_each_other() -> None:
    rng = np.random.default_rng(0)
    look = random_look(rng)

    first, second = draw_face(look, rng, 48), draw_face(look, rng, 48)

    assert first.shape == second.shape == (48, 48, 3) and first.dtype == np.uint8
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 5


def _tiny(out: Path, seed: int) -> Path:
    return make_synthetic_lfw(
        out,
        seed,
        num_train_identities=2,
        images_per_train_identity=2,
        num_lfw_people=4,
        num_folds=2,
        pairs_per_fold=1,
        image_size=32,
    )


def test_the_same_seed_writes_the_same_files(tmp_path: Path) -> None:
    first, second, other = _tiny(tmp_path / "a", 3), _tiny(tmp_path / "b", 3), _tiny(tmp_path / "c", 4)

    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in files)
    assert (first / "pairs.txt").read_text() != (other / "pairs.txt").read_text()
