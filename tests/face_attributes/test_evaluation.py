"""Face attribute metrics on hand-made probabilities: AP per attribute, mean AP over attributes with a positive,
mean accuracy at 0.5, and the CSV and chart of a validation."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from tasks.face_attributes.evaluation import attribute_scores, plot_attribute_ap, summarize, write_per_attribute_csv

NAMES = ["Smiling", "Eyeglasses", "Wearing_Hat"]
# Smiling is ranked perfectly; Eyeglasses has its one positive ranked second of four (AP 1/2); Wearing_Hat has no
# positive in the split.
PROBABILITIES = torch.tensor(
    [
        [0.9, 0.8, 0.7],
        [0.6, 0.4, 0.1],
        [0.3, 0.2, 0.6],
        [0.1, 0.1, 0.2],
    ]
)
LABELS = torch.tensor(
    [
        [1, 0, 0],
        [1, 1, 0],
        [0, 0, 0],
        [0, 0, 0],
    ]
)


def test_ap_per_attribute_and_none_for_an_attribute_without_positives() -> None:
    scores = attribute_scores(PROBABILITIES, LABELS, NAMES)

    assert scores.positives == [2, 1, 0]
    assert scores.ap[0] == pytest.approx(1.0) and scores.ap[1] == pytest.approx(0.5)
    assert scores.ap[2] is None


def test_accuracy_thresholds_the_probability_at_one_half() -> None:
    scores = attribute_scores(PROBABILITIES, LABELS, NAMES)

    # Smiling: all four right; Eyeglasses: 0.8 (no) is wrong, 0.4 (yes) is wrong; Wearing_Hat: 0.7 and 0.6 wrong.
    assert scores.accuracy == pytest.approx([1.0, 0.5, 0.5])


def test_a_probability_of_exactly_one_half_counts_as_present() -> None:
    scores = attribute_scores(torch.tensor([[0.5], [0.49]]), torch.tensor([[1], [0]]), ["Bald"])

    assert scores.accuracy == [1.0]


def test_the_mean_ap_leaves_out_attributes_without_positives_and_counts_them() -> None:
    summary = summarize(attribute_scores(PROBABILITIES, LABELS, NAMES))

    assert summary == {
        "mean_ap": 0.75,
        "mean_accuracy": pytest.approx(2 / 3, abs=1e-4),
        "num_attributes": 3,
        "num_attributes_without_positives": 1,
    }


def test_no_images_give_null_means() -> None:
    summary = summarize(attribute_scores(torch.empty(0, 3), torch.empty(0, 3), NAMES))

    assert summary["mean_ap"] is None and summary["mean_accuracy"] is None
    assert summary["num_attributes_without_positives"] == 3


def test_probabilities_of_another_shape_than_the_names_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        attribute_scores(PROBABILITIES, LABELS, NAMES[:2])


def test_the_csv_has_a_row_per_attribute_with_an_empty_ap_without_positives(tmp_path: Path) -> None:
    scores = attribute_scores(PROBABILITIES, LABELS, NAMES)

    write_per_attribute_csv(scores, tmp_path / "per_attribute.csv")
    plot_attribute_ap(scores, tmp_path / "per_attribute_ap.png", "mean AP 0.750")

    rows = list(csv.DictReader(open(tmp_path / "per_attribute.csv")))
    assert [(r["attribute"], r["positives"], r["ap"], r["accuracy"]) for r in rows] == [
        ("Smiling", "2", "1.0000", "1.0000"),
        ("Eyeglasses", "1", "0.5000", "0.5000"),
        ("Wearing_Hat", "0", "", "0.5000"),
    ]
    picture = Image.open(tmp_path / "per_attribute_ap.png")
    assert picture.format == "PNG" and picture.height >= 300
