"""The LightningModule of face embeddings: identity cross-entropy for the teacher, LFW verification for every
network, and the embedding a distillation tool compares (Table 14: the squared difference of embeddings)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from tasks.common.classifier import ImageClassifier
from tasks.common.classifier_module import ClassifierModule
from tasks.common.data import Batch
from tasks.common.errors import ConfigError
from tasks.face_embedding.data import UNLABELED_TARGET, build_eval_transform
from tasks.face_embedding.model import FaceEmbedder
from tasks.face_embedding.verification import (
    FoldResult,
    TarAtFar,
    cross_validated_accuracy,
    pair_distances,
    roc_curve,
    tar_at_far,
)

__all__ = ["FaceEmbeddingModule", "verification_metrics", "write_folds_csv", "plot_roc"]


# The false-accept rates TAR is reported at, by the name their metrics.json keys use.
FARS: dict[str, float] = {"1e-3": 1e-3, "1e-4": 1e-4}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def verification_metrics(
    embeddings: np.ndarray, first: np.ndarray, second: np.ndarray, same: np.ndarray, folds: np.ndarray
) -> tuple[dict[str, Any], list[FoldResult], dict[str, TarAtFar], np.ndarray]:
    """(metrics, per-fold results, TAR at each of ``FARS``, pair distances) of L2-normalised ``embeddings`` (N, D)
    on the pairs (``first``, ``second``) with ``same`` labels and ``folds``. The accuracy's spread is the standard
    deviation of the fold accuracies (numpy's default, over the folds themselves, as LFW's usual scripts)."""
    distances = pair_distances(embeddings, first, second)
    fold_results = cross_validated_accuracy(distances, same, folds) if len(distances) else []
    accuracies = np.array([fold.accuracy for fold in fold_results])
    tars = {name: tar_at_far(distances, same, far) for name, far in FARS.items()}
    metrics: dict[str, Any] = {
        "lfw_accuracy": _rounded(accuracies.mean()) if len(accuracies) else None,
        "lfw_accuracy_std": _rounded(accuracies.std()) if len(accuracies) else None,
        "lfw_threshold": _rounded(np.mean([fold.threshold for fold in fold_results])) if fold_results else None,
    }
    for name, result in tars.items():
        metrics[f"tar_at_far_{name}"] = _rounded(result.tar)
        metrics[f"tar_at_far_{name}_reason"] = result.reason
    metrics.update(num_pairs=len(distances), num_same_pairs=int(np.sum(same)), num_folds=len(fold_results))
    return metrics, fold_results, tars, distances


def write_folds_csv(fold_results: Sequence[FoldResult], path: Path) -> None:
    """CSV of fold (1-based), threshold (chosen on the other folds), accuracy, same_pairs, different_pairs."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["fold", "threshold", "accuracy", "same_pairs", "different_pairs"])
        for fold in fold_results:
            writer.writerow(
                [fold.fold + 1, f"{fold.threshold:.4f}", f"{fold.accuracy:.4f}", fold.num_same, fold.num_different]
            )


def plot_roc(
    distances: np.ndarray,
    same: np.ndarray,
    tars: Mapping[str, TarAtFar],
    threshold: float | None,
    path: Path,
    title: str,
) -> None:
    """A PNG of TAR against FAR on a log axis (down to half of one impostor pair, where FAR 0 is drawn), with the
    TAR@FAR operating points and the accuracy threshold's point marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    same = np.asarray(same, dtype=bool)
    far, tar, _ = roc_curve(distances, same)
    impostors = max(1, int((~same).sum()))
    left = 0.5 / impostors  # where a FAR of 0 is drawn on the log axis
    figure = Figure(figsize=(6.4, 5.2))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.step(np.maximum(far, left), tar, where="post", color="tab:blue", label="ROC")
    for (name, result), colour in zip(tars.items(), ("tab:red", "tab:purple")):
        if result.tar is not None:
            axes.plot(
                [max(result.achieved_far, left)],
                [result.tar],
                "o",
                color=colour,
                label=f"TAR {result.tar:.3f} at FAR {name}",
            )
    if threshold is not None and same.any() and (~same).any():
        accepted = distances <= threshold
        point = (float(accepted[~same].mean()), float(accepted[same].mean()))
        axes.plot(
            [max(point[0], left)],
            [point[1]],
            "s",
            color="tab:green",
            label=f"accuracy threshold {threshold:.3f}: FAR {point[0]:.3f}, TAR {point[1]:.3f}",
        )
    axes.set_xscale("log")
    axes.set_xlim(left, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel(f"false accept rate (log; {impostors} impostor pairs; FAR 0 at the left edge)")
    axes.set_ylabel("true accept rate")
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


class FaceEmbeddingModule(ClassifierModule):
    """Trains an identity classifier (``tasks.common.classifier.ImageClassifier``) with cross-entropy over the
    training identities, and evaluates any network of the task by LFW verification of its embeddings.

    The embedding is ``model.embed(images)``: the L2-normalised pooled features of an identity classifier, the
    output of a ``FaceEmbedder``. An embedder has no identity head: it learns from a teacher (tools/distill.py),
    and this module's training loss refuses it.

    ``data_info`` holds ``num_classes`` (training identities), ``pairs`` ("first second same fold": indices into
    the validation images), the split sizes and the preprocessing (see ``FaceEmbeddingDataModule.data_info``).
    """

    monitor = "val/lfw_accuracy"
    logged_metrics = ("lfw_accuracy", "tar_at_far_1e-3")
    progress_bar_metrics = ("lfw_accuracy",)
    # Verification does not depend on the training identities' names; their number is model.num_classes, which
    # checkpoints already compare.
    checkpoint_data_keys = ()
    prediction_summary = "each image's embedding"
    # What a distillation tool compares between teacher and student: ``distillation_outputs``.
    distillation_kind: ClassVar[str] = "embedding"

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        data_info: Mapping[str, Any],
    ) -> None:
        super().__init__(model, model_config, optimizer, data_info)
        if not isinstance(model, ImageClassifier):
            raise ConfigError(f"the face_embedding task needs an ImageClassifier network, got {type(model).__name__}")
        classes = data_info.get("num_classes")
        if not isinstance(model, FaceEmbedder) and classes is not None and model.num_classes != classes:
            raise ConfigError(f"model.num_classes is {model.num_classes} but the data has {classes} identities")
        pairs = np.array([row.split() for row in data_info.get("pairs", [])], dtype=np.int64).reshape(-1, 4)
        self.pair_first, self.pair_second, self.pair_folds = pairs[:, 0], pairs[:, 1], pairs[:, 3]
        self.pair_same = pairs[:, 2].astype(bool)
        self.flip_eval = bool(data_info.get("flip_eval", False))
        self.criterion = nn.CrossEntropyLoss(ignore_index=UNLABELED_TARGET)
        self._report: tuple[list[FoldResult], dict[str, TarAtFar], np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------------------------------------------------
    # Training

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy over the training identities; images whose target is ``UNLABELED_TARGET`` do not count."""
        if isinstance(self.model, FaceEmbedder):
            raise ConfigError(
                "model.name embedder has no identity labels to learn from in tools/train.py: train it from a "
                "teacher with tools/distill.py (or train the teacher with model.name identity_classifier)"
            )
        logits = self.model(batch.inputs)
        labelled = batch.targets != UNLABELED_TARGET
        if not labelled.any():  # cross-entropy's mean over no target is 0/0
            return logits.sum() * 0.0, {}
        loss = self.criterion(logits, batch.targets)
        top1 = (logits[labelled].argmax(dim=1) == batch.targets[labelled]).float().mean()
        return loss, {"top1": top1}

    # ---------------------------------------------------------------------------------------------------------
    # Embeddings, verification, prediction

    def distillation_outputs(self, inputs: Tensor) -> Tensor:
        """(N, 3, H, W) RGB images in [0, 1] -> (N, D) L2-normalised embeddings (the identity classifier's pooled
        features, or the embedder's output): what Table 14's distillation compares by squared difference."""
        return self.model.embed(inputs)

    def _embed(self, inputs: Tensor) -> Tensor:
        embeddings = self.model.embed(inputs)
        if self.flip_eval:
            embeddings = nn.functional.normalize(embeddings + self.model.embed(inputs.flip(-1)), dim=1)
        return embeddings

    def validation_results(self, batch: Batch) -> list[list[float]]:
        """Per image its embedding (flip-averaged with ``data.flip_eval``)."""
        return self._embed(batch.inputs).float().cpu().tolist()

    def compute_metrics(self, results: dict[int, list[float]]) -> dict[str, Any]:
        """LFW verification of the pairs whose two images have results (all of them unless validation was
        limited): ten-fold accuracy and its standard deviation, TAR at FAR 1e-3 and 1e-4."""
        keep = np.array([a in results and b in results for a, b in zip(self.pair_first, self.pair_second)], bool)
        first, second = self.pair_first[keep], self.pair_second[keep]
        rows = {index: row for row, index in enumerate(results)}
        embeddings = np.asarray(list(results.values()), dtype=np.float32) if results else np.zeros((0, 1), np.float32)
        first = np.array([rows[i] for i in first], dtype=np.int64)
        second = np.array([rows[i] for i in second], dtype=np.int64)
        same, folds = self.pair_same[keep], self.pair_folds[keep]
        metrics, fold_results, tars, distances = verification_metrics(embeddings, first, second, same, folds)
        protocol = str(self.data_info.get("protocol", ""))
        if len(fold_results) == 1:
            protocol += "; one fold only: its threshold is chosen on itself (optimistic)"
        if keep.sum() < len(keep):
            protocol += f"; {int(keep.sum())} of {len(keep)} pairs evaluated (validation limited)"
        self._report = (fold_results, tars, distances, same)
        return {
            **metrics,
            "protocol": protocol,
            "train_identities": self.data_info.get("train_identities"),
            "train_size": self.data_info.get("train_size"),
            "num_images": len(results),
            "flip_eval": self.flip_eval,
        }

    def write_outputs(self, run_dir: Path) -> None:
        """folds.csv (each fold's threshold and accuracy) and roc.png of the last validation."""
        if self._report is None:
            return
        fold_results, tars, distances, same = self._report
        run_dir = Path(run_dir)
        write_folds_csv(fold_results, run_dir / "folds.csv")
        if not len(distances):
            return
        accuracy, std = self._metrics.get("lfw_accuracy"), self._metrics.get("lfw_accuracy_std")
        title = f"LFW verification: accuracy {accuracy:.3f} ± {std:.3f} over {len(fold_results)} folds"
        plot_roc(distances, same, tars, self._metrics.get("lfw_threshold"), run_dir / "roc.png", title)

    @torch.no_grad()
    def predict_records(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per image one record {"embedding": [D floats]}: its L2-normalised embedding after the evaluation
        preprocessing the model was trained with (flip-averaged when it was evaluated so). Embeddings have no scores:
        ``default_score_threshold`` stays None and tools/predict.py refuses ``--score-threshold``."""
        transform = build_eval_transform(
            int(self.data_info.get("image_size", 160)), float(self.data_info.get("crop_fraction", 1.0))
        )
        batch = torch.stack([transform(image) for image in images]).to(self.device)
        return [[{"embedding": [round(v, 6) for v in row]}] for row in self._embed(batch).float().cpu().tolist()]

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[Tensor, str]:
        """One image at the data section's input size."""
        size = int(data_config.get("image_size", 160))
        return torch.rand(1, 3, size, size), f"one {size}x{size} image"
