"""The LightningModule of face attributes: masked binary cross-entropy training, mean AP / mean accuracy validation
counted once per image, and the two hooks a distillation run trains students of this task by."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from tasks.common.classifier_module import ClassifierModule
from tasks.common.data import Batch
from tasks.common.errors import ConfigError
from tasks.face_attributes.data import build_eval_transform
from tasks.face_attributes.evaluation import (
    AttributeScores,
    attribute_scores,
    plot_attribute_ap,
    summarize,
    write_per_attribute_csv,
)
from tasks.face_attributes.losses import masked_binary_cross_entropy, per_image_binary_cross_entropy

__all__ = ["FaceAttributesModule"]


class FaceAttributesModule(ClassifierModule):
    """Trains an ``ImageClassifier`` with one logit per attribute by binary cross-entropy (mean over the labelled
    attributes of the batch's images; NaN targets, images without labels, are left out).

    Validation keeps each image's probabilities and labels (keyed by dataset index, counted once under DDP);
    metrics are mean AP over the attributes with a positive and mean accuracy at probability 0.5.

    ``data_info`` holds ``attribute_names`` (and the same list as ``class_names``, which checkpoints are checked
    by), the split sizes and the evaluation preprocessing (see the data module).

    Distillation: ``distillation_kind`` "sigmoid" says that the outputs of ``distillation_outputs`` are independent
    per-attribute logits (compared through a sigmoid, not a softmax over attributes).
    """

    monitor = "val/mean_ap"
    logged_metrics = ("mean_ap", "mean_accuracy")
    progress_bar_metrics = ("mean_ap",)
    prediction_summary = "each image's attribute probabilities"
    default_score_threshold = 0.5  # predict prints the attributes an image is predicted to have (as mean accuracy)
    distillation_kind: ClassVar[str] = "sigmoid"

    def __init__(
        self,
        model: nn.Module,
        model_config: Mapping[str, Any],
        optimizer: Mapping[str, Any] | None,
        data_info: Mapping[str, Any],
    ) -> None:
        super().__init__(model, model_config, optimizer, data_info)
        self.attribute_names: list[str] = list(data_info.get("attribute_names", data_info["class_names"]))
        if self.model.num_classes != len(self.attribute_names):
            raise ConfigError(
                f"model.num_classes is {self.model.num_classes} but the data has {len(self.attribute_names)} attributes"
            )
        self._scores: AttributeScores | None = None

    def distillation_outputs(self, inputs: Tensor) -> Tensor:
        """(N, 3, H, W) images in [0, 1] -> (N, A) attribute logits."""
        return self.model(inputs)

    def training_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.model(batch.inputs)
        loss = masked_binary_cross_entropy(logits, batch.targets)
        labelled = ~torch.isnan(batch.targets)
        logs: dict[str, Tensor] = {}
        if labelled.any():
            correct = (logits > 0).float() == batch.targets
            logs["accuracy"] = correct[labelled].float().mean()
        return loss, logs

    def validation_results(self, batch: Batch) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image (float32 (A,) probabilities, uint8 (A,) labels)."""
        logits = self.model(batch.inputs)
        self.log_validation_loss(batch, *per_image_binary_cross_entropy(logits, batch.targets))
        probabilities = logits.float().sigmoid().cpu().numpy()
        labels = batch.targets.cpu().numpy().astype(np.uint8)
        return list(zip(probabilities, labels, strict=True))

    def compute_metrics(self, results: dict[int, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
        count = len(self.attribute_names)
        values = list(results.values())
        probabilities = torch.from_numpy(np.stack([p for p, _ in values])) if values else torch.empty(0, count)
        labels = torch.from_numpy(np.stack([t for _, t in values])) if values else torch.empty(0, count)
        self._scores = attribute_scores(probabilities, labels, self.attribute_names)
        summary = summarize(self._scores)
        return {
            "mean_ap": summary["mean_ap"],
            "mean_accuracy": summary["mean_accuracy"],
            "num_attributes": summary["num_attributes"],
            "num_attributes_without_positives": summary["num_attributes_without_positives"],
            "train_size": self.data_info.get("train_size"),
            "val_size": self.data_info.get("val_size"),
            "num_images": len(values),
        }

    def write_outputs(self, run_dir: Path) -> None:
        """per_attribute.csv and per_attribute_ap.png of the last validation."""
        if self._scores is None:
            return
        run_dir = Path(run_dir)
        write_per_attribute_csv(self._scores, run_dir / "per_attribute.csv")
        mean_ap = self._metrics.get("mean_ap")
        title = f"mean AP {mean_ap:.3f} on {self._metrics['num_images']} images" if mean_ap is not None else ""
        plot_attribute_ap(self._scores, run_dir / "per_attribute_ap.png", title)

    def predict_records(self, images: list[np.ndarray]) -> list[list[dict[str, Any]]]:
        """Per image one record {"attributes": {name: probability}}, every attribute, after the evaluation
        preprocessing the model was trained with."""
        transform = build_eval_transform(
            int(self.data_info.get("image_size", 224)), float(self.data_info.get("eval_crop_fraction", 1.0))
        )
        batch = torch.stack([transform(image) for image in images]).to(self.device)
        probabilities = self.model(batch).float().sigmoid().tolist()
        return [
            [{"attributes": {name: round(p, 4) for name, p in zip(self.attribute_names, row, strict=True)}}]
            for row in probabilities
        ]

    def prediction_scores(self, records: list[dict[str, Any]]) -> list[tuple[str, float]]:
        """(attribute, probability) of every attribute, the most probable first."""
        pairs = [pair for record in records for pair in record["attributes"].items()]
        return sorted(pairs, key=lambda pair: -pair[1])

    @classmethod
    def example_input(
        cls, model: nn.Module, model_config: Mapping[str, Any], data_config: Mapping[str, Any]
    ) -> tuple[Tensor, str]:
        """One image at the data section's input size (the resolution multiplier)."""
        size = int(data_config.get("image_size", 224))
        return torch.rand(1, 3, size, size), f"one {size}x{size} image"
