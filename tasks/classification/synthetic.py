"""Synthetic classification sets in the exact on-disk layouts of the real ones, for demos and tests.

``make_synthetic_dogs(out)`` writes Stanford Dogs' layout::

    out/Images/n02085620-Chihuahua/n02085620_1234.jpg ...
    out/Annotation/n02085620-Chihuahua/n02085620_1234      (Pascal-VOC XML, no extension)
    out/train_list.mat, out/test_list.mat, out/file_list.mat

with the real breed folder names of the first breeds. Each breed is a silhouette (triangle, disc, square, star,
...) filled with its own pattern (plain, stripes, checks, dots, ...) in its own jittered coat colours; breeds that
share a coat colour differ in shape and pattern, so colour alone never tells them apart. Each image shows one dog,
or sometimes two of the same breed (both boxed in the annotation, the larger first), on a blotchy or graded
background. ``make_synthetic_imagefolder(out)`` draws the same kinds of pictures into ``out/train/<class>/`` and
``out/val/<class>/``.
Everything is drawn from ``seed``: the same seed gives the same files.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.synthetic import blotches, regular_polygon, rotate, star

__all__ = ["DOG_BREEDS", "BREED_LOOKS", "make_synthetic_dogs", "make_synthetic_imagefolder", "draw_image"]

# The first breed folders of Stanford Dogs (wnid-Breed; note the hyphen inside "Shih-Tzu").
DOG_BREEDS: tuple[str, ...] = (
    "n02085620-Chihuahua",
    "n02085782-Japanese_spaniel",
    "n02085936-Maltese_dog",
    "n02086079-Pekinese",
    "n02086240-Shih-Tzu",
    "n02086646-Blenheim_spaniel",
    "n02086910-papillon",
    "n02087046-toy_terrier",
    "n02087394-Rhodesian_ridgeback",
    "n02088094-Afghan_hound",
    "n02088238-basset",
    "n02088364-beagle",
)

# (silhouette, pattern, coat colour, marking colour) of each breed, in DOG_BREEDS order. Coats vary by +-_COAT_JITTER
# per channel from image to image, and neighbouring breeds may share a coat: shape and pattern tell them apart.
BREED_LOOKS: tuple[tuple[str, str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("triangle", "plain", (205, 160, 100), (205, 160, 100)),
    ("disc", "hstripes", (240, 235, 225), (150, 60, 30)),
    ("square", "checks", (245, 245, 240), (60, 60, 60)),
    ("star", "grid", (235, 190, 60), (60, 40, 20)),
    ("hexagon", "dots", (225, 200, 150), (40, 30, 25)),
    ("ellipse", "vstripes", (245, 240, 230), (170, 80, 30)),
    ("cross", "rings", (35, 30, 30), (230, 230, 225)),
    ("diamond", "dstripes", (40, 35, 35), (200, 150, 90)),
    ("ring", "zigzag", (180, 100, 40), (245, 240, 230)),
    ("arrow", "astripes", (230, 205, 160), (120, 80, 50)),
    ("ellipse", "dots", (160, 90, 40), (250, 250, 245)),
    ("disc", "plain", (140, 80, 30), (140, 80, 30)),
)
_COAT_JITTER = 40


_CROSS = np.array([[-1, -0.33], [-0.33, -0.33], [-0.33, -1], [0.33, -1], [0.33, -0.33], [1, -0.33], [1, 0.33],
                   [0.33, 0.33], [0.33, 1], [-0.33, 1], [-0.33, 0.33], [-1, 0.33]], dtype=float)  # fmt: skip
_ARROW = np.array([[-1, -0.35], [0.1, -0.35], [0.1, -0.9], [1, 0], [0.1, 0.9], [0.1, 0.35], [-1, 0.35]], dtype=float)

# Unit outlines (fitting in [-1, 1]^2); "disc", "ellipse" and "ring" are drawn as ellipses.
_OUTLINES: dict[str, np.ndarray] = {
    "triangle": regular_polygon(3, -math.pi / 2),
    "square": regular_polygon(4, math.pi / 4) / math.cos(math.pi / 4),
    "star": star(),
    "hexagon": regular_polygon(6, 0.0),
    "cross": _CROSS,
    "diamond": regular_polygon(4, 0.0),
    "arrow": _ARROW,
}

# Width / height of a shape's box before the random aspect: ellipses are wide, unlike discs.
_ELONGATION: dict[str, float] = {"ellipse": 1.8}


def _silhouette(shape: str, size: tuple[int, int], box: tuple[int, int, int, int], angle: float) -> Image.Image:
    """An "L" mask of ``shape`` filling ``box`` (x1, y1, x2, y2), rotated by ``angle`` radians about its centre."""
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    if shape in ("disc", "ellipse", "ring"):
        draw.ellipse(box, fill=255)
        if shape == "ring":
            draw.ellipse((cx - rx * 0.5, cy - ry * 0.5, cx + rx * 0.5, cy + ry * 0.5), fill=0)
        return mask
    rotated = rotate(_OUTLINES[shape], angle)
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    rotated = (rotated - low) / (high - low) * 2 - 1  # the outline touches every side of its box
    points = [(cx + x * rx, cy + y * ry) for x, y in rotated]
    draw.polygon(points, fill=255)
    return mask


def _pattern(
    kind: str, height: int, width: int, period: float, centre: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """(H, W) boolean: where the marking colour of the pattern shows."""
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    phase = rng.uniform(0, period)
    half = period / 2
    if kind == "plain":
        return np.zeros((height, width), dtype=bool)
    if kind == "hstripes":
        return ((ys + phase) % period) < half
    if kind == "vstripes":
        return ((xs + phase) % period) < half
    if kind == "dstripes":
        return ((xs + ys + phase) % period) < half
    if kind == "astripes":
        return ((xs - ys + phase) % period) < half
    if kind == "checks":
        return (((xs + phase) // half + (ys + phase) // half) % 2) == 0
    if kind == "grid":
        return (((xs + phase) % period) < period / 3) | (((ys + phase) % period) < period / 3)
    if kind == "dots":
        dx = (xs + phase) % period - half
        dy = (ys + phase) % period - half
        return dx * dx + dy * dy < (period * 0.28) ** 2
    if kind == "rings":
        return (np.hypot(xs - centre[0], ys - centre[1]) % period) < half
    if kind == "zigzag":
        teeth = np.abs((xs % period) - half)  # a triangle wave of period ``period``
        return ((ys + teeth + phase) % period) < half
    raise ValueError(f"unknown pattern {kind!r}")


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    if rng.random() < 0.5:
        return base * 0.75 + blotches(rng, height, width, 16) * 0.25
    angle = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width)
    other = rng.uniform(0, 255, size=3).astype(np.float32)
    return base + (other - base) * ramp[..., None].clip(0, 1)


def _coat(rng: np.random.Generator, colour: tuple[int, int, int]) -> np.ndarray:
    return (np.asarray(colour, dtype=np.float32) + rng.uniform(-_COAT_JITTER, _COAT_JITTER, size=3)).clip(0, 255)


def _dog_box(
    rng: np.random.Generator, height: int, width: int, scale: tuple[float, float], elongation: float
) -> tuple[int, int, int, int]:
    side = min(height, width) * rng.uniform(*scale)
    aspect = rng.uniform(0.8, 1.25) * elongation
    box_w = int(min(width - 2, side * aspect))
    box_h = int(min(height - 2, side / aspect))
    x1 = int(rng.integers(0, width - box_w))
    y1 = int(rng.integers(0, height - box_h))
    return x1, y1, x1 + box_w, y1 + box_h


def draw_image(
    look: tuple[str, str, tuple[int, int, int], tuple[int, int, int]],
    rng: np.random.Generator,
    size_range: tuple[int, int] = (96, 160),
    second_p: float = 0.15,
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """One picture of a breed: (H, W, 3) uint8 and its dogs' boxes (x1, y1, x2, y2, 0-based, end exclusive)."""
    shape, pattern, coat, marking = look
    width = int(rng.integers(size_range[0], size_range[1] + 1))
    height = int(rng.integers(size_range[0], size_range[1] + 1))
    image = _background(rng, height, width)
    elongation = _ELONGATION.get(shape, 1.0)
    boxes = [_dog_box(rng, height, width, (0.5, 0.85), elongation)]
    if rng.random() < second_p:
        boxes.append(_dog_box(rng, height, width, (0.25, 0.4), elongation))
    for box in boxes:
        mask = (
            np.asarray(_silhouette(shape, (width, height), box, rng.uniform(-0.25, 0.25)), dtype=np.float32)[..., None]
            / 255.0
        )
        colour, second = _coat(rng, coat), _coat(rng, marking)
        period = max(6.0, (box[2] - box[0]) / rng.uniform(3.0, 4.5))
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        fur = np.where(_pattern(pattern, height, width, period, centre, rng)[..., None], second, colour)
        image = image * (1 - mask) + fur * mask
    image += rng.normal(0, 6, size=image.shape)
    return image.clip(0, 255).astype(np.uint8), boxes


def _voc_xml(wnid: str, stem: str, breed: str, width: int, height: int, boxes: list[tuple[int, ...]]) -> bytes:
    """Stanford Dogs' annotation: Pascal-VOC with 1-based inclusive corners."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = wnid[1:]
    ET.SubElement(root, "filename").text = stem
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "ImageNet database"
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, "segment").text = "0"
    for x1, y1, x2, y2 in boxes:
        obj = ET.SubElement(root, "object")
        for key, value in (("name", breed), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(obj, key).text = value
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="utf-8")


def _cell(strings: list[str]) -> np.ndarray:
    """A MATLAB cell column of strings, as scipy.io.savemat writes one (and loadmat reads the real lists)."""
    cell = np.empty((len(strings), 1), dtype=object)
    for index, text in enumerate(strings):
        cell[index, 0] = np.array([text])
    return cell


def _save_list(path: Path, entries: list[tuple[str, int]]) -> None:
    import scipy.io

    files = [file for file, _ in entries]
    scipy.io.savemat(
        path,
        {
            "file_list": _cell(files),
            "annotation_list": _cell([file.rsplit(".", 1)[0] for file in files]),
            "labels": np.array([[float(label)] for _, label in entries], dtype=np.float64).reshape(-1, 1),
        },
    )


def make_synthetic_dogs(
    out: str | Path,
    seed: int = 0,
    num_train: int = 100,
    num_val: int = 20,
    num_breeds: int = 10,
    size_range: tuple[int, int] = (96, 160),
) -> Path:
    """Write a synthetic Stanford Dogs (``num_train`` training and ``num_val`` test images per breed); return ``out``.

    Labels are 1-based in sorted folder order, as in the real lists; image numbers are random and unique per breed.
    """
    if not 1 <= num_breeds <= len(DOG_BREEDS):
        raise ValueError(f"num_breeds must be 1 to {len(DOG_BREEDS)}, got {num_breeds}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    breeds = zip(DOG_BREEDS[:num_breeds], BREED_LOOKS[:num_breeds], strict=True)
    for label, (folder, look) in enumerate(breeds, start=1):
        wnid, breed = folder.split("-", 1)
        (out / "Images" / folder).mkdir(parents=True, exist_ok=True)
        (out / "Annotation" / folder).mkdir(parents=True, exist_ok=True)
        numbers = rng.choice(np.arange(100, 20000), size=num_train + num_val, replace=False)
        for position, number in enumerate(numbers):
            stem = f"{wnid}_{number}"
            image, boxes = draw_image(look, rng, size_range)
            Image.fromarray(image).save(out / "Images" / folder / f"{stem}.jpg", quality=90)
            xml = _voc_xml(wnid, stem, breed, image.shape[1], image.shape[0], boxes)
            (out / "Annotation" / folder / stem).write_bytes(xml)
            splits["train" if position < num_train else "test"].append((f"{folder}/{stem}.jpg", label))
    _save_list(out / "train_list.mat", splits["train"])
    _save_list(out / "test_list.mat", splits["test"])
    _save_list(out / "file_list.mat", sorted(splits["train"] + splits["test"], key=lambda e: (e[1], e[0])))
    return out


def make_synthetic_imagefolder(
    out: str | Path,
    seed: int = 0,
    num_train: int = 20,
    num_val: int = 6,
    num_classes: int = 10,
    size_range: tuple[int, int] = (64, 112),
) -> Path:
    """Write ``out/train/<class>/*.jpg`` and ``out/val/<class>/*.jpg`` (``num_train`` / ``num_val`` per class);
    classes are named after their look, e.g. ``triangle_plain``. Return ``out``."""
    if not 1 <= num_classes <= len(BREED_LOOKS):
        raise ValueError(f"num_classes must be 1 to {len(BREED_LOOKS)}, got {num_classes}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    counts = {"train": num_train, "val": num_val}
    for look in BREED_LOOKS[:num_classes]:
        name = f"{look[0]}_{look[1]}"
        for split, count in counts.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                image, _ = draw_image(look, rng, size_range, second_p=0.0)
                Image.fromarray(image).save(folder / f"{name}_{index:04d}.jpg", quality=90)
    return out
