"""A synthetic CelebA in the exact on-disk layout of the release, for demos and tests.

``make_synthetic_celeba(out)`` writes::

    out/img_align_celeba/000001.jpg ...          numbered on through the training, validation and test images
    out/list_attr_celeba.txt                      the image count, the attribute names (with CelebA's trailing
                                                  space), then "000001.jpg -1  1 ..." (a 1 padded to " 1")
    out/list_eval_partition.txt                   "000001.jpg 0" (0 train, 1 val, 2 test)

Each image is a drawn face whose look follows its attributes, which carry CelebA's own names (``ATTRIBUTES``): hair
length and jaw (Male), hair colour (Black / Blond / Brown / Gray_Hair, one colour per face, or auburn for none), a
fringe (Bangs), a hat, glasses, eyebrows, eyes, mouth, lips, cheeks, beard and skin. Attributes are drawn
independently of each other at CelebA-like rates, some rare (Gray_Hair, Mustache, Pale_Skin: 4%), on faces that
vary in position, size, tilt, skin tone, clothing, lighting and background. Everything is drawn from ``seed``: the
same seed gives the same files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.synthetic import blotches

__all__ = ["ATTRIBUTES", "HAIR_COLOURS", "make_synthetic_celeba", "draw_attributes", "draw_face"]

# CelebA attribute names (a subset, in the release's alphabetical order) and how often each is drawn; the hair
# colours are one draw among them (HAIR_COLOURS), so their rates are those of that draw.
ATTRIBUTES: dict[str, float] = {
    "Bangs": 0.15,
    "Black_Hair": 0.24,
    "Blond_Hair": 0.15,
    "Brown_Hair": 0.20,
    "Bushy_Eyebrows": 0.14,
    "Eyeglasses": 0.07,
    "Goatee": 0.06,
    "Gray_Hair": 0.04,
    "Male": 0.42,
    "Mouth_Slightly_Open": 0.48,
    "Mustache": 0.04,
    "Narrow_Eyes": 0.12,
    "Pale_Skin": 0.04,
    "Rosy_Cheeks": 0.07,
    "Smiling": 0.48,
    "Wearing_Hat": 0.05,
    "Wearing_Lipstick": 0.47,
}

# Hair colour attribute -> RGB; a face with none of them has auburn hair.
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "Black_Hair": (25, 22, 24),
    "Blond_Hair": (228, 196, 112),
    "Brown_Hair": (112, 70, 38),
    "Gray_Hair": (168, 168, 172),
}
_AUBURN = (186, 70, 28)
_PALE = (250, 238, 232)
_DARKEST_SKIN, _LIGHTEST_SKIN = (108, 70, 48), (214, 168, 138)
_LIPSTICK = (196, 24, 56)
_ROSY = (236, 92, 112)

RGB = tuple[int, int, int]


def draw_attributes(rng: np.random.Generator) -> dict[str, bool]:
    """One face's attributes: each drawn independently at its ``ATTRIBUTES`` rate, hair colour as one draw."""
    hair_names = list(HAIR_COLOURS)
    hair_rates = [ATTRIBUTES[name] for name in hair_names]
    hair = rng.choice(len(hair_names) + 1, p=[*hair_rates, 1.0 - sum(hair_rates)])
    attributes = {name: bool(rng.random() < rate) for name, rate in ATTRIBUTES.items() if name not in HAIR_COLOURS}
    attributes.update({name: index == hair for index, name in enumerate(hair_names)})
    return {name: attributes[name] for name in ATTRIBUTES}


def _jitter(rng: np.random.Generator, colour: tuple[float, ...], amount: float) -> RGB:
    values = np.asarray(colour, dtype=np.float64) + rng.uniform(-amount, amount, size=3)
    return tuple(int(v) for v in values.clip(0, 255))  # type: ignore[return-value]


def _random_colour(rng: np.random.Generator) -> RGB:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))  # type: ignore[return-value]


def _mix(a: tuple[float, ...], b: tuple[float, ...], t: float) -> RGB:
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32: a flat colour, blotches, or a gradient between two colours."""
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base, (height, width, 3)).copy()
    if kind == 1:
        return base * 0.6 + blotches(rng, height, width, int(rng.integers(10, 30))) * 0.4
    angle = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / max(height, width)
    other = rng.uniform(0, 255, size=3).astype(np.float32)
    return base + (other - base) * ramp[..., None].clip(0, 1)


class _Face:
    """Face coordinates: centre (cx, cy), half width rx and half height ry; ``box`` maps face-relative offsets
    (in units of rx horizontally, ry vertically) to a pixel box."""

    def __init__(self, cx: float, cy: float, rx: float, ry: float) -> None:
        self.cx, self.cy, self.rx, self.ry = cx, cy, rx, ry

    def point(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self.rx, self.cy + v * self.ry

    def box(self, u1: float, v1: float, u2: float, v2: float) -> tuple[float, float, float, float]:
        return (*self.point(u1, v1), *self.point(u2, v2))

    def width(self, fraction: float) -> int:
        """A line width of ``fraction`` of the face height, at least 1 pixel."""
        return max(1, int(round(fraction * self.ry)))


def _draw_hair_behind(draw: ImageDraw.ImageDraw, face: _Face, male: bool, hair: RGB) -> None:
    if male:  # short: a cap just larger than the head
        draw.ellipse(face.box(-1.1, -1.12, 1.1, 0.3), fill=hair)
    else:  # long: falls beside the face to the shoulders
        draw.rounded_rectangle(face.box(-1.38, -1.15, 1.38, 1.45), radius=1.0 * face.rx, fill=hair)


def _draw_head(draw: ImageDraw.ImageDraw, face: _Face, male: bool, skin: RGB, clothes: RGB) -> None:
    draw.ellipse(face.box(-1.5, 1.25, 1.5, 2.6), fill=clothes)  # shoulders
    draw.rectangle(face.box(-0.42, 0.5, 0.42, 1.4), fill=_mix(skin, (0, 0, 0), 0.15))  # neck
    if male:  # a broader face with a square jaw
        draw.ellipse(face.box(-1.05, -1.0, 1.05, 0.9), fill=skin)
        draw.rounded_rectangle(face.box(-0.98, -0.1, 0.98, 1.0), radius=0.45 * face.rx, fill=skin)
    else:
        draw.ellipse(face.box(-0.92, -1.0, 0.92, 1.0), fill=skin)


def _draw_hair_on_top(draw: ImageDraw.ImageDraw, face: _Face, bangs: bool, hair: RGB) -> None:
    draw.chord(face.box(-1.06, -1.12, 1.06, -0.18), 180, 360, fill=hair)  # down to the hairline
    if bangs:  # a fringe with a ragged edge over the forehead
        x_positions = np.linspace(-0.9, 0.9, 7)
        edge = [face.point(u, -0.3 if i % 2 else -0.4) for i, u in enumerate(x_positions)]
        draw.polygon([face.point(-0.92, -0.7), face.point(0.92, -0.7), *edge[::-1]], fill=hair)


def _draw_eyes(draw: ImageDraw.ImageDraw, face: _Face, attributes: Mapping[str, bool], brow: RGB, frame: RGB) -> None:
    glasses = attributes["Eyeglasses"]
    for side in (-1, 1):
        u = 0.4 * side
        lens = face.box(u - 0.34, -0.27, u + 0.34, 0.12)
        if glasses:  # tinted lenses under the eye
            draw.rectangle(lens, fill=_mix(frame, (190, 215, 245), 0.7))
        brow_width = face.width(0.15 if attributes["Bushy_Eyebrows"] else 0.04)
        draw.line([face.point(u - 0.24, -0.3), face.point(u + 0.24, -0.33)], fill=brow, width=brow_width)
        if attributes["Narrow_Eyes"]:
            slit = [face.point(u - 0.2, -0.08), face.point(u + 0.2, -0.08)]
            draw.line(slit, fill=(30, 20, 20), width=face.width(0.05))
        else:
            draw.ellipse(face.box(u - 0.21, -0.19, u + 0.21, 0.03), fill=(245, 245, 240))
            draw.ellipse(face.box(u - 0.1, -0.16, u + 0.1, 0.0), fill=(40, 28, 24))
        if glasses:
            draw.rectangle(lens, outline=frame, width=face.width(0.12))
            temple = [face.point(0.9 * side, -0.14), face.point(1.05 * side, -0.18)]
            draw.line(temple, fill=frame, width=face.width(0.08))
    if glasses:
        draw.line([face.point(-0.1, -0.1), face.point(0.1, -0.1)], fill=frame, width=face.width(0.08))


def _draw_lower_face(
    draw: ImageDraw.ImageDraw, face: _Face, attributes: Mapping[str, bool], skin: RGB, beard: RGB, lips: RGB
) -> None:
    nose = [face.point(0.0, 0.0), face.point(-0.1, 0.26), face.point(0.06, 0.28)]
    draw.line(nose, fill=_mix(skin, (0, 0, 0), 0.35), width=face.width(0.03))
    if attributes["Rosy_Cheeks"]:
        for side in (-1, 1):
            draw.ellipse(face.box(0.58 * side - 0.28, 0.0, 0.58 * side + 0.28, 0.44), fill=_mix(skin, _ROSY, 0.9))
    if attributes["Mustache"]:  # a thick bar with drooping ends between nose and mouth
        outline = [(-0.5, 0.56), (-0.36, 0.32), (0.36, 0.32), (0.5, 0.56), (0.32, 0.46), (-0.32, 0.46)]
        draw.polygon([face.point(u, v) for u, v in outline], fill=beard)
    if attributes["Goatee"]:
        draw.ellipse(face.box(-0.32, 0.72, 0.32, 1.05), fill=beard)
    smiling, open_mouth = attributes["Smiling"], attributes["Mouth_Slightly_Open"]
    lip_width = face.width(0.1)
    inside, teeth = (14, 6, 8), (240, 238, 228)
    if open_mouth and smiling:  # an open smile: a wide "D" on its back, dark inside, the upper teeth showing
        draw.chord(face.box(-0.42, 0.34, 0.42, 0.86), 0, 180, fill=inside, outline=lips, width=lip_width)
        draw.rectangle(face.box(-0.3, 0.65, 0.3, 0.72), fill=teeth)
    elif open_mouth:  # an "o", dark inside, the upper teeth showing
        draw.ellipse(face.box(-0.2, 0.48, 0.2, 0.78), fill=inside, outline=lips, width=lip_width)
        draw.rectangle(face.box(-0.1, 0.54, 0.1, 0.58), fill=teeth)
    elif smiling:  # a closed smile: a crescent of lips, its horns up
        draw.chord(face.box(-0.42, 0.3, 0.42, 0.8), 0, 180, fill=lips)
        draw.chord(face.box(-0.36, 0.3, 0.36, 0.68), 0, 180, fill=skin)
    else:
        draw.line([face.point(-0.26, 0.62), face.point(0.26, 0.62)], fill=lips, width=lip_width)


def draw_face(
    attributes: Mapping[str, bool], rng: np.random.Generator, size: tuple[int, int] = (96, 112)
) -> np.ndarray:
    """A face with ``attributes`` (every name of ``ATTRIBUTES``) on a ``size`` (width, height) image: (H, W, 3)
    uint8, with the nuisances (position, size, tilt, skin, colours, lighting, noise) drawn from ``rng``."""
    width, height = size
    rx = 0.27 * width * rng.uniform(0.9, 1.1)
    face = _Face(
        width / 2 + rng.uniform(-0.07, 0.07) * width, height * 0.5 + rng.uniform(-0.05, 0.05) * height, rx, rx * 1.3
    )
    # Every nuisance is drawn whatever the attributes, so that two faces drawn from equal generators differ only
    # where their attributes do.
    hair_name = next((name for name in HAIR_COLOURS if attributes[name]), None)
    hair = _jitter(rng, HAIR_COLOURS[hair_name] if hair_name else _AUBURN, 18)
    tone, pale = _mix(_DARKEST_SKIN, _LIGHTEST_SKIN, rng.random()), _jitter(rng, _PALE, 5)
    skin = pale if attributes["Pale_Skin"] else tone
    lipstick = _jitter(rng, _LIPSTICK, 20)
    lips = lipstick if attributes["Wearing_Lipstick"] else _mix(skin, (40, 10, 15), 0.5)
    beard = _mix(hair, (20, 16, 14), 0.75)
    dark_frame, gold_frame = _jitter(rng, (30, 30, 35), 25), _jitter(rng, (150, 120, 60), 40)
    frame = dark_frame if rng.random() < 0.7 else gold_frame
    clothes, hat = _random_colour(rng), _random_colour(rng)

    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    male = attributes["Male"]
    _draw_hair_behind(draw, face, male, hair)
    _draw_head(draw, face, male, skin, clothes)
    _draw_hair_on_top(draw, face, attributes["Bangs"], hair)
    _draw_eyes(draw, face, attributes, _mix(hair, (15, 10, 8), 0.75), frame)
    _draw_lower_face(draw, face, attributes, skin, beard, lips)
    if attributes["Wearing_Hat"]:
        draw.rounded_rectangle(face.box(-0.95, -1.45, 0.95, -0.72), radius=0.25 * face.rx, fill=hat)
        draw.rectangle(face.box(-1.35, -0.84, 1.35, -0.7), fill=_mix(hat, (0, 0, 0), 0.3))
    layer = layer.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR, center=(face.cx, face.cy))

    image = Image.fromarray(_background(rng, height, width).clip(0, 255).astype(np.uint8))
    image.paste(layer, (0, 0), layer)
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.88, 1.12) + rng.normal(0, 4, size=(height, width, 3))
    return pixels.clip(0, 255).astype(np.uint8)


def _attribute_row(file_name: str, values: list[bool]) -> str:
    """A row as the release writes it: values separated by a space, a 1 padded to " 1"."""
    return file_name + "".join(" " + (" 1" if value else "-1") for value in values)


def make_synthetic_celeba(
    out: str | Path,
    seed: int = 0,
    num_train: int = 2400,
    num_val: int = 400,
    num_test: int = 400,
    size: tuple[int, int] = (96, 112),
) -> Path:
    """Write a synthetic CelebA of ``num_train`` training, ``num_val`` validation and ``num_test`` test images of
    ``size`` (width, height; the aligned release is 178x218) under ``out``; return ``out``."""
    if min(num_train, num_val, num_test) < 0 or num_train + num_val + num_test == 0:
        raise ValueError(f"image counts must be >= 0 and not all 0, got {num_train}, {num_val}, {num_test}")
    out = Path(out)
    images = out / "img_align_celeba"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    splits = [0] * num_train + [1] * num_val + [2] * num_test
    rows, partition = [], []
    for number, split in enumerate(splits, start=1):
        name = f"{number:06d}.jpg"
        attributes = draw_attributes(rng)
        Image.fromarray(draw_face(attributes, rng, size)).save(images / name, quality=90)
        rows.append(_attribute_row(name, list(attributes.values())))
        partition.append(f"{name} {split}")
    header = [str(len(splits)), " ".join(ATTRIBUTES) + " "]  # the release's names line ends with a space
    (out / "list_attr_celeba.txt").write_text("\n".join(header + rows) + "\n")
    (out / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return out
