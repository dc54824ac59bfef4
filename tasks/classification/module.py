"""The LightningModule of classification: cross-entropy training, top-1 / top-5 validation counted once per image."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from tasks.classification.data import build_eval_transform
from tasks.common.classifier_module import ClassifierModule
from tasks.common.data import Batch
from tasks.common.errors import ConfigError

__all__ = [
    "ClassificationModule",
    "classification_metrics",
    "write_per_class_accuracy",
    "plot_confusion_matrix",
]


TOP_K = 5
# Rows of the (N, C) score matrix rebuilt per torchmetrics update: bounds memory on ImageNet's 50k x 1000.
_CHUNK = 4096


def _rank_scores(topk: Tensor, num_classes: int) -> Tensor:
    """(n, k) classes, best first -> (n, C) scores in [0, 1] that rank them in that order above every other class."""
    k = topk.shape[1]
    scores = torch.zeros(len(topk), num_classes)
    ranks = torch.arange(k, 0, -1, dtype=torch.float32) / k
    return scores.scatter_(1, topk, ranks.expand(len(topk), k))


def classification_metrics(labels: Tensor, topk: Tensor | None, num_classes: int) -> tuple[dict[str, Any], Tensor]:
    """Top-1 and top-5 accuracy (torchmetrics, micro-averaged over images) and the (C, C) confusion matrix
    (rows: true class, columns: top-1 prediction). ``top5`` is None with fewer than 5 classes; both are None
    without images. Computed on one process over results already gathered from all of them: the metrics must not
    synchronise across processes themselves (under DDP that waits forever for the other ranks)."""
    local = {"sync_on_compute": False}
    confusion_metric = MulticlassConfusionMatrix(num_classes, **local)
    if topk is None or not len(labels):
        return {"top1": None, "top5": None, "num_images": 0}, confusion_metric.compute()
    top1_metric = MulticlassAccuracy(num_classes, top_k=1, average="micro", **local)
    top5_metric = (
        MulticlassAccuracy(num_classes, top_k=TOP_K, average="micro", **local) if num_classes >= TOP_K else None
    )
    for start in range(0, len(labels), _CHUNK):
        chunk_labels = labels[start : start + _CHUNK]
        chunk_topk = topk[start : start + _CHUNK]
        top1_metric.update(chunk_topk[:, 0], chunk_labels)
        confusion_metric.update(chunk_topk[:, 0], chunk_labels)
        if top5_metric is not None:
            top5_metric.update(_rank_scores(chunk_topk, num_classes), chunk_labels)
    metrics = {
        "top1": round(float(top1_metric.compute()), 4),
        "top5": round(float(top5_metric.compute()), 4) if top5_metric is not None else None,
        "num_images": len(labels),
    }
    return metrics, confusion_metric.compute()


def write_per_class_accuracy(confusion: Tensor, class_names: Sequence[str], path: Path) -> None:
    """CSV of class_index, class_name, support (validation images), correct, accuracy (empty without support)."""
    support = confusion.sum(dim=1).tolist()
    correct = confusion.diagonal().tolist()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class_index", "class_name", "support", "correct", "accuracy"])
        for index, name in enumerate(class_names):
            accuracy = f"{correct[index] / support[index]:.4f}" if support[index] else ""
            writer.writerow([index, name, support[index], correct[index], accuracy])


def plot_confusion_matrix(confusion: Tensor, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """A PNG of the row-normalised confusion matrix (Agg canvas: no display needed); names and counts are drawn
    when the classes are few enough to read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_classes = len(class_names)
    rates = (confusion.double() / confusion.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    side = min(30.0, max(6.0, 0.3 * num_classes))
    figure = Figure(figsize=(side, side * 0.85))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title or "confusion matrix")
    if num_classes <= 40:
        axes.set_xticks(range(num_classes), class_names, rotation=90, fontsize=8)
        axes.set_yticks(range(num_classes), class_names, fontsize=8)
    if num_classes <= 20:
        for row, counts in enumerate(confusion.tolist()):
            for column, count in enumerate(counts):
                if count:
                    colour = "white" if rates[row, column] > 0.5 else "black"
                    axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


class ClassificationModule(ClassifierModule):
    """Trains an ``ImageClassifier`` with cross-entropy (no label smoothing: the paper's advice for small models).

    Validation keeps each image's label and top-5 classes (its dataset index is the key the shared gathering
    counts it once by under DDP); metrics are top-1 / top-5 accuracy and the confusion matrix.

    ``data_info`` holds ``class_names``, the split sizes and the evaluation preprocessing (see the data module).
    """

    monitor = "val/top1"
    logged_metrics = ("top1", "top5")
    progress_bar_metrics = ("top1",)
    prediction_summary = "each image's top-5 classes"
    default_score_threshold = 0.0  # predict prints an image's top classes whatever their scores
    distillation_kind = "softmax"

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        data_info: Mapping[str, Any],
    ) -> None:
        super().__init__(model, model_config, optimizer, data_info)
        self.class_names: list[str] = list(data_info["class_names"])
        if self.model.num_classes != len(self.class_names):
            raise ConfigError(
                f"model.num_classes is {self.model.num_classes} but the data has {len(self.class_names)} classes"
            )
        self.criterion = nn.CrossEntropyLoss()
        self._confusion: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def distillation_outputs(self, inputs: Tensor) -> Tensor:
        """Class logits (N, C)."""
        return self.model(inputs)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.model(batch.inputs)
        loss = self.criterion(logits, batch.targets)
        return loss, {"top1": (logits.argmax(dim=1) == batch.targets).float().mean()}

    def validation_results(self, batch: Batch) -> list[tuple[int, list[int]]]:
        """Per image (label, its top-5 classes best first)."""
        logits = self.model(batch.inputs)
        self.log_validation_loss(batch, nn.functional.cross_entropy(logits, batch.targets, reduction="none"))
        topk = logits.topk(min(TOP_K, self.num_classes), dim=1).indices
        return list(zip(batch.targets.tolist(), topk.tolist(), strict=True))

    def compute_metrics(self, results: dict[int, tuple[int, list[int]]]) -> dict[str, Any]:
        labels = torch.tensor([label for label, _ in results.values()], dtype=torch.long)
        topk = torch.tensor([top for _, top in results.values()], dtype=torch.long) if results else None
        metrics, self._confusion = classification_metrics(labels, topk, self.num_classes)
        return {
            "top1": metrics["top1"],
            "top5": metrics["top5"],
            "num_classes": self.num_classes,
            "train_size": self.data_info.get("train_size"),
            "val_size": self.data_info.get("val_size"),
            "num_images": metrics["num_images"],
        }

    def write_outputs(self, run_dir: Path) -> None:
        """per_class_accuracy.csv and confusion_matrix.png of the last validation."""
        if self._confusion is None:
            return
        run_dir = Path(run_dir)
        write_per_class_accuracy(self._confusion, self.class_names, run_dir / "per_class_accuracy.csv")
        top1 = self._metrics.get("top1")
        title = f"top-1 {top1:.3f} on {self._metrics['num_images']} images" if top1 is not None else ""
        plot_confusion_matrix(self._confusion, self.class_names, run_dir / "confusion_matrix.png", title)

    def predict_records(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per image one record {"top5": [{"class", "score"}, ...]}: its best classes with softmax scores, best
        first (fewer than 5 with fewer classes), after the evaluation preprocessing the model was trained with."""
        transform = build_eval_transform(
            int(self.data_info.get("image_size", 224)), float(self.data_info.get("eval_crop_fraction", 0.875))
        )
        batch = torch.stack([transform(image) for image in images]).to(self.device)
        scores, classes = self.model(batch).softmax(dim=1).topk(min(TOP_K, self.num_classes), dim=1)
        return [
            [{"top5": [{"class": self.class_names[c], "score": round(s, 4)} for s, c in zip(row, top, strict=True)]}]
            for row, top in zip(scores.tolist(), classes.tolist(), strict=True)
        ]

    def prediction_scores(self, records: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """(class, softmax score) of the image's top classes, best first."""
        return [(entry["class"], entry["score"]) for record in records for entry in record["top5"]]

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[Tensor, str]:
        """One image at the data section's input size (the resolution multiplier)."""
        size = int(data_config.get("image_size", 224))
        return torch.rand(1, 3, size, size), f"one {size}x{size} image"
