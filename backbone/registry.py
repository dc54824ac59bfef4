"""The backbones tasks can be built on, by name: the one place a new network family is registered.

A task builder takes ``backbone: str`` and ``**backbone_options`` and calls ``build_backbone``; a config's
``model.backbone`` names an entry of ``BACKBONES`` and its other backbone keys are checked against
``backbone_options(name)``. Adding a network is one ``FeatureBackbone`` subclass and one entry here.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from backbone.contract import FeatureBackbone
from backbone.mobilenet_v1 import MobileNetV1Backbone
from backbone.weights import load_weights

__all__ = ["BackboneSpec", "BACKBONES", "backbone_options", "backbone_normalization", "build_backbone"]


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its class, and the function loading a weights file into a model holding it.

    ``load_weights(model, path)`` loads into the backbone inside ``model`` (the backbone itself, a detector, or a
    ``FeatureClassifier``, whose ``fc`` it also loads when the file's classifier fits) and returns ``model``.
    """

    cls: type[FeatureBackbone]
    load_weights: Callable[[nn.Module, str | os.PathLike[str]], nn.Module]


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v1": BackboneSpec(MobileNetV1Backbone, load_weights),
}

# Constructor parameters that are not a user's to set: builders choose the taps, and the tasks feed RGB images
# normalised with a 3-channel mean and std, so ``in_chans`` stays 3 (the class itself still takes other values).
_SET_BY_BUILDERS = ("out_features", "in_chans")


def _spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def backbone_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters a config may set for backbone ``name`` (annotations resolved), by parameter name."""
    signature = inspect.signature(_spec(name).cls, eval_str=True)
    return {
        key: parameter
        for key, parameter in signature.parameters.items()
        if key not in _SET_BY_BUILDERS
        and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of RGB in [0, 1] that backbone ``name`` was trained with."""
    cls = _spec(name).cls
    return tuple(map(float, cls.mean)), tuple(map(float, cls.std))


def build_backbone(
    name: str,
    out_features: Sequence[str] | None = None,
    *,
    strides: Sequence[int] | None = None,
    weights: str | os.PathLike[str] | None = None,
    **options: object,
) -> FeatureBackbone:
    """Backbone ``name`` returning the taps named in ``out_features``, or the deepest tap of each of ``strides``.

    Args:
        name: a key of ``BACKBONES``.
        out_features: tap names; with ``strides`` None as well, the network's final tap.
        strides: output strides, each choosing ``tap_for_stride(stride)`` (for MobileNetV1, 16 and 32 choose conv11
            and conv13); not together with ``out_features``.
        weights: a file for the backbone's weight loader, or None for random initialisation.
        options: the backbone's constructor arguments, as listed by ``backbone_options(name)``.

    Raises:
        ValueError: an unknown backbone, option, tap or stride, named with what is available.
    """
    spec = _spec(name)
    allowed = backbone_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"backbone {name!r} has no option {', '.join(unknown)}; its options: {', '.join(allowed)}")
    if out_features is not None and strides is not None:
        raise ValueError("choose the taps by out_features or by strides, not both")
    backbone = spec.cls(**options)
    if strides is not None:
        backbone.out_features = tuple(backbone.tap_for_stride(stride) for stride in strides)
    elif out_features is not None:
        backbone.out_features = out_features
    else:
        backbone.out_features = (next(reversed(backbone.tap_info)),)
    if weights:
        spec.load_weights(backbone, weights)
    return backbone
