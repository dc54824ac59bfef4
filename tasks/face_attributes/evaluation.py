"""Face attribute metrics (mean average precision and mean accuracy over attributes), their CSV and bar chart."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor
from torchmetrics.functional.classification import binary_average_precision

__all__ = ["AttributeScores", "attribute_scores", "summarize", "write_per_attribute_csv", "plot_attribute_ap"]

# Accuracy thresholds the probability at 0.5, as CelebA papers report it.
ACCURACY_THRESHOLD = 0.5


@dataclass(frozen=True)
class AttributeScores:
    """Per attribute, over the validation images: ``positives`` (images with the attribute), ``ap`` (average
    precision; None without a positive, where it is undefined) and ``accuracy`` (at probability 0.5)."""

    names: list[str]
    positives: list[int]
    ap: list[float | None]
    accuracy: list[float | None]


def attribute_scores(probabilities: Tensor, labels: Tensor, names: Sequence[str]) -> AttributeScores:
    """Scores of (N, A) probabilities against (N, A) 0 / 1 labels. AP by torchmetrics (exact, no binning), for
    the attributes with a positive; accuracy is None for every attribute when there are no images."""
    num_images, num_attributes = labels.shape
    if num_attributes != len(names) or probabilities.shape != labels.shape:
        raise ValueError(
            f"probabilities {tuple(probabilities.shape)} and labels {tuple(labels.shape)} must both be "
            f"(N, {len(names)})"
        )
    labels = labels.long()
    positives = labels.sum(dim=0)
    ap: list[float | None] = [
        float(binary_average_precision(probabilities[:, column].float(), labels[:, column])) if count else None
        for column, count in enumerate(positives.tolist())
    ]
    if num_images:
        correct = ((probabilities >= ACCURACY_THRESHOLD).long() == labels).float().mean(dim=0)
        accuracy: list[float | None] = correct.tolist()
    else:
        accuracy = [None] * num_attributes
    return AttributeScores(list(names), positives.tolist(), ap, accuracy)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(sum(present) / len(present), 4) if present else None


def summarize(scores: AttributeScores) -> dict[str, Any]:
    """``mean_ap`` over the attributes with a positive (the others counted in
    ``num_attributes_without_positives``), ``mean_accuracy`` over all attributes, ``num_attributes``."""
    return {
        "mean_ap": _mean(scores.ap),
        "mean_accuracy": _mean(scores.accuracy),
        "num_attributes": len(scores.names),
        "num_attributes_without_positives": sum(value is None for value in scores.ap),
    }


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_per_attribute_csv(scores: AttributeScores, path: Path) -> None:
    """CSV of attribute, positives, ap, accuracy (an empty cell for an undefined value)."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["attribute", "positives", "ap", "accuracy"])
        for name, positives, ap, accuracy in zip(scores.names, scores.positives, scores.ap, scores.accuracy):
            writer.writerow([name, positives, _cell(ap), _cell(accuracy)])


def plot_attribute_ap(scores: AttributeScores, path: Path, title: str = "") -> None:
    """A PNG bar chart of each attribute's AP and positives, one labelled row per attribute (Agg canvas: no display
    needed); an attribute without positives is marked "no positives"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    count = len(scores.names)
    figure = Figure(figsize=(8.0, max(3.0, 0.28 * count + 1.2)))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    rows = list(range(count))
    values = [0.0 if ap is None else ap for ap in scores.ap]
    bars = axes.barh(rows, values, color="tab:blue")
    for row, ap, positives, bar in zip(rows, scores.ap, scores.positives, bars):
        label = "no positives" if ap is None else f"{ap:.3f} ({positives} positives)"
        axes.text(bar.get_width() + 0.01, row, label, va="center", fontsize=8)
    axes.set_yticks(rows, scores.names, fontsize=8)
    axes.invert_yaxis()  # the first attribute on top, as in the CSV
    axes.set_xlim(0.0, 1.3)  # room for the labels
    axes.set_xticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_xlabel("average precision")
    axes.set_title(title or "average precision per attribute")
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
