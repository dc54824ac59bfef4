"""The synthetic CelebA: the release's exact file layout, CelebA's attribute names, each attribute visible in the
pixels, and the same files from the same seed."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.face_attributes.data import read_celeba
from tasks.face_attributes.synthetic import draw_attributes, draw_face, make_synthetic_celeba

from .conftest import NUM_TEST, NUM_TRAIN, NUM_VAL

# The 40 attribute names of list_attr_celeba.txt, in the release's order.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair Blond_Hair "
    "Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup High_Cheekbones "
    "Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline "
    "Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()


def _names(root: Path) -> list[str]:
    return (root / "list_attr_celeba.txt").read_text().splitlines()[1].split()


def test_the_files_follow_the_release_layout_line_by_line(celeba_root: Path) -> None:
    total = NUM_TRAIN + NUM_VAL + NUM_TEST
    attribute_lines = (celeba_root / "list_attr_celeba.txt").read_text().splitlines()
    partition_lines = (celeba_root / "list_eval_partition.txt").read_text().splitlines()

    assert attribute_lines[0] == str(total)
    assert attribute_lines[1].endswith(" ") and not attribute_lines[1].startswith(" ")
    expected_files = [f"{number:06d}.jpg" for number in range(1, total + 1)]
    assert [line.split()[0] for line in attribute_lines[2:]] == expected_files
    count = len(_names(celeba_root))
    row = re.compile(rf"^\d{{6}}\.jpg(?: -1|  1){{{count}}}$")
    assert all(row.match(line) for line in attribute_lines[2:])
    assert partition_lines == [
        f"{name} {split}" for name, split in zip(expected_files, [0] * NUM_TRAIN + [1] * NUM_VAL + [2] * NUM_TEST)
    ]
    assert sorted(p.name for p in (celeba_root / "img_align_celeba").iterdir()) == expected_files


def test_images_have_the_requested_size_and_the_reader_accepts_the_set(celeba_root: Path) -> None:
    train, val, names = read_celeba(celeba_root)

    assert (len(train), len(val)) == (NUM_TRAIN, NUM_VAL) and names == _names(celeba_root)
    assert Image.open(train.paths[0]).size == (40, 48)


def test_at_least_eight_attributes_all_with_celeba_names_in_release_order() -> None:
    names = list(draw_attributes(np.random.default_rng(0)))

    assert len(names) >= 8 and set(names) <= set(CELEBA_ATTRIBUTES)
    assert names == sorted(names, key=CELEBA_ATTRIBUTES.index)


def test_attributes_come_at_varied_rates_some_rare_and_one_hair_colour_at_most() -> None:
    rng = np.random.default_rng(1)
    draws = [draw_attributes(rng) for _ in range(4000)]
    rates = {name: np.mean([d[name] for d in draws]) for name in draws[0]}

    assert min(rates.values()) < 0.08 and max(rates.values()) > 0.4
    assert all(rate > 0.01 for rate in rates.values())
    hair = [name for name in rates if name.endswith("_Hair")]
    assert max(sum(d[name] for name in hair) for d in draws) == 1


def test_every_attribute_changes_the_picture_of_an_otherwise_equal_face() -> None:
    base = {name: False for name in draw_attributes(np.random.default_rng(0))}
    plain = draw_face(base, np.random.default_rng(7)).astype(np.int16)

    assert np.array_equal(plain, draw_face(base, np.random.default_rng(7)))
    for name in base:
        changed = draw_face({**base, name: True}, np.random.default_rng(7)).astype(np.int16)
        moved = np.abs(changed - plain).sum(axis=2) > 60  # summed over R, G, B
        assert moved.sum() >= 20, f"{name} changes only {moved.sum()} pixels"


def test_nuisances_differ_between_faces_of_equal_attributes() -> None:
    rng = np.random.default_rng(3)
    attributes = draw_attributes(rng)

    first, second = draw_face(attributes, rng), draw_face(attributes, rng)

    assert np.abs(first.astype(np.int16) - second).mean() > 10


def _digest(root: Path) -> str:
    files = [root / "list_attr_celeba.txt", root / "list_eval_partition.txt"]
    files += sorted((root / "img_align_celeba").iterdir())
    return hashlib.sha256(b"".join(path.read_bytes() for path in files)).hexdigest()


def test_the_same_seed_writes_the_same_files_and_another_seed_others(tmp_path: Path) -> None:
    kwargs = {"num_train": 3, "num_val": 2, "num_test": 1, "size": (32, 40)}
    first = make_synthetic_celeba(tmp_path / "a", seed=5, **kwargs)
    again = make_synthetic_celeba(tmp_path / "b", seed=5, **kwargs)
    other = make_synthetic_celeba(tmp_path / "c", seed=6, **kwargs)

    assert _digest(first) == _digest(again) != _digest(other)
