"""Detection pictures a user can read: labels on a filled background wholly inside the picture, evaluation pictures
that show the ground truth beside the detections, and a legend."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.detection.drawing import (
    CORRECT,
    FALSE_POSITIVE,
    FOUND,
    MISSED,
    Box,
    Detection,
    GroundTruth,
    draw_boxes,
    draw_evaluation,
)

GREEN = "#3cb44b"


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _extent(picture: np.ndarray, colour: str, rows: slice = slice(None)) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2), inclusive, of the pixels of exactly ``colour`` among ``rows``."""
    ys, xs = np.nonzero((picture[rows] == _rgb(colour)).all(axis=-1))
    assert len(xs), f"no pixel of {colour}"
    return int(xs.min()), int(ys.min()) + (rows.start or 0), int(xs.max()), int(ys.max()) + (rows.start or 0)


def _label_extent(
    picture: np.ndarray, box: tuple[int, int, int, int], colour: str = GREEN
) -> tuple[int, int, int, int]:
    """The extent of the box colour in the rows above the box (its label there); the box's own lines left out."""
    return _extent(picture, colour, slice(0, box[1] - 1))


def test_a_label_at_the_right_edge_is_shifted_left_and_drawn_whole() -> None:
    black = np.zeros((120, 400, 3), np.uint8)
    middle, edge = (150, 60, 190, 100), (370, 60, 399, 100)

    free = _label_extent(draw_boxes(black, [Box(middle, GREEN, "triangle 0.99")]), middle)
    pinned = _label_extent(draw_boxes(black, [Box(edge, GREEN, "triangle 0.99")]), edge)

    width = free[2] - free[0]
    assert width > 60  # the whole text, far wider than the 30-pixel box
    assert pinned[2] == 399 and pinned[2] - pinned[0] == width  # ends at the last column, not cut
    assert pinned[1] == free[1] and pinned[3] == free[3]


def test_a_label_at_the_top_edge_goes_inside_the_box() -> None:
    black = np.zeros((120, 400, 3), np.uint8)
    box = (150, 0, 250, 80)

    picture = draw_boxes(black, [Box(box, GREEN, "circle 0.50")])

    x1, y1, x2, y2 = _extent(picture, GREEN, slice(3, 40))  # below the box's top line
    assert (x1, y1) == (150, 3) and x2 > 200 and y2 > 10  # a filled band at the top, inside the box


@pytest.mark.parametrize("colour", ["#ffe119", "#4363d8"])
def test_a_label_is_text_on_a_filled_background_of_the_box_colour_even_on_noise(colour: str) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(120, 300, 3), dtype=np.uint8)
    box = (100, 60, 200, 110)

    picture = draw_boxes(noise, [Box(box, colour, "square 0.87")])

    x1, y1, x2, y2 = _label_extent(picture, box, colour)
    label = picture[y1 : y2 + 1, x1 : x2 + 1]
    background = (label == _rgb(colour)).all(axis=-1).mean()
    text = "black" if colour == "#ffe119" else "white"  # whichever reads on the colour
    ink = (np.abs(label.astype(int) - (0 if text == "black" else 255)).max(axis=-1) < 80).mean()  # anti-aliased
    assert background > 0.5 and ink > 0.03
    assert x2 - x1 > 40 and y2 - y1 > 8


def test_an_evaluation_picture_without_detections_shows_every_ground_truth_box_as_missed() -> None:
    grey = np.full((64, 96, 3), 128, np.uint8)
    truth = [GroundTruth((10, 20, 50, 60), "circle"), GroundTruth((60, 8, 90, 40), "star")]

    picture = draw_evaluation(grey, truth, [], min_side=64)

    assert picture.shape[1] == 96 and picture.shape[0] > 64  # the legend below the image
    image = picture[:64]
    red = (image == _rgb(MISSED)).all(axis=-1)
    assert red[20:61, 9:12].sum() > 10 and red[8:41, 89:92].sum() > 10  # the left side of one, right of the other
    assert red[30:55, 20:45].sum() == 0  # not filled: the object stays visible
    legend = picture[64:]
    for colour in (CORRECT, FALSE_POSITIVE, MISSED, FOUND):
        assert (legend == _rgb(colour)).all(axis=-1).any(), colour


def test_an_evaluation_picture_tells_correct_detections_from_false_positives() -> None:
    grey = np.full((100, 100, 3), 128, np.uint8)
    truth = [GroundTruth((10, 10, 50, 50), "circle")]
    detections = [Detection((12, 12, 50, 52), "circle", 0.9), Detection((60, 60, 90, 90), "circle", 0.4)]

    image = draw_evaluation(grey, truth, detections, min_side=100)[:100]

    found = (image == _rgb(FOUND)).all(axis=-1)
    correct = (image == _rgb(CORRECT)).all(axis=-1)
    wrong = (image == _rgb(FALSE_POSITIVE)).all(axis=-1)
    assert found[10:50, 9:11].any() and not (image == _rgb(MISSED)).all(axis=-1).any()
    assert correct[12:52, 11:14].sum() > 20 and wrong[60:90, 59:62].sum() > 20


def test_a_small_image_is_enlarged_for_its_evaluation_picture() -> None:
    picture = draw_evaluation(np.zeros((40, 60, 3), np.uint8), [GroundTruth((5, 5, 20, 20), "star")], [], min_side=120)

    assert picture.shape[1] == 180 and picture.shape[0] > 120
    assert (picture[:120] == _rgb(MISSED)).all(axis=-1)[15:60, 14:17].sum() > 10  # the box, scaled by 3
