"""A synthetic face-identity set in the on-disk layout of LFW (and of CASIA-WebFace / VGGFace2 for training).

``make_synthetic_lfw(out)`` writes::

    out/train/<Name>/<Name>_0001.jpg ...     training identities (one folder per person)
    out/lfw/<Name>/<Name>_0001.jpg ...       other people, for verification only
    out/pairs.txt                            "10\\t100", then per fold 100 same-person rows "Name\\tn1\\tn2" and
                                             100 different-person rows "Name1\\tn1\\tName2\\tn2"

Names look like LFW's (``Aaron_Peirsol``, ``Jean-Pierre_Raffarin``, ``Juan_Carlos_Ferrero``); training and LFW
people never share a name or a face. As in LFW's View 2, each LFW person belongs to one fold only.

A person is a cartoon face whose look is fixed by the identity: face shape and width, jaw, skin tone, hair colour
and style, eye colour, size and spacing, brows, nose, mouth width, and sometimes glasses, facial hair or a mole.
Each picture of the person varies what varies between photos: position, scale, in-plane rotation, a slight head
turn, expression (smile, open mouth, half-closed eyes), lighting strength, direction and colour cast, background,
shirt colour, noise and JPEG quality. No single colour or position tells two people apart: verification has to
compare several features. Everything is drawn from ``seed``: the same seed gives the same files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tasks.common.synthetic import blotches

__all__ = ["FaceLook", "random_look", "draw_face", "person_names", "make_synthetic_lfw"]

_FIRST_NAMES = (
    "Aaron", "Abdullah", "Adriana", "Alejandro", "Amelie", "Ana", "Andre", "Anna", "Ari", "Bernard", "Bianca",
    "Carlos", "Chen", "Claudia", "Dagmar", "Dmitri", "Elena", "Emeka", "Farah", "Gerhard", "Hamid", "Hana",
    "Ingrid", "Isabel", "Jean", "Jiang", "Kofi", "Laura", "Li", "Lucia", "Mahmoud", "Marie", "Mei", "Nadia",
    "Naoko", "Olga", "Paolo", "Priya", "Rafael", "Sofia", "Tariq", "Teresa", "Valentina", "Viktor", "Yusuf", "Zoe",
)  # fmt: skip
_SECOND_FIRST_NAMES = ("Pierre", "Carlos", "Luc", "Marie", "Paul", "Claude", "Ho", "Jin")
_LAST_NAMES = (
    "Abbas", "Akhtar", "Alvarez", "Bakker", "Barros", "Castro", "Chaudhry", "Dimitrov", "Dubois", "Eriksen",
    "Ferrero", "Fischer", "Garcia", "Haddad", "Horvath", "Ibrahim", "Jensen", "Kim", "Kowalski", "Lambert",
    "Lindqvist", "Moreau", "Mwangi", "Nakamura", "Novak", "Okafor", "Oliveira", "Park", "Peirsol", "Petrov",
    "Raffarin", "Rossi", "Santos", "Schmidt", "Silva", "Tanaka", "Tran", "Vargas", "Weber", "Yilmaz", "Zhang",
)  # fmt: skip

_SKIN_TONES = ((255, 224, 196), (241, 194, 160), (224, 172, 115), (198, 134, 76), (141, 90, 50), (96, 62, 40))
_HAIR_COLOURS = (
    (22, 18, 16), (64, 42, 26), (112, 72, 40), (176, 128, 72), (232, 204, 128), (168, 62, 30), (148, 148, 148),
    (236, 234, 228),
)  # fmt: skip
_EYE_COLOURS = ((62, 40, 22), (44, 96, 170), (58, 124, 70), (112, 124, 136), (150, 110, 40))
_FRAME_COLOURS = ((20, 20, 20), (130, 30, 30), (190, 160, 60), (40, 60, 150))
_JAWS = ("round", "pointed", "square")
_HAIR_STYLES = ("bald", "short", "long", "fringe", "spiky", "side_part")
_NOSES = ("line", "triangle", "round")
_FACIAL_HAIR = ("none", "none", "none", "moustache", "beard", "goatee")
_GLASSES = ("none", "none", "none", "round", "square")

# Drawing happens at this multiple of the output size, then is downsampled: smooth edges at 64 pixels.
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class FaceLook:
    """What stays the same across a person's pictures (lengths as fractions of the face's half-height)."""

    skin: tuple[int, int, int]
    face_aspect: float  # half-width / half-height
    jaw: str
    hair_colour: tuple[int, int, int]
    hair_style: str
    eye_colour: tuple[int, int, int]
    eye_size: float
    eye_spacing: float  # half the distance between the eyes, fraction of the half-width
    eye_height: float  # above the face centre
    brow_thickness: float
    brow_slant: float
    nose: str
    nose_length: float
    mouth_width: float
    lip: tuple[int, int, int]
    facial_hair: str
    glasses: str
    frame_colour: tuple[int, int, int]
    mole: tuple[float, float] | None  # (x, y) offset from the face centre


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: float) -> tuple[int, int, int]:
    values = np.asarray(colour, dtype=np.float64) + rng.uniform(-amount, amount, size=3)
    return tuple(int(v) for v in values.clip(0, 255))


def random_look(rng: np.random.Generator) -> FaceLook:
    """A new person."""
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 12)
    lip = tuple(int(v) for v in (np.asarray(skin) * np.array([0.78, 0.5, 0.5]) + np.array([40, 0, 0])).clip(0, 255))
    return FaceLook(
        skin=skin,
        face_aspect=float(rng.uniform(0.7, 0.95)),
        jaw=str(rng.choice(_JAWS)),
        hair_colour=_jitter(rng, _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))], 10),
        hair_style=str(rng.choice(_HAIR_STYLES)),
        eye_colour=_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))],
        eye_size=float(rng.uniform(0.75, 1.3)),
        eye_spacing=float(rng.uniform(0.3, 0.45)),
        eye_height=float(rng.uniform(0.05, 0.22)),
        brow_thickness=float(rng.uniform(0.03, 0.09)),
        brow_slant=float(rng.uniform(-0.35, 0.35)),
        nose=str(rng.choice(_NOSES)),
        nose_length=float(rng.uniform(0.15, 0.32)),
        mouth_width=float(rng.uniform(0.22, 0.45)),
        lip=lip,
        facial_hair=str(rng.choice(_FACIAL_HAIR)),
        glasses=str(rng.choice(_GLASSES)),
        frame_colour=_FRAME_COLOURS[rng.integers(len(_FRAME_COLOURS))],
        mole=(float(rng.uniform(-0.5, 0.5)), float(rng.uniform(-0.2, 0.5))) if rng.random() < 0.3 else None,
    )


def _face_outline(cx: float, cy: float, rx: float, ry: float, jaw: str, points: int = 48) -> list[tuple[float, float]]:
    """The face's outline: an ellipse above the centre, the jaw below (round, narrowing to a point, or squared)."""
    outline = []
    for t in np.linspace(0, 2 * math.pi, points, endpoint=False):
        x, y = math.cos(t), math.sin(t)  # y points down: the jaw is where y > 0
        if y > 0 and jaw == "pointed":
            x *= 1 - 0.45 * y
            y *= 1.08
        elif y > 0 and jaw == "square":
            x = math.copysign(abs(x) ** 0.55, x)
            y = math.copysign(abs(y) ** 0.55, y) * 0.95
        outline.append((cx + rx * x, cy + ry * y))
    return outline


def _darker(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(v * factor) for v in colour)


@dataclass(frozen=True)
class _Pose:
    """What changes between pictures of one person."""

    cx: float
    cy: float
    ry: float
    angle: float  # degrees, counter-clockwise
    turn: float  # features shift sideways by this fraction of the half-width (a head turned a little)
    smile: float
    mouth_open: float
    eye_open: float
    shirt: tuple[int, int, int]


def _random_pose(rng: np.random.Generator, side: int) -> _Pose:
    return _Pose(
        cx=side * (0.5 + rng.uniform(-0.08, 0.08)),
        cy=side * (0.5 + rng.uniform(-0.06, 0.06)),
        ry=side * 0.3 * rng.uniform(0.85, 1.1),
        angle=float(rng.uniform(-12, 12)),
        turn=float(rng.uniform(-0.15, 0.15)),
        smile=float(rng.uniform(-0.2, 0.7)),
        mouth_open=float(rng.uniform(0, 1)) if rng.random() < 0.3 else 0.0,
        eye_open=float(rng.uniform(0.55, 1.0)),
        shirt=tuple(int(v) for v in rng.integers(0, 256, size=3)),
    )


def _draw_hair_back(draw: ImageDraw.ImageDraw, look: FaceLook, p: _Pose, rx: float) -> None:
    if look.hair_style == "long":
        draw.ellipse((p.cx - rx * 1.25, p.cy - p.ry * 1.15, p.cx + rx * 1.25, p.cy + p.ry * 1.5), fill=look.hair_colour)


def _draw_hair_top(layer: Image.Image, look: FaceLook, p: _Pose, rx: float) -> None:
    draw = ImageDraw.Draw(layer)
    colour, top = look.hair_colour, p.cy - p.ry
    if look.hair_style == "bald":
        # A fringe of hair round the sides only.
        for side in (-1, 1):
            x = p.cx + side * rx * 0.95
            draw.ellipse((x - rx * 0.18, p.cy - p.ry * 0.45, x + rx * 0.18, p.cy + p.ry * 0.05), fill=colour)
        return
    if look.hair_style in ("short", "long", "side_part", "fringe"):
        # A cap: the ellipse of the skull cut at the hairline.
        hairline = {"short": 0.5, "long": 0.45, "side_part": 0.55, "fringe": 0.2}[look.hair_style]
        cap = Image.new("L", layer.size, 0)
        ImageDraw.Draw(cap).ellipse((p.cx - rx * 1.07, top - p.ry * 0.1, p.cx + rx * 1.07, p.cy + p.ry * 0.9), fill=255)
        ImageDraw.Draw(cap).rectangle((0, p.cy - p.ry * hairline, *layer.size), fill=0)
        draw.bitmap((0, 0), cap, fill=colour)
        if look.hair_style == "side_part":
            draw.polygon(
                [(p.cx - rx * 0.2, top), (p.cx + rx * 1.05, p.cy - p.ry * 0.55), (p.cx + rx * 1.05, p.cy - p.ry * 0.1)],
                fill=colour,
            )
        if look.hair_style == "fringe":
            draw.rectangle((p.cx - rx * 0.9, p.cy - p.ry * 0.5, p.cx + rx * 0.9, p.cy - p.ry * 0.12), fill=colour)
        return
    # spiky
    for k in range(7):
        x = p.cx + rx * (-0.9 + 0.3 * k)
        draw.polygon(
            [(x - rx * 0.22, top + p.ry * 0.3), (x, top - p.ry * 0.3), (x + rx * 0.22, top + p.ry * 0.3)], fill=colour
        )
    draw.ellipse((p.cx - rx * 0.95, top - p.ry * 0.05, p.cx + rx * 0.95, top + p.ry * 0.45), fill=colour)


def _draw_eyes(draw: ImageDraw.ImageDraw, look: FaceLook, p: _Pose, rx: float, fx: float) -> None:
    eye_y = p.cy - p.ry * look.eye_height
    ew, eh = p.ry * 0.13 * look.eye_size, p.ry * 0.08 * look.eye_size * p.eye_open
    for side in (-1, 1):
        ex = fx + side * rx * look.eye_spacing
        draw.ellipse((ex - ew, eye_y - eh, ex + ew, eye_y + eh), fill=(245, 245, 240))
        iris = ew * 0.55
        draw.ellipse((ex - iris, eye_y - min(iris, eh), ex + iris, eye_y + min(iris, eh)), fill=look.eye_colour)
        pupil = iris * 0.45
        draw.ellipse((ex - pupil, eye_y - min(pupil, eh), ex + pupil, eye_y + min(pupil, eh)), fill=(10, 10, 10))
        # The brow: its inner end higher or lower than its outer end by the person's slant.
        by = eye_y - p.ry * 0.17 * look.eye_size
        inner, outer = (
            (ex - side * ew * 1.2, by + look.brow_slant * ew),
            (ex + side * ew * 1.3, by - look.brow_slant * ew),
        )
        draw.line([inner, outer], fill=_darker(look.hair_colour, 0.8), width=max(1, round(p.ry * look.brow_thickness)))
        if look.glasses == "round":
            r = ew * 1.5
            draw.ellipse(
                (ex - r, eye_y - r, ex + r, eye_y + r), outline=look.frame_colour, width=max(1, round(p.ry * 0.04))
            )
        elif look.glasses == "square":
            r = ew * 1.5
            draw.rectangle(
                (ex - r, eye_y - r * 0.75, ex + r, eye_y + r * 0.75),
                outline=look.frame_colour,
                width=max(1, round(p.ry * 0.04)),
            )
    if look.glasses != "none":
        bridge = rx * look.eye_spacing - ew * 1.5
        draw.line(
            [(fx - bridge, eye_y), (fx + bridge, eye_y)], fill=look.frame_colour, width=max(1, round(p.ry * 0.04))
        )


def _draw_nose_and_mouth(draw: ImageDraw.ImageDraw, look: FaceLook, p: _Pose, rx: float, fx: float) -> None:
    shade = _darker(look.skin, 0.72)
    top, tip = p.cy - p.ry * 0.05, p.cy - p.ry * 0.05 + p.ry * look.nose_length
    if look.nose == "line":
        draw.line(
            [(fx, top), (fx + rx * 0.06, tip), (fx - rx * 0.05, tip)], fill=shade, width=max(1, round(p.ry * 0.04))
        )
    elif look.nose == "triangle":
        draw.polygon([(fx, top), (fx + rx * 0.13, tip), (fx - rx * 0.13, tip)], fill=shade)
    else:
        r = p.ry * 0.08
        draw.ellipse((fx - r, tip - r, fx + r, tip + r), fill=shade)
    mouth_y = tip + p.ry * 0.2
    half = rx * look.mouth_width
    # The mouth: a curve whose corners rise with the smile; an open mouth is a dark gap under it.
    xs = np.linspace(-1, 1, 13)
    upper = [(fx + half * x, mouth_y - p.smile * p.ry * 0.12 * (x * x - 0.3)) for x in xs]
    gap = p.ry * (0.03 + 0.15 * p.mouth_open)
    lower = [(x, y + gap * (1 - abs((x - fx) / half) ** 2)) for x, y in reversed(upper)]
    draw.polygon(upper + lower, fill=(60, 20, 20) if p.mouth_open > 0 else look.lip)
    draw.line(upper, fill=look.lip, width=max(1, round(p.ry * 0.05)))
    if look.facial_hair == "moustache":
        draw.polygon(
            [
                (fx - half * 1.1, mouth_y - p.ry * 0.02),
                (fx, mouth_y - p.ry * 0.14),
                (fx + half * 1.1, mouth_y - p.ry * 0.02),
                (fx, mouth_y - p.ry * 0.07),
            ],
            fill=look.hair_colour,
        )
    elif look.facial_hair == "goatee":
        r = rx * 0.2
        draw.ellipse(
            (fx - r, mouth_y + gap + p.ry * 0.08, fx + r, mouth_y + gap + p.ry * 0.08 + r * 1.6), fill=look.hair_colour
        )


def _draw_beard(image: Image.Image, look: FaceLook, p: _Pose, rx: float, fx: float) -> None:
    """A full beard: the face below the nose, in hair colour, leaving the mouth clear."""
    size = image.size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon(_face_outline(p.cx, p.cy, rx, p.ry, look.jaw), fill=255)
    ImageDraw.Draw(mask).rectangle((0, 0, size[0], p.cy + p.ry * (look.nose_length + 0.02)), fill=0)
    mouth_y = p.cy - p.ry * 0.05 + p.ry * (look.nose_length + 0.2)
    half = rx * look.mouth_width
    ImageDraw.Draw(mask).ellipse((fx - half, mouth_y - p.ry * 0.07, fx + half, mouth_y + p.ry * 0.12), fill=0)
    ImageDraw.Draw(image).bitmap((0, 0), mask, fill=look.hair_colour)


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    base = rng.uniform(0, 255, size=3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base, (side, side, 3)).copy()
    if kind == 1:
        return base * 0.6 + blotches(rng, side, side, max(4, side // 6)) * 0.4
    angle = rng.uniform(0, math.pi)
    ys, xs = np.mgrid[:side, :side].astype(np.float32)
    ramp = ((xs * math.cos(angle) + ys * math.sin(angle)) / side).clip(0, 1)
    other = rng.uniform(0, 255, size=3).astype(np.float32)
    return base + (other - base) * ramp[..., None]


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A global gain, a colour cast and light from one side."""
    side = image.shape[0]
    gain = rng.uniform(0.7, 1.25)
    cast = 1 + rng.uniform(-0.08, 0.08, size=3)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = (np.mgrid[:side, :side].astype(np.float32) / side) - 0.5
    shading = 1 + rng.uniform(0, 0.45) * (xs * math.cos(angle) + ys * math.sin(angle))
    return image * (gain * cast) * shading[..., None]


def draw_face(look: FaceLook, rng: np.random.Generator, image_size: int = 64) -> np.ndarray:
    """One picture of the person ``look``: (image_size, image_size, 3) uint8 RGB."""
    side = image_size * _SUPERSAMPLE
    p = _random_pose(rng, side)
    rx = p.ry * look.face_aspect
    fx = p.cx + p.turn * rx  # where the features sit across the face
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.ellipse((p.cx - rx * 2.2, p.cy + p.ry * 1.05, p.cx + rx * 2.2, p.cy + p.ry * 2.8), fill=p.shirt)
    _draw_hair_back(draw, look, p, rx)
    draw.rectangle(
        (p.cx - rx * 0.38, p.cy + p.ry * 0.5, p.cx + rx * 0.38, p.cy + p.ry * 1.15), fill=_darker(look.skin, 0.85)
    )
    for side_sign in (-1, 1):
        ear_x = p.cx + side_sign * rx * (0.98 - 0.1 * side_sign * p.turn)
        draw.ellipse((ear_x - rx * 0.14, p.cy - p.ry * 0.2, ear_x + rx * 0.14, p.cy + p.ry * 0.15), fill=look.skin)
    draw.polygon(_face_outline(p.cx, p.cy, rx, p.ry, look.jaw), fill=look.skin)
    if look.facial_hair == "beard":
        _draw_beard(layer, look, p, rx, fx)
    _draw_hair_top(layer, look, p, rx)
    _draw_eyes(draw, look, p, rx, fx)
    _draw_nose_and_mouth(draw, look, p, rx, fx)
    if look.mole is not None:
        r = p.ry * 0.035
        mx, my = fx + look.mole[0] * rx, p.cy + look.mole[1] * p.ry
        draw.ellipse((mx - r, my - r, mx + r, my + r), fill=(50, 30, 25))
    layer = layer.rotate(p.angle, resample=Image.BICUBIC, center=(p.cx, p.cy))
    background = Image.fromarray(_background(rng, side).clip(0, 255).astype(np.uint8)).convert("RGBA")
    picture = np.asarray(Image.alpha_composite(background, layer).convert("RGB"), dtype=np.float32)
    picture = _lighting(rng, picture)
    picture = np.asarray(
        Image.fromarray(picture.clip(0, 255).astype(np.uint8)).resize((image_size, image_size), Image.BOX),
        dtype=np.float32,
    )
    picture += rng.normal(0, rng.uniform(2, 7), size=picture.shape)
    return picture.clip(0, 255).astype(np.uint8)


def person_names(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct LFW-style names: ``First_Last``, some with a hyphenated or second first name."""
    capacity = len(_FIRST_NAMES) * (1 + 2 * len(_SECOND_FIRST_NAMES)) * len(_LAST_NAMES)
    if count > capacity:
        raise ValueError(f"at most {capacity} distinct names, {count} asked for")
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < count:
        first = str(rng.choice(_FIRST_NAMES))
        roll = rng.random()
        if roll < 0.15:
            first = f"{first}-{rng.choice(_SECOND_FIRST_NAMES)}"
        elif roll < 0.25:
            first = f"{first}_{rng.choice(_SECOND_FIRST_NAMES)}"
        name = f"{first}_{rng.choice(_LAST_NAMES)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _save(image: np.ndarray, path: Path, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=int(rng.integers(75, 96)))


def _picture_counts(people: int, pairs_per_fold: int, span: tuple[int, int], rng: np.random.Generator) -> list[int]:
    """Pictures of each of a fold's ``people``, drawn from ``span`` (fewest, most), then topped up one at a time
    (the person with the most gains one while same-person pairs are short, the one with the fewest while
    different-person pairs are) until the fold can hold ``pairs_per_fold`` distinct pairs of each kind."""
    counts = [int(rng.integers(span[0], span[1] + 1)) for _ in range(people)]
    while True:
        same = sum(n * (n - 1) // 2 for n in counts)
        different = (sum(counts) ** 2 - sum(n * n for n in counts)) // 2
        if same >= pairs_per_fold and different >= pairs_per_fold:
            return counts
        counts[int(np.argmax(counts) if same < pairs_per_fold else np.argmin(counts))] += 1


def _fold_pairs(
    people: list[tuple[str, int]], pairs_per_fold: int, rng: np.random.Generator
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, str, int]]]:
    """``pairs_per_fold`` same-person and as many different-person pairs (1-based picture numbers) drawn without
    repetition among ``people`` ((name, picture count)), each kind in a stable order."""
    same = [(name, a, b) for name, count in people for a in range(1, count + 1) for b in range(a + 1, count + 1)]
    different = [
        (first, a, second, b)
        for i, (first, first_count) in enumerate(people)
        for second, second_count in people[i + 1 :]
        for a in range(1, first_count + 1)
        for b in range(1, second_count + 1)
    ]
    chosen_same = np.sort(rng.choice(len(same), size=pairs_per_fold, replace=False))
    chosen_different = np.sort(rng.choice(len(different), size=pairs_per_fold, replace=False))
    return [same[i] for i in chosen_same], [different[i] for i in chosen_different]


def make_synthetic_lfw(
    out: str | Path,
    seed: int = 0,
    num_train_identities: int = 200,
    images_per_train_identity: int = 20,
    num_lfw_people: int = 200,
    lfw_images_per_person: tuple[int, int] = (1, 8),
    num_folds: int = 10,
    pairs_per_fold: int = 100,
    image_size: int = 64,
) -> Path:
    """Write training identities, LFW people and pairs.txt under ``out`` (see the module docstring); return ``out``.

    Args:
        num_train_identities, images_per_train_identity: the training folders.
        num_lfw_people: the people of the verification set, dealt round-robin into the folds.
        lfw_images_per_person: (fewest, most) pictures of each LFW person, drawn uniformly; a person with one
            picture appears in different-person pairs only, as in LFW. Where a fold's people have too few pictures
            for its pairs, some get more.
        num_folds, pairs_per_fold: pairs.txt's header; each fold has ``pairs_per_fold`` same-person rows, then as
            many different-person rows, none repeated.
        image_size: the square picture side in pixels.
    """
    if num_lfw_people < 2 * num_folds:
        raise ValueError(f"num_lfw_people must be at least 2 per fold ({2 * num_folds}), got {num_lfw_people}")
    if not 1 <= lfw_images_per_person[0] <= lfw_images_per_person[1] or lfw_images_per_person[1] < 2:
        raise ValueError(f"lfw_images_per_person must be (fewest >= 1, most >= 2), got {lfw_images_per_person}")
    out = Path(out)
    rng = np.random.default_rng(seed)
    names = person_names(num_train_identities + num_lfw_people, rng)
    for name in names[:num_train_identities]:
        look = random_look(rng)
        for number in range(1, images_per_train_identity + 1):
            _save(draw_face(look, rng, image_size), out / "train" / name / f"{name}_{number:04d}.jpg", rng)
    lfw_names = names[num_train_identities:]
    folds: list[list[tuple[str, int]]] = []
    for fold in range(num_folds):
        members = lfw_names[fold::num_folds]
        counts = _picture_counts(len(members), pairs_per_fold, lfw_images_per_person, rng)
        folds.append(list(zip(members, counts)))
        for name, count in folds[-1]:
            look = random_look(rng)
            for number in range(1, count + 1):
                _save(draw_face(look, rng, image_size), out / "lfw" / name / f"{name}_{number:04d}.jpg", rng)
    lines = [f"{num_folds}\t{pairs_per_fold}"]
    for people in folds:
        same, different = _fold_pairs(people, pairs_per_fold, rng)
        lines += [f"{name}\t{a}\t{b}" for name, a, b in same]
        lines += [f"{first}\t{a}\t{second}\t{b}" for first, a, second, b in different]
    (out / "pairs.txt").write_text("\n".join(lines) + "\n")
    return out
