"""The LightningModule of classification: cross-entropy training, top-1 / top-5 validation counted once per image."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from tasks.common.config import ConfigError
from tasks.common.module import TaskModule

__all__ = [
    "ClassificationModule",
    "merge_predictions",
    "classification_metrics",
    "write_per_class_accuracy",
    "plot_confusion_matrix",
]

logger = logging.getLogger(__name__)

TOP_K = 5
# Rows of the (N, C) score matrix rebuilt per torchmetrics update: bounds memory on ImageNet's 50k x 1000.
_CHUNK = 4096


def merge_predictions(parts: Iterable[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Merge {"indices" (n,), "labels" (n,), "topk" (n, k)} from every process into one set sorted by dataset index,
    keeping each image once (a distributed sampler pads the last batches with repeated images)."""
    parts = [part for part in parts if part is not None and len(part["indices"])]
    if not parts:
        return {"indices": torch.empty(0, dtype=torch.long), "labels": torch.empty(0, dtype=torch.long), "topk": None}
    indices = torch.cat([part["indices"] for part in parts])
    labels = torch.cat([part["labels"] for part in parts])
    topk = torch.cat([part["topk"] for part in parts])
    unique, inverse = torch.unique(indices, return_inverse=True)
    first = torch.full((len(unique),), len(indices), dtype=torch.long).scatter_reduce(
        0, inverse, torch.arange(len(indices)), reduce="amin"
    )
    return {"indices": unique, "labels": labels[first], "topk": topk[first]}


def _rank_scores(topk: Tensor, num_classes: int) -> Tensor:
    """(n, k) classes, best first -> (n, C) scores in [0, 1] that rank them in that order above every other class."""
    k = topk.shape[1]
    scores = torch.zeros(len(topk), num_classes)
    ranks = torch.arange(k, 0, -1, dtype=torch.float32) / k
    return scores.scatter_(1, topk, ranks.expand(len(topk), k))


def classification_metrics(labels: Tensor, topk: Tensor | None, num_classes: int) -> tuple[dict[str, Any], Tensor]:
    """Top-1 and top-5 accuracy (torchmetrics, micro-averaged over images) and the (C, C) confusion matrix
    (rows: true class, columns: top-1 prediction). ``top5`` is None with fewer than 5 classes; both are None
    without images."""
    confusion_metric = MulticlassConfusionMatrix(num_classes)
    if topk is None or not len(labels):
        return {"top1": None, "top5": None, "num_images": 0}, confusion_metric.compute()
    top1_metric = MulticlassAccuracy(num_classes, top_k=1, average="micro")
    top5_metric = MulticlassAccuracy(num_classes, top_k=TOP_K, average="micro") if num_classes >= TOP_K else None
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


class ClassificationModule(TaskModule):
    """Trains an ``ImageClassifier`` with cross-entropy (no label smoothing: the paper's advice for small models).

    Validation collects each image's label and top-5 classes with its dataset index; at the end of the epoch the
    processes' predictions are gathered and deduplicated, so every image counts once under DDP.

    Args:
        model: the ``model:`` config section; ``name`` picks the builder, the rest are its arguments.
        optimizer: the ``optimizer:`` config section.
        data_info: ``class_names``, split sizes and evaluation preprocessing of the data (see the data module).
    """

    def __init__(self, model: dict[str, Any], optimizer: dict[str, Any], data_info: dict[str, Any]) -> None:
        super().__init__(optimizer)
        self.save_hyperparameters()
        from tasks.classification.task import MODEL_BUILDERS

        kwargs = dict(model)
        self.model = MODEL_BUILDERS[kwargs.pop("name")](**kwargs)
        self.class_names: list[str] = list(data_info["class_names"])
        if self.model.num_classes != len(self.class_names):
            raise ConfigError(
                f"model.num_classes is {self.model.num_classes} but the data has {len(self.class_names)} classes"
            )
        self.criterion = nn.CrossEntropyLoss()
        self._parts: list[dict[str, Tensor]] = []
        self._metrics: dict[str, Any] = {}
        self._confusion: Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        from lightning.pytorch.strategies import DDPStrategy

        strategy = self.trainer.strategy if self._trainer is not None else None
        if (
            stage == "fit"
            and self.model.freeze_backbone_epochs > 0
            and isinstance(strategy, DDPStrategy)
            and not strategy._ddp_kwargs.get("find_unused_parameters", False)
        ):
            # A frozen backbone's parameters get no gradient, which plain DDP treats as an error mid-epoch.
            raise ConfigError(
                "model.freeze_backbone_epochs > 0 under DDP needs trainer.strategy: ddp_find_unused_parameters_true"
            )

    def on_train_epoch_start(self) -> None:
        frozen = self.current_epoch < self.model.freeze_backbone_epochs
        if frozen != self.model.backbone_frozen:
            self.model.set_backbone_frozen(frozen)
            logger.info("epoch %d: backbone %s", self.current_epoch, "frozen" if frozen else "trainable")

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        images, labels, _, skipped = batch
        if skipped:
            self.log("train/skipped_images", float(skipped), reduce_fx="sum", batch_size=max(1, len(labels)))
        if not len(labels):  # every image of the batch was unreadable
            return None
        logits = self.model(images)
        loss = self.criterion(logits, labels)
        size = len(labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/top1", (logits.argmax(dim=1) == labels).float().mean(), batch_size=size)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._parts = []

    def validation_step(self, batch, batch_idx: int) -> None:
        images, labels, indices, _ = batch
        logits = self.model(images)
        self.log("val/loss", self.criterion(logits, labels), batch_size=len(labels), sync_dist=True)
        topk = logits.topk(min(TOP_K, self.num_classes), dim=1).indices
        self._parts.append({"indices": indices.cpu(), "labels": labels.cpu(), "topk": topk.cpu()})

    def _local_predictions(self) -> dict[str, Tensor] | None:
        if not self._parts:
            return None
        return {key: torch.cat([part[key] for part in self._parts]) for key in ("indices", "labels", "topk")}

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        gathered = [self._local_predictions()]
        if self.trainer.world_size > 1:
            gathered = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, self._local_predictions())
        metrics: dict[str, Any] = {}
        if self.trainer.is_global_zero:
            merged = merge_predictions(gathered)
            metrics, self._confusion = classification_metrics(merged["labels"], merged["topk"], self.num_classes)
        metrics = self.trainer.strategy.broadcast(metrics, src=0)
        info = self.hparams["data_info"]
        self._metrics = {
            "top1": metrics["top1"],
            "top5": metrics["top5"],
            "num_classes": self.num_classes,
            "train_size": info.get("train_size"),
            "val_size": info.get("val_size"),
            "num_images": metrics["num_images"],
        }
        for name in ("top1", "top5"):
            if metrics[name] is not None:
                self.log(f"val/{name}", float(metrics[name]), prog_bar=name == "top1")

    def final_metrics(self) -> dict[str, Any]:
        return dict(self._metrics)

    def write_outputs(self, run_dir: Path) -> None:
        """per_class_accuracy.csv and confusion_matrix.png of the last validation."""
        if self._confusion is None:
            return
        run_dir = Path(run_dir)
        write_per_class_accuracy(self._confusion, self.class_names, run_dir / "per_class_accuracy.csv")
        top1 = self._metrics.get("top1")
        title = f"top-1 {top1:.3f} on {self._metrics['num_images']} images" if top1 is not None else ""
        plot_confusion_matrix(self._confusion, self.class_names, run_dir / "confusion_matrix.png", title)
