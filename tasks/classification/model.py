"""The classifier: MobileNetV1 (any width, any input size) or any timm model, with an optionally frozen backbone."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn

from backbone import MobileNetV1, WeightLoadError, load_weights
from backbone.weights import read_state_dict
from tasks.common.config import ConfigError

__all__ = ["ImageClassifier", "build_classifier"]

logger = logging.getLogger(__name__)

_TIMM_PREFIX = "timm:"


class ImageClassifier(nn.Module):
    """A network mapping images to class logits, whose layers outside the head can be frozen.

    Args:
        network: ``forward((N, 3, H, W)) -> (N, num_classes)`` logits.
        head_name: the module path of the final classifier inside ``network`` (``fc`` for MobileNetV1); it stays
            trainable while the rest (the backbone) is frozen.
        num_classes: the number of logits.
        freeze_backbone_epochs: the training module freezes the backbone for this many first epochs.

    Frozen means no gradients and BatchNorm statistics held (its layers stay in eval mode even when the model is
    put in training mode). Under DDP, training with a frozen phase needs
    ``trainer.strategy: ddp_find_unused_parameters_true``.
    """

    def __init__(self, network: nn.Module, head_name: str, num_classes: int, freeze_backbone_epochs: int = 0) -> None:
        super().__init__()
        if freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be >= 0, got {freeze_backbone_epochs}")
        network.get_submodule(head_name)  # raises AttributeError naming the path when absent
        self.network = network
        self.head_name = head_name
        self.num_classes = num_classes
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self.backbone_frozen = False

    def _in_head(self, name: str) -> bool:
        return name == self.head_name or name.startswith(self.head_name + ".")

    def set_backbone_frozen(self, frozen: bool) -> None:
        self.backbone_frozen = frozen
        for name, param in self.network.named_parameters():
            if not self._in_head(name):
                param.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageClassifier:
        super().train(mode)
        if mode and self.backbone_frozen:
            for name, module in self.network.named_modules():
                if isinstance(module, nn.modules.batchnorm._NormBase) and not self._in_head(name):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images -> (N, num_classes) logits."""
        return self.network(images)


def _timm_network(name: str, num_classes: int, weights: str | None, dropout: float) -> tuple[nn.Module, str]:
    import timm

    try:
        network = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=dropout)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise ConfigError(f"model.backbone {_TIMM_PREFIX}{name}: {error}") from error
    head = network.get_classifier()
    head_name = next(path for path, module in network.named_modules() if module is head)
    if weights:
        _load_timm_weights(network, head_name, weights)
    return network, head_name


def _load_timm_weights(network: nn.Module, head_name: str, path: str) -> None:
    """Load a local timm state dict (safely: no code from the file runs); a classifier of another size is skipped."""
    state = read_state_dict(path)
    expected = network.state_dict()
    skipped = [
        key
        for key, value in state.items()
        if key.startswith(head_name + ".") and key in expected and value.shape != expected[key].shape
    ]
    state = {key: value for key, value in state.items() if key not in skipped}
    missing = [key for key in expected if key not in state and key not in skipped]
    unexpected = [key for key in state if key not in expected]
    mismatched = [key for key in state if key in expected and state[key].shape != expected[key].shape]
    if missing or unexpected or mismatched:
        raise WeightLoadError(
            f"{path}: does not fit the timm model: missing {missing[:10]} ({len(missing)}), unexpected "
            f"{unexpected[:10]} ({len(unexpected)}), shape mismatches {mismatched[:10]}"
        )
    network.load_state_dict(state, strict=False)
    if skipped:
        logger.info("%s: classifier of another size not loaded (%s); it keeps its initialisation", path, skipped)


def build_classifier(
    num_classes: int = 1000,
    backbone: str = "mobilenet_v1",
    width_mult: float = 1.0,
    activation: Literal["relu", "relu6"] = "relu",
    separable: bool = True,
    shallow: bool = False,
    dropout: float = 0.001,
    backbone_weights: str | None = None,
    freeze_backbone_epochs: int = 0,
) -> ImageClassifier:
    """An image classifier (the ``model:`` config section).

    Args:
        num_classes: output classes (the data's, unless set).
        backbone: "mobilenet_v1" (``backbone.MobileNetV1``) or "timm:NAME" (any timm model, built with
            ``pretrained=False``: nothing is downloaded).
        width_mult, activation, separable, shallow: MobileNetV1's alpha, activation ("relu" as the paper; timm's
            and TF-slim's weights were trained with "relu6") and ablation variants; mobilenet_v1 only.
        dropout: before the classifier (TF-slim keeps 0.999, i.e. drops 0.001).
        backbone_weights: a weights file. For mobilenet_v1, anything ``backbone.load_weights`` reads: our
            checkpoints of any task (classification, detection, distillation) or timm's mobilenetv1_100 file; the
            classifier comes along only when its shape matches. For timm:NAME, a local state dict of that model.
        freeze_backbone_epochs: train only the classifier for this many first epochs.
    """
    if backbone == "mobilenet_v1":
        network: nn.Module = MobileNetV1(
            num_classes=num_classes,
            width_mult=width_mult,
            activation=activation,
            separable=separable,
            shallow=shallow,
            dropout=dropout,
        )
        if backbone_weights:
            load_weights(network, backbone_weights)
        head_name = "fc"
    elif backbone.startswith(_TIMM_PREFIX) and len(backbone) > len(_TIMM_PREFIX):
        set_knobs = {
            key: value
            for key, value, default in (
                ("width_mult", width_mult, 1.0),
                ("activation", activation, "relu"),
                ("separable", separable, True),
                ("shallow", shallow, False),
            )
            if value != default
        }
        if set_knobs:
            raise ConfigError(f"model.{', model.'.join(set_knobs)} apply to mobilenet_v1 only, not {backbone}")
        network, head_name = _timm_network(backbone[len(_TIMM_PREFIX) :], num_classes, backbone_weights, dropout)
    else:
        raise ConfigError(f"model.backbone must be 'mobilenet_v1' or 'timm:NAME', got {backbone!r}")
    return ImageClassifier(network, head_name, num_classes, freeze_backbone_epochs)
