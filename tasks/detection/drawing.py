"""Pictures of detections that stay readable on any image: boxes with labels on a filled background kept inside the
picture, evaluation pictures that show the ground truth beside the predictions, and COCO precision-recall curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.ops import box_iou

__all__ = [
    "PALETTE",
    "Box",
    "GroundTruth",
    "Detection",
    "class_colour",
    "draw_boxes",
    "draw_evaluation",
    "plot_pr_curves",
]

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4")
# Evaluation pictures colour a box by what it is, its text says the class: a reader looks for the red and orange.
CORRECT, FALSE_POSITIVE, MISSED, FOUND = "#00c853", "#ff9100", "#ff1744", "#2979ff"
MATCH_IOU = 0.5  # COCO's AP50 criterion, the one the pictures' "correct" follows
_LEGEND = (
    (CORRECT, False, "correct"),
    (FALSE_POSITIVE, False, "false positive"),
    (MISSED, True, "missed (ground truth)"),
    (FOUND, True, "ground truth found"),
)


def class_colour(label: int) -> str:
    """The colour of contiguous class ``label`` (1..C) in prediction pictures."""
    return PALETTE[(label - 1) % len(PALETTE)]


@dataclass(frozen=True)
class Box:
    """A box to draw: x1y1x2y2 in pixels, its colour ("#rrggbb"), its label ("" for none), dashed or solid."""

    xyxy: tuple[float, float, float, float]
    colour: str
    text: str = ""
    dashed: bool = False


@dataclass(frozen=True)
class GroundTruth:
    xyxy: tuple[float, float, float, float]
    name: str


@dataclass(frozen=True)
class Detection:
    xyxy: tuple[float, float, float, float]
    name: str
    score: float


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's bundled font: no font file needed


def _text_colour(colour: str) -> str:
    """Black or white, whichever reads better on ``colour`` (by its luma)."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "white"


def _sizes(width: int, height: int) -> tuple[int, int]:
    """(font size, line width) for a picture: labels about 1/28 of the shorter side, never below 11 pixels."""
    short = min(width, height)
    return max(11, round(short / 28)), max(2, round(short / 250))


def _dashed_rectangle(draw: ImageDraw.ImageDraw, xyxy: Sequence[float], colour: str, width: int) -> None:
    x1, y1, x2, y2 = xyxy
    dash, gap = 3 * width + 3, 2 * width + 2
    for start, end in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(end[0] - start[0]), abs(end[1] - start[1]))
        steps = np.arange(0.0, length, dash + gap)
        for offset in steps:
            a, b = offset / max(length, 1e-9), min(offset + dash, length) / max(length, 1e-9)
            draw.line(
                [
                    (start[0] + a * (end[0] - start[0]), start[1] + a * (end[1] - start[1])),
                    (start[0] + b * (end[0] - start[0]), start[1] + b * (end[1] - start[1])),
                ],
                fill=colour,
                width=width,
            )


Rect = tuple[int, int, int, int]


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _label_rect(
    xyxy: Sequence[float], text_size: tuple[int, int], picture_size: tuple[int, int], taken: Sequence[Rect]
) -> Rect:
    """Where a label of ``text_size`` (w, h) goes, (x1, y1, x2, y2) wholly inside the picture (w, h): at the box's
    left edge (shifted left at the picture's right edge), above its top, else inside its top, below its bottom or
    inside its bottom: the first of these that overlaps no label in ``taken``, else the one that overlaps least."""
    (x1, y1, _, y2), (text_w, text_h), (width, height) = xyxy, text_size, picture_size
    x = min(max(0, round(x1)), max(0, width - text_w))
    candidates = []
    for y in (round(y1) - text_h, round(y1), round(y2), round(y2) - text_h):
        y = min(max(0, y), max(0, height - text_h))
        candidates.append((x, y, x + text_w, y + text_h))
    return min(candidates, key=lambda rect: (sum(_overlap(rect, other) for other in taken), candidates.index(rect)))


def draw_boxes(image: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with ``boxes`` drawn, later ones on top, each label on a filled background of its box's
    colour (text in black or white, whichever reads better) kept wholly inside the picture. Returns a new array."""
    picture = Image.fromarray(np.ascontiguousarray(image[..., :3]))
    draw = ImageDraw.Draw(picture)
    font_size, line_width = _sizes(picture.width, picture.height)
    font = _font(font_size)
    for box in boxes:
        if box.dashed:
            _dashed_rectangle(draw, box.xyxy, box.colour, line_width)
        else:
            draw.rectangle(box.xyxy, outline=box.colour, width=line_width)
    padding = max(1, font_size // 6)
    placed: list[tuple[Box, Rect, tuple[int, int]]] = []
    for box in reversed(boxes):  # the boxes on top choose their label's place first
        if not box.text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), box.text, font=font)
        size = (right - left + 2 * padding, bottom - top + 2 * padding)
        rect = _label_rect(box.xyxy, size, picture.size, [rect for _, rect, _ in placed])
        placed.append((box, rect, (left, top)))
    for box, (x1, y1, x2, y2), (left, top) in reversed(placed):  # after every box, so that no line crosses a label
        draw.rectangle((x1, y1, x2 - 1, y2 - 1), fill=box.colour)
        draw.text((x1 + padding - left, y1 + padding - top), box.text, fill=_text_colour(box.colour), font=font)
    return np.asarray(picture)


def _match(ground_truth: Sequence[GroundTruth], detections: Sequence[Detection]) -> tuple[list[bool], list[bool]]:
    """(each ground truth found, each detection correct): greedily by score, a detection is correct when it overlaps
    a not yet found ground-truth box of its class at IoU >= 0.5 (COCO's AP50 rule, without crowd regions)."""
    found, correct = [False] * len(ground_truth), [False] * len(detections)
    if not ground_truth or not detections:
        return found, correct
    iou = box_iou(
        torch.tensor([d.xyxy for d in detections], dtype=torch.float64),
        torch.tensor([g.xyxy for g in ground_truth], dtype=torch.float64),
    )
    for index in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        candidates = [
            (float(iou[index, j]), j)
            for j, truth in enumerate(ground_truth)
            if not found[j] and truth.name == detections[index].name and iou[index, j] >= MATCH_IOU
        ]
        if candidates:
            found[max(candidates)[1]] = correct[index] = True
    return found, correct


def _legend(width: int, font_size: int, line_width: int) -> Image.Image:
    """A white band naming the evaluation colours, its entries wrapped onto as many rows as ``width`` needs."""
    font = _font(font_size)
    swatch, spacing = 2 * font_size, font_size
    entries = [(colour, dashed, text, round(font.getlength(text))) for colour, dashed, text in _LEGEND]
    rows: list[list[tuple[str, bool, str, int]]] = [[]]
    used = spacing
    for entry in entries:
        needed = swatch + font_size // 2 + entry[3] + spacing
        if rows[-1] and used + needed > width:
            rows.append([])
            used = spacing
        rows[-1].append(entry)
        used += needed
    row_height = round(1.6 * font_size)
    band = Image.new("RGB", (width, row_height * len(rows) + font_size // 2), "white")
    draw = ImageDraw.Draw(band)
    for row_index, row in enumerate(rows):
        x, middle = spacing, font_size // 4 + row_index * row_height + row_height // 2
        for colour, dashed, text, text_width in row:
            line = (x, middle - font_size // 3, x + swatch, middle + font_size // 3)
            if dashed:
                _dashed_rectangle(draw, line, colour, line_width)
            else:
                draw.rectangle(line, outline=colour, width=line_width)
            draw.text((x + swatch + font_size // 2, middle), text, fill="black", font=font, anchor="lm")
            x += swatch + font_size // 2 + text_width + spacing
    return band


def draw_evaluation(
    image: np.ndarray,
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detection],
    min_side: int = 480,
) -> np.ndarray:
    """An evaluation picture: ``image`` with its ground truth (dashed: blue where a detection found it, red and
    labelled "missed <class>" where none did) and the detections (solid, "<class> <score>": green when correct,
    orange for a false positive), above a legend of the colours. Images whose shorter side is below ``min_side``
    are enlarged (by an integer factor) so that the labels stay legible. Returns (H', W', 3) uint8."""
    height, width = image.shape[:2]
    scale = max(1, -(-min_side // max(1, min(height, width)))) if min(height, width) < min_side else 1
    if scale > 1:
        image = np.asarray(Image.fromarray(image[..., :3]).resize((width * scale, height * scale), Image.BILINEAR))

    def scaled(xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        return tuple(float(v) * scale for v in xyxy)  # type: ignore[return-value]

    found, correct = _match(ground_truth, detections)
    boxes = [
        Box(scaled(truth.xyxy), FOUND if hit else MISSED, "" if hit else f"missed {truth.name}", dashed=True)
        for truth, hit in zip(ground_truth, found, strict=True)
    ]
    order = sorted(range(len(detections)), key=lambda i: detections[i].score)  # the most confident on top
    boxes += [
        Box(
            scaled(detections[i].xyxy),
            CORRECT if correct[i] else FALSE_POSITIVE,
            f"{detections[i].name} {detections[i].score:.2f}",
        )
        for i in order
    ]
    picture = draw_boxes(image, boxes)
    font_size, line_width = _sizes(picture.shape[1], picture.shape[0])
    legend = np.asarray(_legend(picture.shape[1], font_size, line_width))
    return np.concatenate([picture, legend], axis=0)


def plot_pr_curves(
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], path: Path, title: str = ""
) -> None:
    """A PNG of precision against recall, one panel per class and one curve per IoU setting in it.

    ``curves``: class name -> {setting, e.g. "IoU 0.5": (recall (R,), precision (R,))}, as
    ``tasks.detection.evaluation.CocoEvaluation.pr_curves`` gives them (classes without ground truth left out).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(4, max(1, len(curves)))
    rows = max(1, -(-len(curves) // columns))
    figure = Figure(figsize=(3.2 * columns, 2.9 * rows + 0.5))
    FigureCanvasAgg(figure)
    for index, (name, settings) in enumerate(curves.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        for setting, (recall, precision) in settings.items():
            ap = float(np.mean(precision))
            axes.plot(recall, precision, label=f"{setting}: AP {ap:.3f}", linewidth=1.5)
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(0.0, 1.02)
        axes.set_title(name, fontsize=10)
        axes.set_xlabel("recall", fontsize=8)
        axes.set_ylabel("precision", fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        axes.legend(loc="lower left", fontsize=7)
    if not curves:
        figure.text(0.5, 0.5, "no class has ground truth", ha="center", va="center")
    figure.suptitle(title or "precision-recall per class (COCO, area all, 100 detections per image)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
