"""The image classifier network every classifying task builds on (classes, attributes, identities): a registered
backbone (MobileNetV1 at any width and input size) or any timm model, normalising its [0, 1] input itself, with an
optionally frozen backbone."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from backbone import BACKBONES, FeatureClassifier, WeightLoadError, backbone_normalization, build_backbone
from backbone.weights import read_state_dict
from tasks.common.errors import ConfigError

__all__ = ["ImageClassifier", "build_classifier", "refuse_model_hub"]

logger = logging.getLogger(__name__)

_TIMM_PREFIX = "timm:"
# Layers whose running statistics a frozen backbone holds.
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


class ImageClassifier(nn.Module):
    """A network mapping images to class logits, whose layers outside the head can be frozen.

    Args:
        network: ``forward((N, 3, H, W)) -> (N, num_classes)`` logits, on images normalised by ``mean`` and ``std``.
        head_name: the module path of the final classifier inside ``network`` (``fc`` for MobileNetV1); it stays
            trainable while the rest (the backbone) is frozen.
        num_classes: the number of logits.
        freeze_backbone_epochs: the training module freezes the backbone for this many first epochs.
        mean, std: per-channel RGB normalisation the network expects, applied in ``forward`` (kept as buffers that
            the state dict leaves out: checkpoints hold the network's weights only).

    Frozen means no gradients and BatchNorm statistics held (its layers stay in eval mode even when the model is
    put in training mode). Under DDP, training with a frozen phase needs
    ``trainer.strategy: ddp_find_unused_parameters_true``.
    """

    def __init__(
        self,
        network: nn.Module,
        head_name: str,
        num_classes: int,
        freeze_backbone_epochs: int = 0,
        *,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if freeze_backbone_epochs < 0:
            raise ValueError(f"freeze_backbone_epochs must be >= 0, got {freeze_backbone_epochs}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must hold 3 values, std positive; got {list(mean)}, {list(std)}")
        network.get_submodule(head_name)  # raises AttributeError naming the path when absent
        self.network = network
        self.head_name = head_name
        self.num_classes = num_classes
        self.freeze_backbone_epochs = freeze_backbone_epochs
        self.backbone_frozen = False
        self.register_buffer("mean", torch.tensor([float(v) for v in mean]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([float(v) for v in std]).view(1, 3, 1, 1), persistent=False)

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
                if isinstance(module, _BATCH_NORMS) and not self._in_head(name):
                    module.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB images in [0, 1] -> (N, num_classes) logits."""
        return self.network((images - self.mean) / self.std)

    def pre_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB images in [0, 1] -> (N, D) the features the classifier reads (pooled, before dropout):
        ``FeatureClassifier.forward_features``, or timm's ``forward_head(features, pre_logits=True)``."""
        x = (images - self.mean) / self.std
        if isinstance(self.network, FeatureClassifier):
            return self.network.forward_features(x)
        return self.network.forward_head(self.network.forward_features(x), pre_logits=True)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB images in [0, 1] -> (N, D) L2-normalised ``pre_logits``: the embedding a classifier
        trained on identities gives for face verification."""
        return nn.functional.normalize(self.pre_logits(images), dim=1)


def _head_name(network: nn.Module) -> str:
    """The module path of ``network.get_classifier()`` (timm's head API, which ``FeatureClassifier`` follows)."""
    head = network.get_classifier()
    return next(path for path, module in network.named_modules() if module is head)


def refuse_model_hub(backbone: str, key: str = "model.backbone") -> None:
    """Raise ConfigError when ``backbone`` is a ``timm:NAME`` that timm would look up on a model hub even with
    ``pretrained=False``: a scheme (``hf-hub:org/model``, ``hf_hub:``, ``local-dir:``) or a path (``org/model``).
    Nothing is downloaded here; ``key`` is what the message names (``configs/x.yaml: model.backbone``)."""
    name = backbone[len(_TIMM_PREFIX) :] if backbone.startswith(_TIMM_PREFIX) else ""
    if ":" in name or "/" in name:
        raise ConfigError(
            f"{key} {backbone} names a model hub, and nothing is downloaded here: give a timm architecture name "
            "(e.g. timm:mobilenetv3_large_100) and its weights as a local file"
        )


def _timm_network(
    name: str, num_classes: int, weights: str | None, dropout: float
) -> tuple[nn.Module, str, tuple[float, ...], tuple[float, ...]]:
    """The timm network, its head's path, and the mean and std of its pretrained configuration."""
    import timm
    from timm.data import resolve_data_config

    refuse_model_hub(_TIMM_PREFIX + name)
    try:
        network = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=dropout)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise ConfigError(f"model.backbone {_TIMM_PREFIX}{name}: {error}") from error
    head_name = _head_name(network)
    if weights:
        _load_timm_weights(network, head_name, weights)
    data_config = resolve_data_config({}, model=network)
    return network, head_name, tuple(data_config["mean"]), tuple(data_config["std"])


def _load_timm_weights(network: nn.Module, head_name: str, path: str) -> None:
    """Load a local timm state dict (safely: no code from the file runs); a classifier of another size is skipped."""
    state = read_state_dict(path)
    expected = network.state_dict()
    skipped = [
        key
        for key, value in state.items()
        if key.startswith(head_name + ".") and key in expected and value.shape != expected[key].shape
    ]
    shapes = ", ".join(
        f"{key} {tuple(state[key].shape)} in the file, {tuple(expected[key].shape)} in the model" for key in skipped
    )
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
    if skipped:  # a warning: a head left at its random initialisation must not pass unnoticed
        logger.warning("%s: classifier of another size not loaded (%s): it is left at its initialisation", path, shapes)


def build_classifier(
    num_classes: int = 1000,
    backbone: str = "mobilenet_v1",
    dropout: float = 0.001,
    backbone_weights: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    freeze_backbone_epochs: int = 0,
    **backbone_options: Any,
) -> ImageClassifier:
    """An image classifier (the ``model:`` config section), taking RGB images in [0, 1].

    Args:
        num_classes: output classes (the data's, unless set).
        backbone: a name in ``backbone.BACKBONES`` (the classifier is ``backbone.FeatureClassifier`` on it:
            "mobilenet_v1" is the paper's ``MobileNetV1``) or "timm:NAME" (any timm model, built with
            ``pretrained=False``: nothing is downloaded).
        dropout: before the classifier (TF-slim keeps 0.999, i.e. drops 0.001).
        backbone_weights: a weights file. For a registered backbone, anything its loader reads (mobilenet_v1: our
            checkpoints of any task (classification, detection, distillation) or timm's mobilenetv1_100 file); the
            classifier comes along only when its shape matches. For timm:NAME, a local state dict of that model.
        image_mean, image_std: RGB normalisation applied inside the model; None is the backbone's (MobileNetV1:
            0.5 and 0.5) or the timm model's pretrained configuration's.
        freeze_backbone_epochs: train only the classifier for this many first epochs.
        backbone_options: a registered backbone's own settings (``backbone.backbone_options(backbone)``), e.g.
            mobilenet_v1's ``width_mult``, ``activation`` ("relu" as the paper; timm's and TF-slim's weights were
            trained with "relu6"), ``separable`` and ``shallow``; none for a timm network.
    """
    if backbone in BACKBONES:
        network: nn.Module = FeatureClassifier(build_backbone(backbone, **backbone_options), num_classes, dropout)
        if backbone_weights:
            BACKBONES[backbone].load_weights(network, backbone_weights)
        head_name = _head_name(network)
        mean, std = backbone_normalization(backbone)
    elif backbone.startswith(_TIMM_PREFIX) and len(backbone) > len(_TIMM_PREFIX):
        if backbone_options:
            raise ConfigError(
                f"model.{', model.'.join(backbone_options)}: options of the registered backbones "
                f"({', '.join(sorted(BACKBONES))}), not of {backbone}"
            )
        name = backbone[len(_TIMM_PREFIX) :]
        network, head_name, mean, std = _timm_network(name, num_classes, backbone_weights, dropout)
    else:
        raise ConfigError(
            f"model.backbone {backbone!r} is neither a registered backbone ({', '.join(sorted(BACKBONES))}) "
            "nor 'timm:NAME'"
        )
    return ImageClassifier(
        network,
        head_name,
        num_classes,
        freeze_backbone_epochs,
        mean=image_mean if image_mean is not None else mean,
        std=image_std if image_std is not None else std,
    )
